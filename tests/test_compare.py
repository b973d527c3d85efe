"""lfp_snn.experiments.compare: the method comparison (API and ``lfp-snn compare``), pruning, memory measurement,
errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from lfp_snn import cli
from lfp_snn.cli.compare import lr_overrides
from lfp_snn.data import load_dataset
from lfp_snn.encoders import get_encoder
from lfp_snn.experiments import compare as cmp
from lfp_snn.experiments import metrics
from lfp_snn.experiments.memory import tensor_peak_mib
from lfp_snn.models import ModelConfig, build_model
from lfp_snn.training import TrainConfig, check_methods, resolve_method

pytest.importorskip("snntorch")
pytest.importorskip("norse")

METHODS = ["lfp-epsilon", "bptt-snntorch", "bptt-norse"]
SEEDS = [0, 1]
PNGS = ["accuracy.png", "time.png", "pruning.png", "summary.png"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these small networks gain nothing from more, and on a busy machine OpenMP threads
    that wait for each other make every op a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    train, test = load_dataset("digits")
    return train.subset(200, seed=0), test.subset(120, seed=0)


def _configs(name, method, rule, seed, overrides=None):
    o = dict(overrides or {})
    mc = ModelConfig(input_shape=(1, 8, 8), beta=o.pop("beta", 0.9))
    tc = TrainConfig(
        method=method,
        rule=rule,
        steps=4,
        epochs=2,
        batch_size=32,
        seed=seed,
        progress=False,
        **{"lr": 3e-3, **o},
    )
    return mc, tc


@pytest.fixture(scope="module")
def compared(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    train, test = data
    results = cmp.compare(METHODS, SEEDS, train, test, _configs, out, log=None, meta={"note": "test"})
    return out, results


@pytest.mark.slow
def test_one_row_per_method_and_seed(compared):
    out, results = compared
    assert [(r["method"], r["seed"]) for r in results] == [(m, s) for m in METHODS for s in SEEDS]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], int(r["seed"])) for r in rows] == [(m, s) for m in METHODS for s in SEEDS]
    assert {"test_accuracy", "epoch_time_s", "peak_memory_mib", "memory_measure", "spike_rate"} <= set(
        rows[0]
    )
    assert {f"prune_{p}" for p in (0, 25, 50, 75, 90, 95)} <= set(rows[0])
    with open(out / "epochs.csv") as f:
        assert len(list(csv.DictReader(f))) == len(METHODS) * len(SEEDS) * 2
    md = (out / "results.md").read_text()
    for m in METHODS:
        assert md.count(f"| {m} |") == len(SEEDS) + 2  # the runs, the per-method summary and efficiency
    assert "tensors held during one training step (torch profiler)" in md and "note: test" in md
    assert "all methods share one learning rate (0.003)" in md
    assert "## Efficiency (NeuroBench's metrics" in md
    for r in results:  # the LIF MLP runs in the neurobench package itself, through its snntorch twin
        eff = r["efficiency"]
        assert eff["source"].startswith("neurobench"), eff["source"]
        assert abs(eff["activation_sparsity"] - (1 - r["spike_rate"])) < 1e-9
        assert 0 < eff["synops_effective_acs"] < eff["synops_dense"] and eff["connection_sparsity"] == 0
    assert {"nb_activation_sparsity", "nb_synops_effective_acs", "nb_source"} <= set(rows[0])
    assert json.loads((out / "results.json").read_text())["meta"] == {"note": "test"}
    for name in PNGS:
        blob = (out / name).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 10_000, name
    assert (out / "runs" / "bptt-norse_seed1" / "model.pt").exists()


@pytest.mark.slow
def test_metrics_are_sane(compared):
    _, results = compared
    for r in results:
        assert r["test_accuracy"] > 0.2, r["method"]  # chance is 0.1
        assert 0 < r["spike_rate"] < 1
        assert 0 < r["sign_changed"] < 0.5
        assert r["epoch_time_s"] > 0 and r["peak_memory_mib"] >= 0
        assert len(r["epochs"]) == 2 and r["epochs"][0]["time_s"] > 0
        assert 0 < r["epochs"][-1]["train_spike_rate"] < 1


@pytest.mark.slow
def test_unpruned_accuracy_is_exactly_the_evaluation(compared):
    """0% pruning evaluates the trained model itself: the same accuracy as the Trainer's last evaluation."""
    _, results = compared
    for r in results:
        assert r["pruning"][0.0] == r["test_accuracy"] == r["epochs"][-1]["test_accuracy"]
        curve = [r["pruning"][f] for f in metrics.PRUNE_FRACTIONS]
        assert curve[-1] <= curve[0] + 0.05  # removing 95% of the weights does not help
        assert curve[-1] < 0.5


@pytest.mark.slow
def test_cli_compare(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["compare", "--methods", "lfp-epsilon", "bptt-snntorch", "--subset", "100", "--test-subset", "60"]
    argv += ["-T", "3", "--epochs", "1", "--seeds", "3", "--prune", "0", "50", "--out", str(out)]
    argv += ["--lr-for", "bptt-snntorch=0.002"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "result bptt-snntorch seed 3" in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in rows] == [("lfp-epsilon", "3"), ("bptt-snntorch", "3")]
    assert set(rows[0]) >= {"prune_0", "prune_50"} and "prune_90" not in rows[0]
    assert (
        json.loads((out / "runs" / "bptt-snntorch_seed3" / "config.json").read_text())["train"]["lr"] == 0.002
    )
    assert all((out / p).exists() for p in PNGS)


def test_unknown_method_lists_the_methods(capsys):
    assert cli.main(["compare", "--methods", "lfp-epsilon", "bptt-jax", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'bptt-jax'" in err
    for name in ("lfp-epsilon", "lfp-zplus-zminus", "bptt-snntorch", "bptt-norse"):
        assert name in err


def test_method_validation():
    assert resolve_method("lfp-zplus-zminus") == ("lfp", "zplus-zminus")
    assert resolve_method("bptt-norse") == ("bptt-norse", "epsilon")
    with pytest.raises(ValueError, match="bptt-snntorch"):
        resolve_method("lfp-nonsense")
    with pytest.raises(ValueError, match="twice"):
        check_methods(["bptt-norse", "bptt-norse"])
    with pytest.raises(ValueError, match="no methods"):
        check_methods([])
    with pytest.raises(ValueError, match="METHOD=LR"):
        lr_overrides(["bptt-norse:0.1"])


def test_prune_by_magnitude():
    model = build_model(ModelConfig(), seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruned = metrics.prune_by_magnitude(model, 0.5)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])  # the original is untouched
    for (n, p), (_, q) in zip(model.named_parameters(), pruned.named_parameters()):
        if n.endswith("bias"):
            assert torch.equal(p, q)
            continue
        zero = q == 0
        assert int(zero.sum()) == round(0.5 * p.numel())
        assert p.abs()[zero].max() <= p.abs()[~zero].min()  # the smallest magnitudes went
        assert torch.equal(q[~zero], p[~zero])
    same = metrics.prune_by_magnitude(model, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), same.parameters()))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.prune_by_magnitude(model, 1.5)


def test_evaluate_is_reproducible_with_a_random_encoder(data):
    _, test = data
    model = build_model(ModelConfig(), seed=0)
    enc = get_encoder("rate", 5)
    a = metrics.evaluate(model, test, enc, spiking=True, seed=7)
    b = metrics.evaluate(model, test, enc, spiking=True, seed=7)
    assert a == b and 0 <= a["spike_rate"] <= 1


def test_tensor_peak_counts_what_the_block_holds_and_is_the_same_twice():
    held = torch.ones(16 * 2**20 // 4)  # 16 MiB from before, used inside: counted

    def block():
        big = torch.ones(64 * 2**20 // 4)  # 64 MiB
        return float((big + held[0]).sum())  # 64 MiB more at the peak

    first, second = tensor_peak_mib(block), tensor_peak_mib(block)
    assert 143 < first < 146 and first == second


def test_ann_models_compare_too(data, tmp_path):
    train, test = data

    def configs(name, method, rule, seed, overrides):
        mc = ModelConfig(arch="mlp", input_shape=(1, 8, 8), hidden=(32,))
        return mc, TrainConfig(method=method, rule=rule, epochs=1, seed=seed, progress=False)

    results = cmp.compare(["lfp-epsilon", "gradient"], [0], train, test, configs, tmp_path, log=None)
    assert len(results) == 2 and all(r["spike_rate"] != r["spike_rate"] for r in results)  # NaN: no spikes
    assert isinstance(build_model(ModelConfig(arch="mlp", hidden=(32,))), nn.Sequential)


class Guarded:
    """A data set that fails on any use while ``locked``: the test split during tuning."""

    def __init__(self, data):
        self.data, self.locked = data, True

    def __getattr__(self, name):
        if self.__dict__.get("locked", True):
            raise AssertionError(f"the test set was used ({name}) while tuning")
        return getattr(self.data, name)

    def __len__(self):
        if self.locked:
            raise AssertionError("the test set was used (len) while tuning")
        return len(self.data)


def test_tuning_never_sees_the_test_split(data, monkeypatch):
    """Tuning chooses on the validation split of the training set: the test set is untouched until the
    tuning of every method is done, and scrambling the test labels changes nothing that was chosen."""
    train, test = data
    spec = cmp.TuneSpec({"lr": [1e-3, 1e-2]}, fraction=0.25, epochs=1)
    guarded = Guarded(test)
    real_run_one = cmp.run.run_one

    def run_one(*args, **kw):
        guarded.locked = False  # the runs start after all tuning ...
        return real_run_one(*args, **kw)

    order = []
    real_tune = cmp.run.tune_method

    def tune_method(name, *args, **kw):
        assert guarded.locked, "a method was tuned after the test set was used"
        order.append(name)
        return real_tune(name, *args, **kw)

    # ... of that method: compare tunes one method, runs it, then the next, so relock between methods
    monkeypatch.setattr(
        cmp.run, "run_one", lambda *a, **k: (run_one(*a, **k), setattr(guarded, "locked", True))[0]
    )
    monkeypatch.setattr(cmp.run, "tune_method", tune_method)
    methods = ["lfp-epsilon", "bptt-snntorch"]
    results = cmp.compare(methods, [0], train, guarded, _configs, None, log=None, prune=[0.0], tune=spec)
    assert order == methods
    scrambled = test.__class__(test.x, test.y[torch.randperm(len(test.y))], test.classes, "scrambled")
    again = cmp.compare(methods, [0], train, scrambled, _configs, None, log=None, prune=[0.0], tune=spec)
    for r, s in zip(results, again):
        assert r["tuned"] == s["tuned"] and r["tuning"]["trials"] == s["tuning"]["trials"]
        assert r["lr"] == r["tuned"]["lr"] in (1e-3, 1e-2)
        assert r["tuning"]["fit_size"] + r["tuning"]["validation_size"] == len(train)
        best = max(t["validation_accuracy"] for t in r["tuning"]["trials"])
        assert r["validation_accuracy"] == best


def test_tuning_scores_the_validation_split_and_picks_the_best(data):
    """The chosen candidate is the one with the highest validation accuracy (the first on ties), and its
    score is what evaluating that candidate's model on the validation split gives."""
    train, _ = data
    spec = cmp.TuneSpec({"lr": [1e-5, 3e-3], "beta": [0.5, 0.9]}, fraction=0.25, epochs=1)
    res = cmp.tune_method(
        "lfp-epsilon", lambda o: _configs("x", "lfp", "epsilon", 0, o), train, spec, 0, log=None
    )
    assert [t["setting"] for t in res["trials"]] == spec.candidates() and len(spec.candidates()) == 4
    scores = [t["validation_accuracy"] for t in res["trials"]]
    assert res["best"] == res["trials"][scores.index(max(scores))]["setting"]
    assert res["best"]["lr"] == 3e-3  # lr 1e-5 barely moves the weights in one epoch
    fit, val = train.holdout(0.25, seed=0)
    assert (len(fit), len(val)) == (res["fit_size"], res["validation_size"]) == (150, 50)
    assert not set(map(tuple, fit.x.flatten(1).tolist())) & set(map(tuple, val.x.flatten(1).tolist()))


def test_tuned_report_and_cli(tmp_path, capsys):
    out = tmp_path / "tuned"
    argv = ["compare", "--methods", "lfp-epsilon", "--subset", "120", "--test-subset", "60", "-T", "3"]
    argv += ["--epochs", "1", "--seeds", "0", "--prune", "0", "--out", str(out), "--tune-lr", "1e-3", "1e-2"]
    assert cli.main(argv) == 0
    assert "tuned {'lr'" in capsys.readouterr().out
    md = (out / "results.md").read_text()
    assert "## Tuning (validation split of the training set)" in md and "**(chosen)**" in md
    assert "best acc" not in md and "share one learning rate" not in md
    assert "the test set is used only for the reported accuracies" in md
    with open(out / "results.csv") as f:
        row = next(csv.DictReader(f))
    assert row["tuned"].startswith("lr=") and float(row["validation_accuracy"]) >= 0
    assert "best_test_accuracy" not in row


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--tune-lr", "1e-3", "--lr", "1e-3"], "--tune-lr and --lr"),
        (["--tune-lr", "1e-3", "--lr-for", "lfp-epsilon=0.01"], "--tune-lr and --lr-for"),
        (["--val-fraction", "0.3"], "apply only with a --tune-"),
        (["--tune-epochs", "2"], "apply only with a --tune-"),
        (["--tune-clip-value", "1", "2"], "needs update clipping"),
        (["--tune-lr", "1e-3", "--val-fraction", "1.5"], "fraction must lie in"),
        (["--tune-lr", "1e-3", "1e-3"], "twice"),
        (["--tune-beta", "0.5", "--arch", "mlp"], "spiking models"),
    ],
)
def test_tuning_options_that_do_not_apply(tmp_path, capsys, extra, match):
    argv = ["compare", "--methods", "lfp-epsilon", "--subset", "60", "--epochs", "1", "--out", str(tmp_path)]
    assert cli.main(argv + extra) != 0
    assert match in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before anything ran
