"""Trainer (LFP on SNNs and ANNs, the gradient baseline), metrics files, checkpoints, update clipping,
reproducibility, and the ``lfp-snn train`` command."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.checkpoint import load_checkpoint, save_checkpoint
from lfp_snn.cli import build_parser, main
from lfp_snn.data import load_dataset
from lfp_snn.models import ModelConfig, build_model
from lfp_snn.training import TrainConfig, Trainer, clip_updates


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on a busy shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    train, test = load_dataset("digits")
    return train, test


@pytest.fixture(scope="module")
def tiny(digits):
    train, test = digits
    return train.subset(120, seed=0), test.subset(60, seed=0)


def _small_snn_config(**kw):
    return ModelConfig(arch="spiking-small", input_shape=(1, 8, 8), classes=10, hidden=(24,), **kw)


def _quick(**kw):
    base = dict(epochs=1, steps=3, batch_size=32, lr=3e-3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------------------------------------------
# learning (slow)
# ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_lfp_trains_a_spiking_network_on_digits(digits):
    train, test = digits
    train, test = train.subset(600, seed=0), test.subset(300, seed=0)
    mc = ModelConfig(arch="spiking-small", input_shape=(1, 8, 8), classes=10)
    tc = TrainConfig(method="lfp", rule="epsilon", epochs=3, steps=5, lr=3e-3, batch_size=32, progress=False)
    history = Trainer(mc, tc).fit(train, test)
    assert len(history) == 3
    assert history[-1]["test_accuracy"] > 0.6  # chance is 0.1
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"] - 0.05


@pytest.mark.parametrize("method", ["lfp", "gradient"])
def test_ann_lenet_learns_with_lfp_epsilon_and_with_gradient(digits, method):
    """LeNet with LFP-ε (softmax reward; with the sigmoid reward LeNet, like plain BCE, stays at chance for
    the first epochs on 600 digits) and with the cross-entropy gradient baseline."""
    train, test = digits
    train, test = train.subset(600, seed=0), test.subset(300, seed=0)
    mc = ModelConfig(arch="lenet", input_shape=(1, 8, 8), classes=10)
    reward = "softmax" if method == "lfp" else "auto"  # the gradient baseline has a loss, not a reward
    tc = TrainConfig(method=method, reward=reward, epochs=4, lr=1e-2, batch_size=32, progress=False)
    history = Trainer(mc, tc).fit(train, test)
    assert history[-1]["test_accuracy"] > 0.3  # chance is 0.1


# ------------------------------------------------------------------------------------------------------
# metrics, checkpoints
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_metrics_file_per_epoch(tiny, tmp_path, fmt):
    train, test = tiny
    trainer = Trainer(_small_snn_config(), _quick(epochs=2, metrics_format=fmt), out_dir=tmp_path)
    history = trainer.fit(train, test)
    lif_names = list(trainer.lif_layers())
    assert lif_names == ["2", "4"]
    if fmt == "jsonl":
        rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    else:
        with open(tmp_path / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    assert len(rows) == 2
    keys = {"epoch", "train_accuracy", "test_accuracy", "sign_changed", "objective", "lr", "time_s"}
    keys |= {f"spike_rate/{n}" for n in lif_names} | {f"silent/{n}" for n in lif_names}
    for i, row in enumerate(rows):
        assert keys <= set(row), keys - set(row)
        assert int(float(row["epoch"])) == i + 1
        for k in keys:
            v = float(row[k])
            if k.startswith(("spike_rate/", "silent/")) or k.endswith("accuracy") or k == "sign_changed":
                assert 0.0 <= v <= 1.0, (k, v)
        assert float(row["test_accuracy"]) == pytest.approx(history[i]["test_accuracy"])
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.pt").is_file()


def test_checkpoint_round_trip(tiny, tmp_path):
    train, test = tiny
    trainer = Trainer(_small_snn_config(beta=0.8, reset="zero"), _quick(), out_dir=tmp_path)
    trainer.fit(train, test)
    model, cfg = load_checkpoint(tmp_path)
    assert cfg["model"]["beta"] == 0.8 and cfg["model"]["reset"] == "zero"
    assert cfg["train"]["epochs_done"] == 1
    x = test.x[:16]
    a = lfp_snn.run(trainer.model, x, steps=3)
    b = lfp_snn.run(model, x, steps=3)
    assert torch.equal(a, b)
    for (n1, p1), (n2, p2) in zip(trainer.model.state_dict().items(), model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    state = torch.load(tmp_path / "model.pt", weights_only=True)  # plain tensors only
    assert set(state) == set(model.state_dict())
    lif = [m for m in model.modules() if isinstance(m, lfp_snn.LIF)]
    assert all(m.reset == "zero" and abs(float(m.beta) - 0.8) < 1e-7 for m in lif)


def test_save_checkpoint_then_load_an_ann(tmp_path):
    mc = ModelConfig(arch="mlp", input_shape=(1, 8, 8), classes=10, hidden=(16,))
    model = build_model(mc, seed=3)
    save_checkpoint(tmp_path, model, mc, {"note": "x"})
    loaded, cfg = load_checkpoint(tmp_path)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model(x), loaded(x))
    assert cfg["train"] == {"note": "x"}


def test_bad_checkpoints(tmp_path):
    mc = _small_snn_config()
    save_checkpoint(tmp_path, build_model(mc, seed=0), mc)
    good_cfg = (tmp_path / "config.json").read_text()
    # corrupt weights
    (tmp_path / "model.pt").write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match=r"cannot read weights from .*model\.pt"):
        load_checkpoint(tmp_path)
    # weights of another architecture than config.json says
    save_checkpoint(tmp_path, build_model(mc, seed=0), mc)
    cfg = json.loads(good_cfg)
    cfg["model"]["hidden"] = [40]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"do not fit the architecture in config\.json"):
        load_checkpoint(tmp_path)
    cfg["model"]["arch"], cfg["model"]["hidden"] = "lenet", None
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"do not fit"):
        load_checkpoint(tmp_path)
    # not JSON, unknown key, missing files
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not valid JSON"):
        load_checkpoint(tmp_path)
    cfg = json.loads(good_cfg)
    cfg["model"]["neurons"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unknown model config keys \['neurons'\]"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_checkpoint(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------
# update clipping
# ------------------------------------------------------------------------------------------------------


def _with_grads(model, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * scale
    return model


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _global_norm(model):
    return float(torch.sqrt(sum((p.grad**2).sum() for p in model.parameters())))


def test_clip_norm_bounds_the_global_norm():
    model = _with_grads(_mlp(), 10.0)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert _global_norm(model) > 2.0
    clip_updates(model, "norm", 2.0)
    assert _global_norm(model) == pytest.approx(2.0, rel=1e-5)
    # a pure rescale: every gradient keeps its direction
    for n, p in model.named_parameters():
        ratio = p.grad / before[n]
        assert float(ratio.max() - ratio.min()) < 1e-6
    small = _with_grads(_mlp(), 1e-3)
    g0 = [p.grad.clone() for p in small.parameters()]
    clip_updates(small, "norm", 2.0)
    assert all(torch.equal(a, p.grad) for a, p in zip(g0, small.parameters()))


def test_clip_agc_bounds_each_row_by_lambda_times_the_weight_norm():
    lam = 0.05
    model = _with_grads(_mlp(), 0.2)
    with torch.no_grad():
        model[0].weight[1].mul_(100.0)  # this row's weight norm is large: its gradient stays as is
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    clip_updates(model, "agc", lam)
    clipped = kept = 0
    for n, p in model.named_parameters():
        w, g = p.detach(), p.grad
        if p.dim() == 2:
            ratio = g.norm(dim=1) / w.norm(dim=1).clamp(min=1e-3)
            ratio_before = before[n].norm(dim=1) / w.norm(dim=1).clamp(min=1e-3)
        else:  # biases: element-wise
            ratio = g.abs() / w.abs().clamp(min=1e-3)
            ratio_before = before[n].abs() / w.abs().clamp(min=1e-3)
        assert bool((ratio <= lam * (1 + 1e-5)).all()), (n, ratio)
        for i in range(ratio.shape[0]):
            if ratio_before[i] <= lam:
                assert torch.equal(g[i], before[n][i])
                kept += 1
            else:
                assert float(ratio[i]) == pytest.approx(lam, rel=1e-5)
                # the direction of the row is kept
                cos = torch.nn.functional.cosine_similarity(g[i].flatten(), before[n][i].flatten(), dim=0)
                assert float(cos) == pytest.approx(1.0, abs=1e-6)
                clipped += 1
    assert clipped > 0 and kept > 0


def test_clip_agc_works_for_conv_weights():
    torch.manual_seed(0)
    model = _with_grads(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 3)), 1.0)
    clip_updates(model, "agc", 0.01)
    w, g = model[0].weight.detach(), model[0].weight.grad
    ratio = g.flatten(1).norm(dim=1) / w.flatten(1).norm(dim=1).clamp(min=1e-3)
    assert bool((ratio <= 0.01 * (1 + 1e-5)).all())


def test_clip_none_and_unknown():
    model = _with_grads(_mlp(), 10.0)
    g0 = [p.grad.clone() for p in model.parameters()]
    clip_updates(model, "none", 1e-9)
    assert all(torch.equal(a, p.grad) for a, p in zip(g0, model.parameters()))
    with pytest.raises(ValueError, match=r"clip must be one of .*'agc'.*'clip'"):
        TrainConfig(clip="clip").validate()


# ------------------------------------------------------------------------------------------------------
# reproducibility
# ------------------------------------------------------------------------------------------------------


def _weights_after(seed, tiny, encoder="rate"):
    train, _ = tiny
    trainer = Trainer(_small_snn_config(), _quick(seed=seed, encoder=encoder, input_noise=0.05))
    trainer.fit(train)
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


def test_same_seed_same_weights_different_seed_different(tiny):
    """Rate encoding and input noise both draw from the trainer's seeded generator."""
    a, b, c = _weights_after(1, tiny), _weights_after(1, tiny), _weights_after(2, tiny)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_training_changes_the_weights(tiny):
    train, _ = tiny
    mc = _small_snn_config()
    trainer = Trainer(mc, _quick(seed=4))
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert all(torch.equal(start[n], p) for n, p in build_model(mc, seed=4).named_parameters())
    trainer.fit(train)
    assert all(not torch.equal(start[n], p) for n, p in trainer.model.named_parameters())


def test_bad_train_config_values():
    for kw, msg in [
        ({"lr": 0.0}, r"lr must be > 0"),
        ({"steps": 0}, r"steps \(T\) must be >= 1"),
        ({"method": "magic"}, r"unknown method 'magic'.*gradient.*lfp"),
        ({"optimizer": "lbfgs"}, r"optimizer must be one of"),
        ({"micro_batch": 0}, r"micro_batch must be an integer >= 1 or None, got 0"),
        ({"time_chunk": -2}, r"time_chunk must be an integer >= 1 or None, got -2"),
        ({"time_chunk": 4, "input_noise": 0.1}, r"time_chunk cannot be combined with input_noise=0.1"),
        (
            {"method": "gradient", "time_chunk": 4},
            r"time_chunk: options of the LFP engine; method 'gradient'",
        ),
        ({"method": "gradient", "recompute": True}, r"recompute: options of the LFP engine"),
    ]:
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw).validate()


def test_trainer_hands_the_memory_and_precision_options_to_the_engine(tiny, monkeypatch):
    import lfp_snn.training.methods as methods

    seen = []
    real = methods.feedback_result

    def spy(*a, **kw):
        p = kw["plan"]
        seen.append((p.gemm_dtype, p.micro_batch, p.storage, p.time_chunk, p.composite.default.eps, p.eps))
        return real(*a, **kw)

    monkeypatch.setattr(methods, "feedback_result", spy)
    train, _ = tiny
    cfg = _quick(feedback_precision="bfloat16", micro_batch=16, recompute=True, time_chunk=2, eps=1e-5)
    Trainer(_small_snn_config(), cfg).fit(train.subset(32, seed=0))
    assert seen == [(torch.bfloat16, 16, "recompute", 2, 1e-5, 1e-5)]


def test_time_chunk_on_an_ann_is_a_clear_error(tiny):
    train, _ = tiny
    mc = ModelConfig(arch="mlp", input_shape=(1, 8, 8), classes=10, hidden=(16,))
    with pytest.raises(
        ValueError, match=r"time_chunk=2 does not apply: it applies to spiking models; arch 'mlp'"
    ):
        Trainer(mc, TrainConfig(epochs=1, time_chunk=2, progress=False))


def test_gradient_method_refuses_spiking_models():
    with pytest.raises(ValueError, match=r"method 'gradient' trains ANNs"):
        Trainer(_small_snn_config(), _quick(method="gradient"))


# ------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------

TINY_ARGS = [
    "--subset",
    "100",
    "--test-subset",
    "50",
    "--epochs",
    "1",
    "-T",
    "3",
    "--hidden",
    "16",
    "--no-progress",
]


def test_cli_train_writes_outputs_and_prints_result(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--data", "digits", *TINY_ARGS, "--out", str(out), "--metrics-format", "csv"])
    assert rc == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("result ")]
    assert len(lines) == 1
    result = json.loads(lines[0][len("result ") :])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert any(k.startswith("spike_rate/") for k in result)
    assert (
        (out / "config.json").is_file() and (out / "model.pt").is_file() and (out / "metrics.csv").is_file()
    )
    model, cfg = load_checkpoint(out)
    assert cfg["model"]["hidden"] == [16] and cfg["train"]["steps"] == 3


def test_cli_method_prefix_selects_the_rule(tmp_path, capsys):
    rc = main(["train", *TINY_ARGS, "--method", "lfp-zplus-zminus", "--out", str(tmp_path)])
    assert rc == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["train"]["method"] == "lfp" and cfg["train"]["rule"] == "zplus-zminus"


def test_cli_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(SystemExit) as e:
        main(["train", *TINY_ARGS, "--device", "cuda"])
    msg = str(e.value.code)
    assert "cuda" in msg.lower() and "--device cpu" in msg


def test_cli_triton_without_interpreter_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: triton can run")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["train", *TINY_ARGS, "--backend", "triton"])
    msg = str(e.value.code)
    assert "--backend triton" in msg and "TRITON_INTERPRET" in msg


def test_cli_unknown_data_lists_accepted_specs(capsys):
    rc = main(["train", "--data", "nosuch", *TINY_ARGS])
    assert rc == 2
    err = capsys.readouterr().err
    assert "nosuch" in err
    for spec in ("digits", "mnist", "fashion-mnist", "idx:<folder>"):
        assert spec in err


def test_cli_bad_choice_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--arch", "resnet"])
    assert e.value.code == 2
    assert "resnet" in capsys.readouterr().err


def test_cli_train_help_mentions_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--data",
        "--subset",
        "--arch",
        "--beta",
        "--threshold",
        "--reset",
        "--reset-delay",
        "--no-reset-delay",
        "--steps",
        "--encoder",
        "--method",
        "--reward",
        "--time-chunk",
        "--micro-batch",
        "--recompute",
        "--clip",
        "--clip-value",
        "--epochs",
        "--seed",
        "--out",
        "--device",
        "--backend",
    ):
        assert opt in text, opt
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    for action in sub._actions:
        for s in action.option_strings:
            assert s in text, s
