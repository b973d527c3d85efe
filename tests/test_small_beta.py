"""Options that keep silent neurons learning (docs/small_beta.md): the membrane-aware ε rule
(lfp_snn.rules.membrane_share), homeostasis (lfp_snn.homeostasis) and the input-noise schedule.

Every option is off by default and then leaves the reference rule untouched bit for bit; switched on, it
changes the feedback only by the term its equations add. The membrane-aware rule is checked against a literal,
step-by-step implementation of its equations on a 2-layer SNN whose hidden neurons are built to spike at every
step (neuron 0), never (neuron 1) or sometimes (neuron 2).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lfp_snn import LIF, SpikingSequential, feedback_result
from lfp_snn.cli import build_parser, configs_from_args, main
from lfp_snn.data import load_dataset
from lfp_snn.homeostasis import Homeostasis
from lfp_snn.models import ModelConfig
from lfp_snn.rules.membrane_share import MembraneShare, as_membrane_share, near_firing
from lfp_snn.training import TrainConfig, Trainer
from lfp_snn.training import noise_scale as _noise_schedule

DT = torch.float64
EPS = 1e-6
BETA, THR = 0.5, 1.0


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------------
# a 2-layer SNN with an always-spiking, a silent and a sometimes-spiking hidden neuron
# ------------------------------------------------------------------------------------------------------

T, B = 5, 2


def _net() -> nn.Sequential:
    lin1, lin2 = nn.Linear(3, 3).to(DT), nn.Linear(3, 2).to(DT)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[2.0, 1.5, 1.0], [0.1, 0.15, 0.05], [0.5, -0.2, 0.4]], dtype=DT))
        lin1.bias.copy_(torch.tensor([1.0, 0.02, 0.1], dtype=DT))
        lin2.weight.copy_(torch.tensor([[0.7, 0.9, -0.4], [-0.3, 0.6, 0.8]], dtype=DT))
        lin2.bias.copy_(torch.tensor([0.3, 0.2], dtype=DT))
    return SpikingSequential(lin1, LIF(BETA, THR), lin2, LIF(BETA, THR))


def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(T, B, 3, generator=g, dtype=DT) * 0.5 + 0.5  # in [0.5, 1]


REWARD = torch.randn(T, B, 2, generator=torch.Generator().manual_seed(5), dtype=DT)
LABELS = torch.tensor([0, 1])


def _fixed_reward(outputs, labels):
    return REWARD.clone()


def _feedback(net, x, share=None, **kw):
    return feedback_result(net, x, LABELS, _fixed_reward, "epsilon", membrane_share=share, **kw).feedback


def _lif_forward(current):
    """Literal LIF (subtract, delayed reset): spikes, U and P (= U_{t-1}) per step."""
    u = torch.zeros_like(current[0])
    s_all, u_all, p_all = [], [], []
    for t in range(current.shape[0]):
        fired = (u > THR).to(DT)
        p = u
        u = BETA * p + current[t] - THR * fired
        s_all.append((u > THR).to(DT))
        u_all.append(u)
        p_all.append(p)
    return torch.stack(s_all), torch.stack(u_all), torch.stack(p_all)


def literal_membrane_feedback(net, x, lam: float, lam_w: float, k: float = 1.0):
    """The membrane-aware ε rule by its equations, one step at a time (t = T..1), no lfp_snn code:

    a_t = (1 - S_t) clamp(U_t / θ, 0, 1)^k;   R¹_t = (S_t + λ a_t) ⊙ (g²_t W²);   F_W² += |W²| ⊙ g²_t ⊗ (S_t + λ_W a_t)
    g_t = (R_t + C_{t+1}) / (|U_{t-1}| + |U_t + θ reset_t - U_{t-1}| + ε);   C_t = β U_{t-1} g_t
    """
    lin1, lin2 = net[0], net[2]
    w1, b1, w2, b2 = lin1.weight.detach(), lin1.bias.detach(), lin2.weight.detach(), lin2.bias.detach()
    i1 = x @ w1.T + b1
    s1, u1, p1 = _lif_forward(i1)
    i2 = s1 @ w2.T + b2
    s2, u2, p2 = _lif_forward(i2)
    a1 = (1 - s1) * (u1 / THR).clamp(0, 1) ** k

    def d(u, p):  # subtract + delay: reset_t = S_{t-1} = H(U_{t-1} - θ)
        reset = (p > THR).to(DT)
        return p.abs() + (u + THR * reset - p).abs() + EPS

    fw1, fb1, fw2, fb2 = (torch.zeros_like(t) for t in (w1, b1, w2, b2))
    c1, c2 = torch.zeros(B, 3, dtype=DT), torch.zeros(B, 2, dtype=DT)
    for t in range(T - 1, -1, -1):
        g2 = (REWARD[t] + c2) / d(u2[t], p2[t])
        c2 = BETA * p2[t] * g2
        fw2 += w2.abs() * (g2.T @ (s1[t] + lam_w * a1[t]))
        fb2 += b2.abs() * g2.sum(0)
        r1 = (s1[t] + lam * a1[t]) * (g2 @ w2)
        g1 = (r1 + c1) / d(u1[t], p1[t])
        c1 = BETA * p1[t] * g1
        fw1 += w1.abs() * (g1.T @ x[t])
        fb1 += b1.abs() * g1.sum(0)
    return {"0.weight": fw1, "0.bias": fb1, "2.weight": fw2, "2.bias": fb2}, s1


def test_the_test_network_has_an_always_a_never_and_a_sometimes_spiking_neuron():
    x = _inputs()
    _, s1 = literal_membrane_feedback(_net(), x, 0.0, 0.0)
    counts = s1.sum((0, 1))
    assert counts[0] == T * B and counts[1] == 0 and 0 < counts[2] < T * B


@pytest.mark.parametrize("constant", [False, True])
def test_options_at_zero_are_the_reference_bit_for_bit(constant):
    net = _net()
    x = _inputs()
    kw = {"steps": T} if constant else {}
    x = x[0] if constant else x
    ref = _feedback(net, x, None, **kw)
    for off in (0.0, MembraneShare(), MembraneShare(0.0, 0.0, "sigmoid", 2.0, 0.5)):
        got = _feedback(net, x, off, **kw)
        assert got.keys() == ref.keys()
        for k in ref:
            assert torch.equal(got[k], ref[k]), k
    assert as_membrane_share(0.0) is None and as_membrane_share(MembraneShare()) is None


@pytest.mark.parametrize(
    ("lam", "lam_w", "k"), [(0.0, 0.0, 1.0), (0.3, 0.0, 1.0), (1.0, 0.5, 2.0), (0.0, 0.4, 1.0)]
)
def test_membrane_share_matches_its_equations_step_by_step(lam, lam_w, k):
    net, x = _net(), _inputs()
    want, _ = literal_membrane_feedback(net, x, lam, lam_w, k)
    got = _feedback(net, x, MembraneShare(lam, lam_w, "power", k))
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-10, atol=1e-12, msg=name)


def test_silent_neuron_gets_feedback_only_with_the_membrane_share():
    net, x = _net(), _inputs()
    ref = _feedback(net, x)
    on = _feedback(net, x, MembraneShare(0.5))
    # reference: the silent hidden neuron's incoming weights and bias get nothing
    assert torch.all(ref["0.weight"][1] == 0) and ref["0.bias"][1] == 0
    assert torch.all(on["0.weight"][1] != 0) and on["0.bias"][1] != 0
    # the neuron that spikes at every step has a = 0: its feedback is unchanged, bit for bit
    assert torch.equal(on["0.weight"][0], ref["0.weight"][0]) and torch.equal(
        on["0.bias"][0], ref["0.bias"][0]
    )
    # λ alone leaves the layer above untouched (its g does not depend on what goes down)
    assert torch.equal(on["2.weight"], ref["2.weight"]) and torch.equal(on["2.bias"], ref["2.bias"])


def test_weight_share_adds_exactly_its_term_to_the_layer_above():
    """F_W² changes by λ_W |W²| ⊙ (g²ᵀ a): nothing in the column of the always-spiking neuron."""
    net, x = _net(), _inputs()
    ref = _feedback(net, x)
    on = _feedback(net, x, MembraneShare(0.0, 0.4))
    assert torch.all(ref["2.weight"][:, 1] == 0)  # the silent neuron's outgoing weights: nothing
    assert torch.all(on["2.weight"][:, 1] != 0)
    assert torch.equal(on["2.weight"][:, 0], ref["2.weight"][:, 0])
    # λ_W alone does not change the reward passed down
    assert torch.equal(on["0.weight"], ref["0.weight"]) and torch.equal(on["0.bias"], ref["0.bias"])
    one, _ = literal_membrane_feedback(net, x, 0.0, 1.0)
    zero, _ = literal_membrane_feedback(net, x, 0.0, 0.0)
    torch.testing.assert_close(on["2.weight"] - ref["2.weight"], 0.4 * (one["2.weight"] - zero["2.weight"]))


@pytest.mark.parametrize("mode", ["constant", "recompute", "micro_batch", "bf16"])
def test_membrane_share_in_every_engine_mode(mode):
    torch.manual_seed(0)
    net = SpikingSequential(
        nn.Linear(6, 8), LIF(0.3, 1.0), nn.Linear(8, 8), LIF(0.3, 1.0), nn.Linear(8, 3), LIF(0.3)
    )
    x = torch.rand(4, 6) * 2
    labels = torch.tensor([0, 1, 2, 0])
    share = MembraneShare(0.5, 0.2)
    base = feedback_result(net, x, labels, "sequence", steps=6, membrane_share=share).feedback
    if mode == "constant":  # the same input as a [T, B, ...] tensor: the potential is kept, not recomputed
        got = feedback_result(
            net, x.expand(6, 4, 6).contiguous(), labels, "sequence", membrane_share=share
        ).feedback
    elif mode == "recompute":
        got = feedback_result(
            net, x, labels, "sequence", steps=6, membrane_share=share, recompute=True
        ).feedback
    elif mode == "micro_batch":
        got = feedback_result(
            net, x, labels, "sequence", steps=6, membrane_share=share, micro_batch=3
        ).feedback
    else:
        got = feedback_result(
            net, x, labels, "sequence", steps=6, membrane_share=share, matmul_dtype=torch.bfloat16
        ).feedback
    tol = {"rtol": 3e-2, "atol": 1e-3} if mode == "bf16" else {"rtol": 1e-5, "atol": 1e-7}
    for k in base:
        torch.testing.assert_close(got[k], base[k], **tol, msg=k)
    ref = feedback_result(net, x, labels, "sequence", steps=6).feedback
    assert any(not torch.equal(ref[k], base[k]) for k in ref)


def test_membrane_share_needs_a_lif_right_below_and_the_epsilon_rule():
    net = SpikingSequential(
        nn.Conv2d(1, 2, 3, padding=1), LIF(0.5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3), LIF(0.5)
    )
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="MaxPool2d.*not a LIF layer directly"):
        feedback_result(net, x, torch.tensor([0, 1]), steps=3, membrane_share=0.3)
    mlp = SpikingSequential(nn.Flatten(), nn.Linear(16, 4), LIF(0.5), nn.Linear(4, 3), LIF(0.5))
    with pytest.raises(ValueError, match="variant of the ε rule"):
        feedback_result(mlp, x, torch.tensor([0, 1]), rule="zplus-zminus", steps=3, membrane_share=0.3)
    feedback_result(mlp, x, torch.tensor([0, 1]), steps=3, membrane_share=0.3)  # Flatten below is fine
    with pytest.raises(ValueError, match="membrane share input"):
        MembraneShare(-0.1)
    with pytest.raises(ValueError, match="membrane activity"):
        MembraneShare(0.1, activity="relu")
    with pytest.raises(TypeError):
        as_membrane_share("0.3")


def test_near_firing_activity_by_hand():
    pot = torch.tensor([[-0.5, 0.0, 0.25, 0.5, 1.0, 1.5]])
    # strict threshold: V = θ does not spike, so a = 1 there; spikes (V > θ) get 0
    assert near_firing(pot, 1.0).tolist() == [[0.0, 0.0, 0.25, 0.5, 1.0, 0.0]]
    assert near_firing(pot, 1.0, "power", 2.0).tolist() == [[0.0, 0.0, 0.0625, 0.25, 1.0, 0.0]]
    sig = near_firing(pot, 2.0, "sigmoid", tau=0.5)
    want = [1 / (1 + math.exp(-(v - 2.0) / 1.0)) for v in pot[0].tolist()]
    torch.testing.assert_close(sig[0], torch.tensor(want))
    per_neuron = near_firing(torch.tensor([[0.5, 0.5]]), torch.tensor([1.0, 0.25]))
    assert per_neuron.tolist() == [[0.5, 0.0]]


# ------------------------------------------------------------------------------------------------------
# homeostasis
# ------------------------------------------------------------------------------------------------------


def _two_layer(n_hidden=4):
    return SpikingSequential(
        nn.Flatten(), nn.Linear(3, n_hidden), LIF(0.5, 1.0), nn.Linear(n_hidden, 2), LIF(0.5)
    )


def test_homeostasis_lowers_theta_only_below_the_target_rate():
    model = _two_layer()
    h = Homeostasis(rate=0.2, target=0.1, momentum=0.0)
    # T = 10, B = 2: 20 chances; rates 0, 0.05, 0.1, 0.5 -> deficits 1, 0.5, 0, 0
    counts = torch.tensor([0.0, 1.0, 2.0, 10.0])
    h.update(model, {"2": counts, "4": torch.tensor([2.0, 2.0])}, samples=2, steps=10)
    thr = model[2].threshold
    assert thr.shape == (4,)
    torch.testing.assert_close(thr, torch.tensor([0.8, 0.9, 1.0, 1.0]))
    assert model[4].threshold.shape == (2,) and torch.all(model[4].threshold == 1.0)  # at target: unchanged
    # the multiplicative step repeats, but never below min_threshold · θ⁰
    for _ in range(50):
        h.update(model, {"2": counts}, samples=2, steps=10)
    torch.testing.assert_close(model[2].threshold, torch.tensor([0.1, 0.1, 1.0, 1.0]))


def test_homeostasis_running_rate():
    model = _two_layer(2)
    h = Homeostasis(rate=0.5, target=0.5, momentum=0.5)
    h.update(model, {"2": torch.tensor([0.0, 4.0])}, samples=1, steps=4)  # r = 0, 1 -> r̄ = 0, 1
    torch.testing.assert_close(model[2].threshold, torch.tensor([0.5, 1.0]))
    h.update(model, {"2": torch.tensor([4.0, 0.0])}, samples=1, steps=4)  # r̄ = 0.5, 0.5: no deficit
    torch.testing.assert_close(model[2].threshold, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(h.running["2"], torch.tensor([0.5, 0.5]))


def test_homeostasis_bias_mode_dense_and_conv():
    model = _two_layer()
    b0 = model[1].bias.detach().clone()
    h = Homeostasis(rate=0.1, target=0.1, momentum=0.0, mode="bias")
    h.update(model, {"2": torch.tensor([0.0, 1.0, 2.0, 10.0])}, samples=2, steps=10)
    torch.testing.assert_close(model[1].bias - b0, torch.tensor([0.1, 0.05, 0.0, 0.0]))
    assert model[2].threshold.shape == ()  # θ untouched
    conv = SpikingSequential(nn.Conv2d(1, 2, 1), LIF(0.5, 2.0))
    cb = conv[0].bias.detach().clone()
    counts = torch.zeros(2, 1, 2)
    counts[1] = 10.0  # channel 0 silent at both positions, channel 1 at the target
    h = Homeostasis(rate=0.1, target=0.1, momentum=0.0, mode="bias")
    h.update(conv, {"1": counts}, samples=2, steps=10)
    torch.testing.assert_close(conv[0].bias - cb, torch.tensor([0.2, 0.0]))  # η θ d, θ = 2
    with pytest.raises(ValueError, match="needs a Linear/Conv layer with a bias"):
        Homeostasis(mode="bias").update(
            SpikingSequential(nn.Linear(2, 2, bias=False), LIF()), {"1": torch.zeros(2)}, 1, 1
        )


def test_homeostasis_rejects_bad_settings():
    for kw, msg in [
        ({"rate": 0}, "rate"),
        ({"target": 0}, "target"),
        ({"momentum": 1}, "momentum"),
        ({"min_threshold": 0}, "min_threshold"),
        ({"mode": "gain"}, "mode"),
    ]:
        with pytest.raises(ValueError, match=msg):
            Homeostasis(**kw)


# ------------------------------------------------------------------------------------------------------
# Trainer, TrainConfig and CLI
# ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    train, test = load_dataset("digits")
    return train.subset(96, seed=0), test.subset(48, seed=0)


def _mc(**kw):
    return ModelConfig(arch="spiking-small", input_shape=(1, 8, 8), classes=10, hidden=(24,), beta=0.3, **kw)


def _tc(**kw):
    return TrainConfig(**{**dict(epochs=1, steps=4, batch_size=32, lr=3e-3, progress=False), **kw})


def _fit(tiny, **kw):
    tr = Trainer(_mc(), _tc(**kw))
    hist = tr.fit(*tiny)
    return tr, hist


def test_trainer_options_off_equal_the_default_bit_for_bit(tiny):
    ref, _ = _fit(tiny)
    off, _ = _fit(
        tiny, membrane_share=0.0, membrane_share_weight=0.0, homeostasis=0.0, noise_schedule="cosine"
    )
    for (n, p), (_, q) in zip(ref.model.state_dict().items(), off.model.state_dict().items()):
        assert torch.equal(p, q), n


def test_trainer_membrane_share_and_homeostasis(tiny):
    ref, _ = _fit(tiny)
    mem, _ = _fit(tiny, membrane_share=0.5)
    assert not torch.equal(ref.model[1].weight, mem.model[1].weight)
    home, hist = _fit(tiny, homeostasis=0.2, homeostasis_target=0.05)
    thr = home.model[2].threshold
    assert thr.shape == (24,) and torch.all(thr <= 1.0) and torch.any(thr < 1.0)
    below = home.homeostasis.running["2"] < 0.05
    assert torch.all(thr[~below & (thr < 1)] < 1)  # (lowered earlier, then above target: kept, not raised)
    assert hist[-1]["silent/2"] <= 1.0


def test_noise_schedule_field_and_old_extra_key(tiny):
    assert TrainConfig(extra={"noise_schedule": "linear"}).noise_schedule == "linear"
    assert TrainConfig(extra={"noise_schedule": "linear", "surrogate_slope": 5}).extra == {
        "surrogate_slope": 5
    }
    with pytest.raises(ValueError, match="disagree"):
        TrainConfig(noise_schedule="cosine", extra={"noise_schedule": "linear"})
    with pytest.raises(ValueError, match="noise_schedule must be one of"):
        TrainConfig(noise_schedule="step").validate()
    assert [_noise_schedule("linear", e, 4) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert _noise_schedule("cosine", 2, 4) == pytest.approx(0.5)
    tr = Trainer(_mc(), _tc(epochs=2, input_noise=0.2, noise_schedule="linear"))
    seen = []
    tr.fit(*tiny, on_epoch=lambda r: seen.append(tr.noise_std()))
    assert seen == [pytest.approx(0.2), pytest.approx(0.1)]


def test_config_errors():
    with pytest.raises(ValueError, match="option of LFP-ε"):
        TrainConfig(method="bptt-snntorch", membrane_share=0.3).validate()
    with pytest.raises(ValueError, match="homeostasis_mode 'bias'"):
        TrainConfig(method="bptt-snntorch", homeostasis=0.1).validate()
    TrainConfig(method="bptt-snntorch", homeostasis=0.1, homeostasis_mode="bias").validate()
    with pytest.raises(ValueError, match="membrane_activity"):
        TrainConfig(membrane_activity="relu").validate()
    with pytest.raises(ValueError, match="homeostasis target"):
        TrainConfig(homeostasis=0.1, homeostasis_target=2.0).validate()


def test_cli_flags_reach_the_config(tiny, tmp_path):
    a = build_parser().parse_args(
        [
            "train",
            "--noise-schedule",
            "cosine",
            "--membrane-share",
            "0.3",
            "--membrane-share-weight",
            "0.1",
            "--membrane-activity",
            "sigmoid",
            "--membrane-tau",
            "0.5",
            "--homeostasis",
            "0.05",
            "--homeostasis-target",
            "0.03",
            "--homeostasis-mode",
            "bias",
            "--homeostasis-min-threshold",
            "0.2",
        ]
    )
    _, tc = configs_from_args(a, tiny[0])
    assert (tc.noise_schedule, tc.membrane_share, tc.membrane_share_weight) == ("cosine", 0.3, 0.1)
    assert (tc.membrane_activity, tc.membrane_tau, tc.homeostasis, tc.homeostasis_target) == (
        "sigmoid",
        0.5,
        0.05,
        0.03,
    )
    assert (tc.homeostasis_mode, tc.homeostasis_min_threshold) == ("bias", 0.2)
    defaults = configs_from_args(build_parser().parse_args(["train"]), tiny[0])[1]
    assert (defaults.membrane_share, defaults.homeostasis, defaults.noise_schedule) == (0.0, 0.0, "constant")
    rc = main(
        ["train", "--subset", "60", "--test-subset", "30", "--hidden", "16", "-T", "3", "--epochs", "1",
         "--beta", "0.3", "--membrane-share", "0.3", "--homeostasis", "0.05", "--no-progress", "--threads", "1"]
    )  # fmt: skip
    assert rc == 0


@pytest.mark.slow
def test_ablation_benchmark_runs_end_to_end(tmp_path):
    """The ablation's one command, shrunk to two one-epoch trials in this process."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation_small_beta.py"
    spec = importlib.util.spec_from_file_location("ablation_small_beta", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "ablation.md"
    args = ["--out", str(out), "--datasets", "digits", "--betas", "0.3", "--steps", "3", "--seeds", "0"]
    args += [
        "--variants",
        "LFP-ε",
        "homeostasis",
        "--epochs-digits",
        "1",
        "--digits-train",
        "64",
        "--hidden",
        "16",
    ]
    assert mod.main([*args, "--jobs", "1"]) == 0
    text = out.read_text()
    assert "| 0.3 | 3 |" in text and "homeostasis" in text
    assert len((tmp_path / "ablation.jsonl").read_text().splitlines()) == 2
    assert mod.main([*args, "--jobs", "1"]) == 0  # resumes: nothing rerun
    assert len((tmp_path / "ablation.jsonl").read_text().splitlines()) == 2
