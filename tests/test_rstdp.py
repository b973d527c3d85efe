"""R-STDP (``--method rstdp``, lfp_snn.baselines.rstdp): the update against hand-computed numbers and against a
literal float64 implementation of the documented equations, the refusals, and a short training run.

The literal reference runs the network step by step (for t = 1..T, then layer by layer, the documented LIF
dynamics as in tests/test_snn_literal.py), then per layer and per sample walks t again with the traces
a_t = λ a_{t-1} + x_t and q_t = λ q_{t-1} + s_t, adding A₊ (∂(W x)/∂W)ᵀ|_{x=a_t} s_t − A₋ (∂(W x)/∂W)ᵀ|_{x=x_t}
q_{t-1} to the sample's eligibility e_b (an outer product for Linear, torch.func.vjp of F.conv2d per step and
sample for Conv), and finally ΔW = (1/B) Σ_b (M_b e_b + τ_b e_{b,ŷ_b}); no lfp_snn layer or scan code is used.
"""

from __future__ import annotations

import copy
import csv
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vjp

import lfp_snn
from lfp_snn import LIF, CubaLIF, SpikingSequential, cli
from lfp_snn.baselines.rstdp import RSTDP, RSTDPOptions, rstdp_options
from lfp_snn.data import load_dataset
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64


def _trainer(model: nn.Module, **extra) -> Trainer:
    return Trainer(ModelConfig(), TrainConfig(method="rstdp", progress=False, extra=extra), model=model)


# ---------------------------------------------------------------------------------------------------------
# 1. Hand-computed updates: Linear(2 -> 2) + LIF(β = 0.5, θ = 1, subtract, reset delay), T = 4, λ = 0.5,
#    A₊ = 1, A₋ = 0.5 (every number below is exact in float64)
# ---------------------------------------------------------------------------------------------------------


def _hand_model() -> nn.Module:
    lin = nn.Linear(2, 2).to(DT)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.5, 0.0], [0.25, 0.75]], dtype=DT))
        lin.bias.zero_()
    return SpikingSequential(lin, LIF(beta=0.5, threshold=1.0))


# input spikes x_t (one sample): t1 [1, 0], t2 [0, 1], t3 [1, 1], t4 [0, 0]
HAND_X = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=DT)
HAND = dict(stdp_decay=0.5, stdp_a_plus=1.0, stdp_a_minus=0.5)
# currents I_t = W x_t:  neuron 0: 1.5, 0, 1.5, 0;   neuron 1: 0.25, 0.75, 1.0, 0
# U_t = β U_{t-1} + I_t − θ H(U_{t-1} − θ), S_t = H(U_t − θ):
#   neuron 0: U = 1.5 (S=1), 0.75 − 1 = −0.25, −0.125 + 1.5 = 1.375 (S=1), 0.6875 − 1 = −0.3125  -> S = 1 0 1 0
#   neuron 1: U = 0.25, 0.875, 1.4375 (S=1), 0.71875 − 1 = −0.28125                          -> S = 0 0 1 0
# counts [2, 1]: the decision ŷ = 0
# pre trace a_t: [1, 0], [0.5, 1], [1.25, 1.5], [0.625, 0.75]
# post trace q_t: neuron 0: 1, 0.5, 1.25, 0.625 -> q_{t-1} = 0, 1, 0.5, 1.25
#                 neuron 1: 0, 0, 1, 0.5        -> q_{t-1} = 0, 0, 0, 1
# potentiation Σ_t s_{t,i} a_t:   neuron 0: a_1 + a_3 = [2.25, 1.5];   neuron 1: a_3 = [1.25, 1.5]
# depression Σ_t q_{t-1,i} x_t:   neuron 0: 1·[0,1] + 0.5·[1,1] + 1.25·[0,0] = [0.5, 1.5];   neuron 1: 1·[0,0] = 0
# e = A₊ pot − A₋ dep:            neuron 0: [2.25 − 0.25, 1.5 − 0.75] = [2.0, 0.75];   neuron 1: [1.25, 1.5]
E0 = [2.0, 0.75]
E1 = [1.25, 1.5]


@pytest.mark.parametrize(
    "label, target, delta",
    [
        # right (y = ŷ = 0): r = +1, M = [1, 0]: only the decision neuron's synapses, reinforced
        (0, "decision", [E0, [0.0, 0.0]]),
        (0, "none", [E0, [0.0, 0.0]]),
        # wrong (y = 1): r = −1, M = [−1, 0]; target "decision": τ = [0, 1] takes the decision neuron's e
        (1, "decision", [[-2.0, -0.75], E0]),
        # target "own" (M_{b,y} = +1): the target's own eligibility
        (1, "own", [[-2.0, -0.75], E1]),
        # no target term: pure R-STDP
        (1, "none", [[-2.0, -0.75], [0.0, 0.0]]),
        (1, False, [[-2.0, -0.75], [0.0, 0.0]]),
        (1, True, [[-2.0, -0.75], E0]),
    ],
)
def test_hand_computed_update(label, target, delta):
    model = _hand_model()
    tr = _trainer(model, **HAND, rstdp_target=target)
    out = tr.step_fn(HAND_X[:, None], torch.tensor([label]))
    lin = model[0]
    assert torch.equal(lin.weight.grad, -torch.tensor(delta, dtype=DT))
    assert torch.equal(lin.bias.grad, torch.zeros(2, dtype=DT))  # biases are not plastic
    assert torch.equal(out.output[:, 0], torch.tensor([[1, 0], [0, 0], [1, 1], [0, 0]], dtype=DT))
    assert out.objective == (1.0 if label == 0 else -1.0)
    assert torch.equal(out.spike_counts["1"], torch.tensor([2.0, 1.0], dtype=DT))


def test_hand_computed_batch_is_the_mean_over_samples():
    """B = 2 (the right and the wrong sample): ΔW = (1/B) Σ_b; the reward of the objective is the mean."""
    model = _hand_model()
    tr = _trainer(model, **HAND)
    out = tr.step_fn(HAND_X[:, None].expand(4, 2, 2), torch.tensor([0, 1]))
    right = torch.tensor([E0, [0.0, 0.0]], dtype=DT)
    wrong = torch.tensor([[-2.0, -0.75], E0], dtype=DT)
    assert torch.equal(model[0].weight.grad, -(right + wrong) / 2)
    assert out.objective == 0.0


def test_silent_read_out_counts_as_wrong_and_changes_nothing():
    """A silent output: argmax picks class 0, yet the sample is wrong (r = −1); its eligibility is zero."""
    model = _hand_model()
    with torch.no_grad():
        model[0].weight.zero_()
    tr = _trainer(model, **HAND)
    out = tr.step_fn(HAND_X[:, None], torch.tensor([0]))
    assert out.objective == -1.0
    assert torch.equal(model[0].weight.grad, torch.zeros(2, 2, dtype=DT))


# ---------------------------------------------------------------------------------------------------------
# 2. A literal float64 implementation against the method
# ---------------------------------------------------------------------------------------------------------


def _lif_step(u_prev, i_t, lif: LIF):
    """One documented LIF step (lfp_snn/neurons/lif.py). Returns (spikes, U_t)."""
    beta, thr = float(lif.beta), float(lif.threshold)
    if lif.reset_delay:
        fired = (u_prev > thr).to(DT)
        p = u_prev if lif.reset == "subtract" else u_prev * (1 - fired)
        u = beta * p + i_t - (thr * fired if lif.reset == "subtract" else 0.0)
        return (u > thr).to(DT), u
    pre = beta * u_prev + i_t
    s = (pre > thr).to(DT)
    return s, (pre - thr * s if lif.reset == "subtract" else pre * (1 - s))


def _affine(m, x, w, b=None):
    if isinstance(m, nn.Linear):
        return F.linear(x, w, b)
    return F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)


def literal_forward(model: nn.Sequential, xs):
    """Step by step: per parametric layer (by name) its inputs x_t [B, ...] and the spikes s_t of its LIF."""
    layers = list(model.named_children())
    T = xs.shape[0]
    ins = {n: [] for n, m in layers if isinstance(m, (nn.Linear, nn.Conv2d))}
    spk = {n: [] for n in ins}
    mem = {}
    for t in range(T):
        h = xs[t]
        for name, m in layers:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                ins[name].append(h)
                h, cur = _affine(m, h, m.weight, m.bias), name
            elif isinstance(m, LIF):
                h, mem[name] = _lif_step(mem.get(name, torch.zeros_like(h)), h, m)
                spk[cur].append(h)
            elif isinstance(m, nn.MaxPool2d):
                h = F.max_pool2d(h, m.kernel_size, m.stride, m.padding)
            elif isinstance(m, nn.AvgPool2d):
                h = F.avg_pool2d(h, m.kernel_size, m.stride, m.padding)
            elif isinstance(m, nn.Flatten):
                h = h.flatten(1)
            else:
                raise AssertionError(type(m))
    return {n: torch.stack(v) for n, v in ins.items()}, {n: torch.stack(v) for n, v in spk.items()}, cur


def literal_rstdp(model, xs, labels, o: RSTDPOptions):
    """ΔW per parametric layer, the reward and the output spikes, straight from the equations."""
    ins, spk, last = literal_forward(model, xs)
    layers = dict(model.named_children())
    out = spk[last]
    T, B = out.shape[:2]
    counts = out.sum(0)
    pred = [int(torch.argmax(counts[b])) for b in range(B)]
    r = [1.0 if pred[b] == int(labels[b]) and counts[b].sum() > 0 else -1.0 for b in range(B)]
    rbar = sum(r) / B
    deltas = {}
    for name, x in ins.items():
        m, s = layers[name], spk[name]
        w = m.weight.detach()
        total = torch.zeros_like(w)
        for b in range(B):
            a = torch.zeros_like(x[0, b])
            q = torch.zeros_like(s[0, b])  # q_{t-1}
            e = torch.zeros_like(w)  # e_b, one row (output channel) per post neuron for Linear
            for t in range(T):
                a = o.decay * a + x[t, b]
                if isinstance(m, nn.Linear):
                    e += o.a_plus * torch.outer(s[t, b], a) - o.a_minus * torch.outer(q, x[t, b])
                else:
                    _, pull_a = vjp(lambda w_, m=m, inp=a: _affine(m, inp[None], w_), w)
                    _, pull_x = vjp(lambda w_, m=m, inp=x[t, b]: _affine(m, inp[None], w_), w)
                    e += o.a_plus * pull_a(s[t, b][None])[0] - o.a_minus * pull_x(q[None])[0]
                q = o.decay * q + s[t, b]
            if name == last:  # Linear read-out: per output neuron i
                for i in range(w.shape[0]):
                    M = r[b] * (i == pred[b])
                    if o.target == "own" and r[b] < 0 and i == int(labels[b]):
                        M = 1.0
                    total[i] += M * e[i]
                    if o.target == "decision" and r[b] < 0 and i == int(labels[b]):
                        total[i] += e[pred[b]]
            else:
                total += (r[b] - rbar if o.baseline else r[b]) * e
        deltas[name] = total / B
    return deltas, r, out


def _mlp():
    torch.manual_seed(1)
    layers = [nn.Linear(6, 8), LIF(0.9, 1.0), nn.Linear(8, 7), LIF(0.8, 0.7), nn.Linear(7, 4), LIF(0.9, 0.5)]
    model = SpikingSequential(*layers).to(DT)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn_like(m.weight) * 0.8 + 0.25)
                m.bias.copy_(torch.randn_like(m.bias) * 0.1)
    xs = (torch.rand(5, 3, 6, dtype=DT) < 0.5).to(DT)
    return model, xs


def _convnet():
    torch.manual_seed(2)
    model = SpikingSequential(
        nn.Conv2d(2, 3, 3, padding=1),
        LIF(0.9, 1.0),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2, bias=False),
        LIF(0.8, 0.6, reset="zero", reset_delay=False),
        nn.Flatten(),
        nn.Linear(16, 5),
        LIF(0.9, 0.5),
    ).to(DT)
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.randn_like(m.weight) * 0.6 + 0.2)
    xs = torch.rand(5, 3, 2, 6, 6, dtype=DT)  # an encoded (non-binary) input
    return model, xs


OPTION_SETS = [
    {},
    {
        "stdp_decay": 0.5,
        "stdp_a_plus": 0.7,
        "stdp_a_minus": 1.3,
        "rstdp_target": "own",
        "rstdp_baseline": False,
    },
    {"stdp_decay": 0.0, "rstdp_target": "none"},
]


@pytest.mark.parametrize("build", [_mlp, _convnet], ids=["mlp", "conv"])
@pytest.mark.parametrize("extra", OPTION_SETS, ids=["defaults", "own-nobaseline", "pure"])
def test_matches_literal_equations(build, extra):
    model, xs = build()
    _, spk, last = literal_forward(model, xs)
    assert all(0 < float(s.mean()) < 1 for s in spk.values())  # every layer fires, none saturates
    pred = spk[last].sum(0).argmax(-1)
    labels = torch.stack([pred[0], (pred[1] + 1) % 4, (pred[2] + 2) % 4])  # right, wrong, wrong
    assert (spk[last].sum(0).sum(-1) > 0).all()
    deltas, r, out = literal_rstdp(model, xs, labels, rstdp_options(extra))
    assert r == [1.0, -1.0, -1.0]
    tr = _trainer(model, **extra)
    res = tr.step_fn(xs, labels)
    assert torch.equal(res.output, out)
    assert torch.equal(res.output, lfp_snn.run(model, xs))  # the spikes evaluation sees
    assert res.objective == pytest.approx(-1 / 3)
    for name, d in deltas.items():
        m = dict(model.named_children())[name]
        assert d.abs().max() > 0
        torch.testing.assert_close(m.weight.grad, -d, rtol=0, atol=1e-12)
        if m.bias is not None:
            assert torch.equal(m.bias.grad, torch.zeros_like(m.bias))
    lif_names = [n for n, m in model.named_children() if isinstance(m, LIF)]
    assert list(res.spike_counts) == lif_names
    for s, lif in zip(spk.values(), lif_names):
        assert torch.equal(res.spike_counts[lif], s.sum((0, 1)))


def test_update_reduces_to_linear_for_a_1x1_convolution():
    """The conv eligibility is the Linear one at every position, summed over positions."""
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 2, 1, bias=False).to(DT)
    lin = nn.Linear(3, 2, bias=False).to(DT)
    with torch.no_grad():
        conv.weight.copy_(torch.rand_like(conv.weight) + 0.3)
        lin.weight.copy_(conv.weight.view(2, 3))
    xs = (torch.rand(5, 2, 3, 1, 1, dtype=DT) < 0.6).to(DT)
    head = nn.Linear(2, 2).to(DT)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.2], [0.3, 0.9]]))
    learner_c = RSTDP(SpikingSequential(conv, LIF(0.9, 0.5), nn.Flatten(), head, LIF(0.9, 0.5)))
    learner_l = RSTDP(SpikingSequential(nn.Flatten(), lin, LIF(0.9, 0.5), copy.deepcopy(head), LIF(0.9, 0.5)))
    tc, tl = learner_c.forward(xs), learner_l.forward(xs)
    y = torch.tensor([0, 1])
    assert torch.equal(tc.output, tl.output) and tc.output.sum() > 0
    dc, rc = learner_c.updates(tc, y)
    dl, rl = learner_l.updates(tl, y)
    assert torch.equal(rc, rl) and dc["0"].abs().max() > 0
    torch.testing.assert_close(dc["0"].view(2, 3), dl["1"], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# 3. Refusals
# ---------------------------------------------------------------------------------------------------------


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lif = nn.Linear(4, 4), LIF()

    def forward(self, x):
        return self.lif(self.fc(x) + x)


@pytest.mark.parametrize(
    "model, match",
    [
        (
            SpikingSequential(nn.Linear(4, 4), CubaLIF(), nn.Linear(4, 2), LIF()),
            r"layer '1' \(CubaLIF\).*LIF neurons only",
        ),
        (
            SpikingSequential(
                nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), LIF(), nn.Flatten(), nn.Linear(2, 2), LIF()
            ),
            r"layer '1' \(BatchNorm2d\) is not supported by R-STDP; it accepts Linear",
        ),
        (SpikingSequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), LIF()), r"layer '1' \(ReLU\)"),
        (_Residual(), r"_Residual is not one \(residual"),
        (
            SpikingSequential(nn.Linear(4, 2), LIF(), nn.Linear(2, 2)),
            r"layer '2' \(Linear\) must drive a LIF",
        ),
        (
            SpikingSequential(
                nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), LIF(), nn.Flatten(), nn.Linear(2, 2), LIF()
            ),
            r"layer '0' \(Conv2d\) must drive a LIF layer directly, but '1' \(MaxPool2d\)",
        ),
        (SpikingSequential(nn.Flatten(), nn.Linear(4, 2)), "this model has none"),
        (SpikingSequential(nn.Linear(4, 2), LIF(), LIF()), r"LIF layer '2' must be driven directly"),
        (SpikingSequential(nn.Linear(4, 2), LIF(), nn.Flatten(0)), r"last layer must be the read-out LIF"),
    ],
    ids=[
        "cuba",
        "batchnorm",
        "relu",
        "residual",
        "no-lif-after",
        "pool-before-lif",
        "ann",
        "lif-lif",
        "last",
    ],
)
def test_unsupported_models_are_refused(model, match):
    with pytest.raises(ValueError, match=match):
        _trainer(model)


@pytest.mark.parametrize(
    "arch, shape, match",
    [
        ("spiking-lenet", (1, 8, 8), None),
        ("deeper-snn", (1, 28, 28), None),
        ("vgg-snn", (3, 32, 32), r"\(BatchNorm2d\) is not supported by R-STDP"),
        ("resnet-snn", (3, 32, 32), r"ResNetSNN is not one \(residual"),
    ],
)
def test_reference_architectures(arch, shape, match):
    mc = ModelConfig(arch=arch, input_shape=shape)
    if match is not None:
        with pytest.raises(ValueError, match=match):
            Trainer(mc, TrainConfig(method="rstdp", progress=False))
        return
    tr = Trainer(mc, TrainConfig(method="rstdp", steps=3, progress=False))
    if arch == "spiking-lenet":  # one step of the conv net: every weight gets an update, every bias zero
        out = tr.step_fn(torch.rand(3, 4, *shape), torch.tensor([0, 1, 2, 3]))
        assert out.output.shape == (3, 4, 10)
        for n, p in tr.model.named_parameters():
            assert p.grad is not None and p.grad.shape == p.shape
            assert (p.grad == 0).all() if n.endswith("bias") else torch.isfinite(p.grad).all()


def test_ann_arch_is_refused():
    with pytest.raises(ValueError, match="method 'rstdp' trains spiking models; arch 'mlp' is an ANN"):
        Trainer(ModelConfig(arch="mlp"), TrainConfig(method="rstdp", progress=False))


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"stdp_decay": 1.0}, r"stdp_decay \(λ\) must lie in \[0, 1\), got 1.0"),
        ({"stdp_decay": -0.1}, r"stdp_decay \(λ\) must lie in \[0, 1\), got -0.1"),
        ({"stdp_decay": float("nan")}, "stdp_decay must be a finite number, got nan"),
        ({"stdp_decay": "0.5"}, "stdp_decay must be a finite number, got '0.5'"),
        ({"stdp_a_plus": -1}, "stdp_a_plus must be >= 0, got -1"),
        ({"stdp_a_minus": float("inf")}, "stdp_a_minus must be a finite number, got inf"),
        ({"stdp_a_minus": True}, "stdp_a_minus must be a finite number, got True"),
        ({"rstdp_target": "yes"}, "rstdp_target must be 'decision', 'own' or 'none'.*got 'yes'"),
        ({"rstdp_target": 1}, "rstdp_target must be 'decision', 'own' or 'none'.*got 1"),
        ({"rstdp_baseline": 1}, "rstdp_baseline must be true or false, got 1"),
        (
            {"surrogate_slope": 5},
            "extra\\['surrogate_slope'\\]=5 does not apply: it is an option of method 'bptt-snntorch'",
        ),
    ],
)
def test_bad_options_are_refused(extra, match):
    cfg = TrainConfig(method="rstdp", progress=False, extra=extra)
    with pytest.raises(ValueError, match=match):
        cfg.validate()
    with pytest.raises(ValueError, match=match):
        Trainer(ModelConfig(), cfg)


@pytest.mark.parametrize("method", ["lfp", "bptt-snntorch", "gradient"])
def test_rstdp_options_are_refused_for_other_methods(method):
    cfg = TrainConfig(method=method, progress=False, extra={"stdp_decay": 0.5})
    with pytest.raises(
        ValueError, match=f"extra\\['stdp_decay'\\]=0.5 does not apply: .*'rstdp'; method '{method}'"
    ):
        cfg.validate()


def test_options_of_other_methods_and_homeostasis():
    with pytest.raises(
        ValueError, match="feedback_precision='bfloat16' does not apply: .*'rstdp' trains by a local"
    ):
        TrainConfig(method="rstdp", feedback_precision="bfloat16").validate()
    with pytest.raises(ValueError, match="membrane_share is an option of LFP-ε; method 'rstdp'"):
        TrainConfig(method="rstdp", membrane_share=0.1).validate()
    # R-STDP runs lfp-snn's own LIF layers: threshold homeostasis moves the thresholds it uses
    TrainConfig(method="rstdp", homeostasis=0.1).validate()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--feedback-precision", "bfloat16"], "--feedback-precision does not apply: it is an option of LFP"),
        (["--membrane-share", "0.1"], "--membrane-share does not apply"),
        (
            ["--rule", "epsilon"],
            "--rule does not apply: it is the rule of LFP; --method rstdp trains by a local",
        ),
        (["--neuron", "cuba"], r"layer '2' \(CubaLIF\) is not supported by R-STDP"),
        (["--arch", "mlp"], "arch 'mlp' is an ANN"),
    ],
)
def test_cli_refuses_what_does_not_apply(argv, match, capsys, tmp_path):
    rc = cli.main(
        ["train", "--method", "rstdp", "--subset", "50", "--epochs", "1", "--out", str(tmp_path), *argv]
    )
    assert rc == 2
    assert re.search(match, capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------------------
# 4. Training
# ---------------------------------------------------------------------------------------------------------


def test_training_rises_above_chance():
    """The default 64-256-10 network on 600 digits, 3 epochs: well above chance (0.1). With the update's sign
    flipped the network goes silent and stays at 0.1."""
    train, test = load_dataset("digits")
    tr = Trainer(
        ModelConfig(input_shape=(1, 8, 8)), TrainConfig(method="rstdp", epochs=3, lr=1e-3, progress=False)
    )
    history = tr.fit(train.subset(600, seed=0), test)
    assert history[0]["train_accuracy"] < 0.2
    assert history[-1]["test_accuracy"] > 0.3


def test_cli_compare_runs_rstdp(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = [
        "compare",
        "--methods",
        "lfp-epsilon",
        "rstdp",
        "--subset",
        "100",
        "--test-subset",
        "60",
        "-T",
        "3",
    ]
    argv += ["--epochs", "1", "--prune", "0", "--out", str(out), "--lr-for", "rstdp=0.001"]
    assert cli.main(argv) == 0
    assert "result rstdp seed 0" in capsys.readouterr().out
    with open(out / "results.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["lfp-epsilon", "rstdp"]
