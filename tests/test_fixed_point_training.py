"""Integer-in-the-loop LFP: the engine's fixed-point forward is the FPGA bundle's integer network (the same
spikes as the bundle's simulator, and as a literal loop over the fixed-point equations), its reverse pass is
LFP-ε on that network's own membranes and quantised weights, and a run trained this way exports to a bundle
whose simulator reproduces the accuracy training reported, exactly."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import LIF, FeedbackPlan, SpikingSequential
from lfp_snn.cli import main
from lfp_snn.engine import forward_trace
from lfp_snn.export import export_fpga, load_bundle, quantize, simulate, simulate_bundle
from lfp_snn.models import ModelConfig, build_model
from lfp_snn.quantization import FixedPoint
from lfp_snn.training import TrainConfig, Trainer

RESETS = [("subtract", True), ("zero", False), ("zero", True), ("subtract", False)]


def spikes(shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def mlp(reset="subtract", delay=True, scale=3.0, seed=1):
    cfg = ModelConfig(
        arch="spiking-mlp", input_shape=(20,), hidden=(12,), classes=5, reset=reset, reset_delay=delay
    )
    m = build_model(cfg, seed=seed)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def conv(reset="subtract", delay=True, pool="avg", seed=0):
    torch.manual_seed(seed)
    pooling = nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)
    m = SpikingSequential(
        nn.Conv2d(1, 3, 3, padding=1), LIF(0.9, 1.0, reset, delay), pooling,
        nn.Conv2d(3, 4, 3, stride=2, padding=1), LIF(0.8, 0.75, reset, delay),
        nn.Flatten(), nn.Linear(16, 5), LIF(0.9, 1.0, reset, delay),
    )  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
    return m


def engine_spikes(model, x, fmt, keep=False):
    """Spikes of every LIF layer of the engine's fixed-point forward, uint8 [T, B, n]."""
    T = x.shape[0]
    out = []

    def grab(node, inputs, output):
        if isinstance(node.module, LIF):
            out.append(output.value.reshape(T, -1, output.value[0].numel()).to(torch.uint8).numpy())

    tr = forward_trace(model, x, plan=FeedbackPlan(fixed_point=fmt), keep=keep, observe=grab)
    return out, tr


def bundle_spikes(model, x, fmt, input_shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = quantize(model, fmt.weight_bits, fmt.mem_bits, fmt.decay, fmt.beta_bits, fmt.scale, input_shape)
    return simulate(net, x)


FORMATS = [
    FixedPoint(),
    FixedPoint(4, 12, 6, "shift"),
    FixedPoint(6, 9, 8, "multiply", "real"),  # 9-bit membranes: currents and membranes saturate
    FixedPoint(3, 10, 4),
]


@pytest.mark.parametrize(
    "fmt", FORMATS, ids=lambda f: f"w{f.weight_bits}m{f.mem_bits}{f.decay[0]}{f.scale[0]}"
)
@pytest.mark.parametrize("reset,delay", RESETS)
def test_the_integer_forward_is_the_bundle_simulator(fmt, reset, delay):
    """Dense and convolutional models (sum and max pooling), every reset mode, saturating formats: the
    engine's integer forward gives the bundle simulator's spikes bit for bit."""
    for model, x, shape in (
        (mlp(reset, delay), spikes((12, 9, 20), seed=1), (20,)),
        (conv(reset, delay, "avg"), spikes((10, 5, 1, 8, 8), p=0.4, seed=2), (1, 8, 8)),
        (conv(reset, delay, "max"), spikes((10, 5, 1, 8, 8), p=0.4, seed=3), (1, 8, 8)),
    ):
        got, _ = engine_spikes(model, x, fmt)
        want = bundle_spikes(model, x, fmt, shape)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert np.array_equal(a, b)
        assert want[0].mean() > 0.02


# ----------------------------------------------------------------------------------------- literal loop


def _round(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _literal_layer(w, b, theta, beta, fmt, divisor=1):
    """The integers of one layer straight from the rules, in Python floats and ints."""
    w = [float(v) / divisor for v in w.detach().double().reshape(-1).tolist()]
    qmax = 2 ** (fmt.weight_bits - 1) - 1
    s = 2.0 ** math.ceil(math.log2(max(abs(v) for v in w) / qmax))
    lo, hi = -(2 ** (fmt.mem_bits - 1)), 2 ** (fmt.mem_bits - 1) - 1
    wq = [max(-qmax - 1, min(qmax, _round(v / s))) for v in w]
    bq = [max(lo, min(hi, _round(float(v) / s))) for v in b.tolist()]
    bq_ = _round(beta * 2**fmt.beta_bits)
    return wq, bq, _round(theta / s), bq_, s, (lo, hi)


def _literal_forward(model, x, fmt):
    """A loop over t and layers, neuron by neuron and synapse by synapse, from the fixed-point equations
    (docs/export.md): returns per LIF layer the spikes [T][B][n] and the firing potentials."""
    conv1, lif1, pool, conv2, lif2, _, lin, lif3 = model
    T, B = x.shape[:2]
    layers = []
    pool_div = 4 if isinstance(pool, nn.AvgPool2d) else 1  # the sum pool's 1/4 goes into conv2's weights
    for m, lif, div in ((conv1, lif1, 1), (conv2, lif2, pool_div), (lin, lif3, 1)):
        layers.append(
            (m, lif, _literal_layer(m.weight, m.bias, float(lif.threshold), float(lif.beta), fmt, div))
        )
    out_s = [[[None] * B for _ in range(T)] for _ in layers]
    out_v = [[[None] * B for _ in range(T)] for _ in layers]
    for bi in range(B):
        mem = [None] * len(layers)
        for t in range(T):
            act = {(0, yy, xx): int(x[t, bi, 0, yy, xx]) for yy in range(8) for xx in range(8)}
            shape = (1, 8, 8)
            for li, (m, lif, (wq, bq, th, betaq, _, (lo, hi))) in enumerate(layers):
                if li == 1:  # the pool between the first and second layer
                    C, H, W = shape
                    pooled = {}
                    for c in range(C):
                        for yy in range(H // 2):
                            for xx in range(W // 2):
                                vals = [
                                    act[(c, 2 * yy + a, 2 * xx + b_)] for a in range(2) for b_ in range(2)
                                ]
                                pooled[(c, yy, xx)] = (
                                    sum(vals) if isinstance(pool, nn.AvgPool2d) else max(vals)
                                )
                    act, shape = pooled, (C, H // 2, W // 2)
                if isinstance(m, nn.Conv2d):
                    C, H, W = shape
                    k, st, pd = m.kernel_size[0], m.stride[0], m.padding[0]
                    OH, OW = (H + 2 * pd - k) // st + 1, (W + 2 * pd - k) // st + 1
                    neurons = []
                    for co in range(m.out_channels):
                        for oy in range(OH):
                            for ox in range(OW):
                                acc = bq[co]
                                for ci in range(C):
                                    for ky in range(k):
                                        for kx in range(k):
                                            iy, ix = oy * st + ky - pd, ox * st + kx - pd
                                            if 0 <= iy < H and 0 <= ix < W:
                                                acc += (
                                                    wq[((co * C + ci) * k + ky) * k + kx] * act[(ci, iy, ix)]
                                                )
                                neurons.append(acc)
                    out_shape = (m.out_channels, OH, OW)
                else:  # Linear on the C-order flattened activation
                    flat = [act[key] for key in sorted(act)]
                    n_in = m.in_features
                    neurons = [
                        bq[o] + sum(wq[o * n_in + i] * flat[i] for i in range(n_in))
                        for o in range(m.out_features)
                    ]
                    out_shape = (m.out_features,)
                if mem[li] is None:
                    mem[li] = [0] * len(neurons)
                spk, pot = [], []
                for o, acc in enumerate(neurons):
                    u = mem[li][o]
                    cur = max(lo, min(hi, acc))
                    dec = (u * betaq) // 2**fmt.beta_bits  # floor
                    if lif.reset_delay:
                        r = u > th
                        if lif.reset == "subtract":
                            u = max(lo, min(hi, dec + cur - (th if r else 0)))
                        else:
                            u = max(lo, min(hi, (0 if r else dec) + cur))
                        sp, v = u > th, u
                    else:
                        u = max(lo, min(hi, dec + cur))
                        sp, v = u > th, u
                        if sp:
                            u = u - th if lif.reset == "subtract" else 0
                    mem[li][o] = u
                    spk.append(int(sp))
                    pot.append(v)
                out_s[li][t][bi], out_v[li][t][bi] = spk, pot
                if len(out_shape) == 3:
                    C, H, W = out_shape
                    act = {
                        (c, yy, xx): spk[(c * H + yy) * W + xx]
                        for c in range(C)
                        for yy in range(H)
                        for xx in range(W)
                    }
                else:
                    act = {(o, 0, 0): spk[o] for o in range(len(spk))}
                shape = out_shape
    return out_s, out_v, [L[2][4] for L in layers]


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("reset,delay", [("subtract", True), ("zero", False)])
def test_a_literal_loop_over_the_fixed_point_equations_gives_the_in_the_loop_forward(pool, reset, delay):
    """Spikes and firing potentials (exact integers) of every layer, from Python ints neuron by neuron."""
    model = conv(reset, delay, pool)
    x = spikes((6, 3, 1, 8, 8), p=0.4, seed=4)
    fmt = FixedPoint(6, 14, 8)
    want_s, want_v, scales = _literal_forward(model, x, fmt)
    got, trace = engine_spikes(model, x, fmt, keep=True)
    lif_nodes = [n for n in trace.plan.graph.nodes if isinstance(n.module, LIF)]
    for li, node in enumerate(lif_nodes):
        assert got[li].tolist() == want_s[li]
        pot = trace.records[node.index].potential.double() / scales[li]
        assert torch.equal(pot, pot.round())
        assert pot.reshape(6, 3, -1).long().tolist() == want_v[li]
    assert sum(np.asarray(s).sum() for s in want_s) > 20


# ------------------------------------------------------------------------------------------- the reverse


def test_the_reverse_pass_is_lfp_epsilon_on_the_integer_network():
    """With β = 1 (the decay's floor changes nothing) the integer network is the float network of weights
    W_q s, biases b_q s and thresholds θ_q s: the fixed-point feedback must be that float network's LFP-ε
    feedback -- which shows it takes the quantised weights and the integer membranes (in real units)."""
    model = mlp().double()
    for m in model:
        if isinstance(m, LIF):
            m.beta.fill_(1.0)
    x = spikes((15, 16, 20), seed=5).double()
    y = torch.arange(16) % 5
    fmt = FixedPoint(4, 12)
    fixed = lfp_snn.feedback_result(model, x, y, plan=FeedbackPlan(fixed_point=fmt))
    net = quantize(model, 4, 12)
    twin = mlp().double()
    with torch.no_grad():
        for (lin, lif), L in zip(((twin[1], twin[2]), (twin[3], twin[4])), net.layers):
            lin.weight.copy_(torch.from_numpy(L.weight * L.scale))
            lin.bias.copy_(torch.from_numpy(L.bias * L.scale))
            lif.beta.fill_(1.0)
            lif.threshold.fill_(float(L.threshold[0] * L.scale))
    ref = lfp_snn.feedback_result(twin, x, y, plan=FeedbackPlan())
    assert torch.equal(fixed.output, ref.output) and fixed.output.sum() > 0
    for k in ref.feedback:
        torch.testing.assert_close(fixed.feedback[k], ref.feedback[k], rtol=1e-9, atol=1e-12)
    # a weight that quantises to 0 has no share in the integer network, so LFP gives it no feedback
    zero = torch.from_numpy(net.layers[0].weight == 0)
    assert zero.any() and (fixed.feedback["1.weight"][zero] == 0).all()
    float_fb = lfp_snn.feedback_result(model, x, y, plan=FeedbackPlan()).feedback["1.weight"]
    assert not torch.allclose(float_fb, fixed.feedback["1.weight"])


def test_plan_refusals_name_the_options():
    fmt = FixedPoint(4)
    x = spikes((5, 4, 20))
    y = torch.arange(4)
    with pytest.raises(ValueError, match="fixed_point cannot be combined with time_chunk"):
        lfp_snn.feedback_result(mlp(), x, y, plan=FeedbackPlan(fixed_point=fmt, time_chunk=2))
    with pytest.raises(ValueError, match="uses rule 'zplus-zminus': use rule 'epsilon' with fixed_point"):
        lfp_snn.feedback_result(mlp(), x, y, plan=FeedbackPlan("zplus-zminus", fixed_point=fmt))
    with pytest.raises(ValueError, match="must be binary spikes \\(0/1\\)"):
        lfp_snn.feedback_result(mlp(), x * 0.5, y, plan=FeedbackPlan(fixed_point=fmt))
    with pytest.raises(ValueError, match="fixed_point is for spiking models"):
        ann = nn.Sequential(nn.Linear(20, 5))
        lfp_snn.feedback_result(ann, x[0], y, plan=FeedbackPlan(fixed_point=fmt))
    cuba = build_model(ModelConfig(arch="spiking-small", input_shape=(20,), neuron="cuba", classes=5))
    with pytest.raises(ValueError, match=r"layer '2' \(CubaLIF\) is not supported by the integer network"):
        lfp_snn.feedback_result(cuba, x, y, plan=FeedbackPlan(fixed_point=fmt))
    with pytest.raises(ValueError, match="mem_bits=30: the reverse pass holds the integer membranes"):
        lfp_snn.feedback_result(mlp(), x, y, plan=FeedbackPlan(fixed_point=FixedPoint(8, 30)))


# ----------------------------------------------------------------------------- train -> export -> simulate


def _fit_recording_evaluation(trainer, train, test):
    """Fit, remembering the random state each evaluation started from, so that its rate-coded spikes can be
    drawn again."""
    states = []
    real = trainer.evaluate

    def evaluate(data, batch_size=None):
        states.append(trainer.generator.get_state())
        return real(data, batch_size)

    trainer.evaluate = evaluate
    history = trainer.fit(train, test)
    return history, states


@pytest.mark.parametrize("arch,bits", [("spiking-small", 4), ("spiking-lenet", 8)])
def test_the_accuracy_train_reports_is_the_exported_bundles(tmp_path, arch, bits):
    """Train in the loop, export the checkpoint folder (the formats come from its config), run the test set's
    spikes through the bundle's integer simulator: the same accuracy as training reported, exactly, and the
    same predictions sample by sample."""
    from lfp_snn.data import load_digits

    train, test = load_digits()
    train, test = train.subset(300, seed=0), test.subset(200, seed=0)
    mc = ModelConfig(arch=arch, input_shape=(1, 8, 8))
    tc = TrainConfig(
        epochs=2, encoder="rate", weight_bits=bits, mem_bits=14, progress=False, eval_batch_size=64
    )
    trainer = Trainer(mc, tc, out_dir=tmp_path / "ck")
    history, states = _fit_recording_evaluation(trainer, train, test)
    reported = json.loads((tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()[-1])["test_accuracy"]
    assert reported == history[-1]["test_accuracy"] > 0.3
    trainer.generator.set_state(states[-1])  # the draws of the last evaluation, batch by batch
    x = torch.cat([trainer.encode(xb) for xb, _ in test.batches(64, shuffle=False)], dim=1)
    bundle = export_fpga(tmp_path / "ck", tmp_path / "b", inputs=x[:3, :2])
    man = load_bundle(bundle)[1]
    assert man["number_formats"]["weight"]["bits"] == bits and man["number_formats"]["membrane"]["bits"] == 14
    assert man["trained_in_the_loop"]["weight_bits"] == bits
    counts = simulate_bundle(bundle, x)["counts"]
    acc = float((counts.argmax(-1) == test.y.numpy()).mean())
    assert acc == reported
    # and spike for spike: the engine's integer forward on the trained weights is the bundle
    model = trainer.model.eval()
    got, _ = engine_spikes(model, x, tc.fixed_point())
    assert all(np.array_equal(a, b) for a, b in zip(got, simulate_bundle(bundle, x)["spikes"]))


def test_the_command_line_trains_in_the_loop_and_export_checks_the_formats(tmp_path, capsys):
    ck = tmp_path / "ck"
    argv = ["train", "--weight-bits", "4", "--mem-bits", "12", "--decay", "shift", "--encoder", "rate",
            "--epochs", "1", "--subset", "200", "--test-subset", "100", "--out", str(ck), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads((ck / "config.json").read_text())["train"]
    assert (cfg["weight_bits"], cfg["mem_bits"], cfg["beta_bits"], cfg["decay"], cfg["scale"]) == (
        4,
        12,
        8,
        "shift",
        "pow2",
    )
    capsys.readouterr()
    assert (
        main(["export", "fpga", str(ck), "--out", str(tmp_path / "b"), "--samples", "1", "--steps", "3"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["verified"]
    man = load_bundle(tmp_path / "b")[1]
    assert man["number_formats"]["weight"]["bits"] == 4 and man["decay"]["mode"] == "shift"
    assert main(["export", "fpga", str(ck), "--out", str(tmp_path / "b8"), "--weight-bits", "8"]) == 2
    err = capsys.readouterr().err
    assert "was trained in the loop with weight_bits=4, mem_bits=12" in err
    assert "the export asks for weight_bits=8 (trained: weight_bits=4)" in err
    assert not (tmp_path / "b8").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--weight-bits", "4", "--arch", "mlp"], "--weight-bits does not apply: it applies to spiking models"),
        (["--weight-bits", "4", "--encoder", "rate", "--method", "bptt-snntorch"],
         "--weight-bits does not apply: it is an option of LFP; method 'bptt-snntorch'"),
        (["--mem-bits", "12"], "--mem-bits does not apply: it is a number format of integer-in-the-loop"),
        (["--decay", "shift", "--encoder", "rate"], "--decay does not apply"),
        (["--scale", "real"], "--scale does not apply"),
        (["--weight-bits", "4"], "encoder 'constant' gives analogue values: use encoder 'rate' or 'latency'"),
        (["--weight-bits", "4", "--encoder", "rate", "--rule", "zplus-zminus"], "cannot be combined with rule"),
        (["--weight-bits", "4", "--encoder", "rate", "--recompute"], "cannot be combined with recompute=True"),
        (["--weight-bits", "12", "--mem-bits", "8", "--encoder", "rate"], "weight_bits=12 > mem_bits=8"),
    ],
)  # fmt: skip
def test_options_that_do_not_apply_are_errors_naming_them(tmp_path, capsys, extra, message):
    assert main(["train", *extra, "--epochs", "1", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
