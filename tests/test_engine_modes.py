"""Engine options that must not change the update: micro-batches, recomputation, compact spikes, bf16 GEMMs;
and the shapes of what the engine returns."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.encoders import constant_encode, rate_encode
from lfp_snn.experiments.memory import tensor_peak_mib
from lfp_snn.ops import Dense, LinearOp, SparseRows, Spikes

pytestmark = pytest.mark.usefixtures("one_thread")


def _snn(conv: bool, rule_seed: int = 0, reset="subtract", delay=True):
    torch.manual_seed(rule_seed)
    lif = lambda: lfp_snn.LIF(0.8, 1.0, reset, delay)  # noqa: E731
    if conv:
        m = lfp_snn.SpikingSequential(
            nn.Conv2d(1, 4, 3),
            lif(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(36, 16),
            lif(),
            nn.Linear(16, 5),
            lif(),
        )
    else:
        m = lfp_snn.SpikingSequential(
            nn.Flatten(), nn.Linear(20, 24), lif(), nn.Linear(24, 16), lif(), nn.Linear(16, 5), lif()
        )
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m.double()


def _inputs(conv: bool, constant: bool, B=7, T=6):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 1, 8, 8, generator=g) if conv else torch.rand(B, 20, generator=g)
    x = x.double()
    seq = constant_encode(x, T) if constant else rate_encode(x, T, generator=g)
    return seq, torch.randint(0, 5, (B,), generator=g)


def _close(a: dict, b: dict, rtol=1e-10):
    assert a.keys() == b.keys()
    for k in a:
        scale = a[k].abs().max().clamp(min=1e-30)
        assert (a[k] - b[k]).abs().max() <= rtol * scale, k


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
def test_micro_batch_and_recompute_give_the_same_feedback(conv, constant, rule):
    m = _snn(conv)
    x, y = _inputs(conv, constant)
    ref = lfp_snn.feedback_result(m, x, y, "sequence", rule, input_reward=True)
    assert any(v.abs().max() > 0 for v in ref.feedback.values()), "the network must be active"
    for kw in ({"micro_batch": 3}, {"recompute": True}, {"micro_batch": 2, "recompute": True}):
        res = lfp_snn.feedback_result(m, x, y, "sequence", rule, input_reward=True, **kw)
        _close(ref.feedback, res.feedback)
        assert torch.equal(ref.output, res.output)
        torch.testing.assert_close(res.input_reward, ref.input_reward, rtol=1e-10, atol=1e-12)
        assert res.spike_rate.keys() == ref.spike_rate.keys()
        for k in ref.spike_rate:
            assert res.spike_rate[k] == pytest.approx(ref.spike_rate[k])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("delay", [True, False])
def test_recompute_all_reset_modes(reset, delay):
    m = _snn(False, reset=reset, delay=delay)
    x, y = _inputs(False, constant=False)
    _close(lfp_snn.feedback(m, x, y), lfp_snn.feedback_result(m, x, y, recompute=True).feedback)


def test_bf16_feedback_gemms_stay_close():
    m = _snn(False).float()
    x, y = _inputs(False, constant=False)
    x = x.float()
    ref = lfp_snn.feedback_result(m, x, y).feedback
    bf = lfp_snn.feedback_result(m, x, y, matmul_dtype=torch.bfloat16).feedback
    for k in ref:
        scale = ref[k].abs().max()
        err = (ref[k] - bf[k]).abs().max()
        assert err <= 3e-2 * scale, (k, float(err / scale))  # 8 significant bits in g and W
        assert err > 0 or scale == 0 or k.endswith("bias"), "bf16 must actually be used for the weight GEMMs"


def test_input_reward_layout():
    m = _snn(False)
    x, y = _inputs(False, constant=False)
    res = lfp_snn.feedback_result(m, x, y, input_reward=True)
    assert res.input_reward.shape == x.shape  # time-varying input: [T, B, ...]
    xc, _ = _inputs(False, constant=True)
    res = lfp_snn.feedback_result(m, xc, y, input_reward=True)
    assert res.input_reward.shape == xc.shape[1:]  # constant input: summed over time, [B, ...]


def test_default_reward_is_sequence_for_snn_and_sigmoid_for_ann():
    m = _snn(False)
    x, y = _inputs(False, constant=False)
    _close(lfp_snn.feedback(m, x, y), lfp_snn.feedback(m, x, y, reward="sequence"))
    ann = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 5)).double()
    xa = torch.rand(6, 20, dtype=torch.float64)
    ya = torch.randint(0, 5, (6,))
    _close(lfp_snn.feedback(ann, xa, ya), lfp_snn.feedback(ann, xa, ya, reward="sigmoid"))


def test_lfp0_division_by_zero_is_an_error():
    ann = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False)).double()
    with torch.no_grad():
        ann[0].weight.zero_()  # every hidden pre-activation is exactly 0
    x = torch.rand(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps=0"):
        lfp_snn.feedback(ann, x, torch.zeros(5, dtype=torch.long), rule="zero", eps=0.0)


def test_micro_batch_must_be_positive():
    m = _snn(False)
    x, y = _inputs(False, constant=False)
    with pytest.raises(ValueError, match="micro_batch must be an integer >= 1, got 0"):
        lfp_snn.feedback_result(m, x, y, micro_batch=0)


def test_lif_module_rejects_missing_time_axis():
    with pytest.raises(ValueError, match=r"expected currents of shape \[T, B, ...\].*\[4, 3\]"):
        lfp_snn.LIF()(torch.zeros(4, 3))


def test_spikes_are_kept_as_uint8_between_forward_and_feedback():
    m = _snn(False)
    x, _ = _inputs(False, constant=False)
    trace = lfp_snn.forward_trace(m, x)
    kept = [trace.record(name).x for name in ("3", "5")]  # the Linear layers that read LIF spikes
    assert all(isinstance(v, Spikes) and v.t.dtype == torch.uint8 for v in kept)


def test_cli_passes_engine_options_to_the_trainer():
    from lfp_snn.cli import build_parser, configs_from_args
    from lfp_snn.data import load_digits

    train, _ = load_digits()
    a = build_parser().parse_args(
        [
            "train",
            "--feedback-precision",
            "bfloat16",
            "--micro-batch",
            "8",
            "--recompute",
            "--input-noise",
            "0.1",
        ]
    )
    _, cfg = configs_from_args(a, train)
    assert (cfg.feedback_precision, cfg.micro_batch, cfg.recompute, cfg.input_noise) == (
        "bfloat16",
        8,
        True,
        0.1,
    )


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
@pytest.mark.parametrize("chunk", [1, 4, 5])
def test_time_chunks_give_the_same_feedback(conv, constant, rule, chunk):
    m = _snn(conv)
    x, y = _inputs(conv, constant)  # T = 6: chunks of 4 leave a stretch of 2, chunks of 5 one of 1
    ref = lfp_snn.feedback_result(m, x, y, "sequence", rule, input_reward=True)
    res = lfp_snn.feedback_result(m, x, y, "sequence", rule, input_reward=True, time_chunk=chunk)
    _close(ref.feedback, res.feedback)
    assert torch.equal(ref.output, res.output)
    assert torch.equal(ref.reward, res.reward)
    torch.testing.assert_close(res.input_reward, ref.input_reward, rtol=1e-10, atol=1e-12)
    for k in ref.spike_rate:
        assert torch.equal(res.spike_counts[k], ref.spike_counts[k])
        assert res.spike_rate[k] == pytest.approx(ref.spike_rate[k])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("constant", [False, True])
def test_time_chunks_all_reset_modes_with_recompute_and_micro_batches(reset, delay, constant):
    m = _snn(False, reset=reset, delay=delay)
    x, y = _inputs(False, constant=constant)
    ref = lfp_snn.feedback(m, x, y)
    _close(ref, lfp_snn.feedback_result(m, x, y, time_chunk=2).feedback)
    _close(ref, lfp_snn.feedback_result(m, x, y, time_chunk=4, recompute=True, micro_batch=3).feedback)


def test_time_chunks_carry_the_membrane_share_across_boundaries(monkeypatch):
    # a long sequence with β near 1: much of the reward reaches early steps through the membrane's share C,
    # so dropping C at a boundary changes the first layer's feedback by far more than the tolerance
    torch.manual_seed(3)
    m = lfp_snn.SpikingSequential(
        nn.Linear(10, 12), lfp_snn.LIF(0.99, 1.0), nn.Linear(12, 3), lfp_snn.LIF(0.99, 1.0)
    ).double()
    x = torch.rand(40, 5, 10, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    ref = lfp_snn.feedback(m, x, y)
    _close(ref, lfp_snn.feedback_result(m, x, y, time_chunk=3).feedback)
    schedules = importlib.import_module("lfp_snn.engine.schedules")
    real = schedules.propagate
    monkeypatch.setattr(schedules, "propagate", lambda *a, carry=None, **k: real(*a, carry={}, **k))
    broken = lfp_snn.feedback_result(m, x, y, time_chunk=3).feedback
    assert (broken["0.weight"] - ref["0.weight"]).abs().max() > 1e-3 * ref["0.weight"].abs().max()


def test_time_chunk_with_membrane_share():
    from lfp_snn.rules import MembraneShare

    m = _snn(False)
    x, y = _inputs(False, constant=True)
    share = MembraneShare(input=0.5, weight=0.3)
    ref = lfp_snn.feedback_result(m, x, y, membrane_share=share).feedback
    _close(ref, lfp_snn.feedback_result(m, x, y, membrane_share=share, time_chunk=4).feedback)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"time_chunk": 0}, "time_chunk must be an integer >= 1"),
        ({"time_chunk": 2.5}, "time_chunk must be an integer >= 1"),
        ({"time_chunk": 2, "input_noise": 0.1}, "cannot be combined with input_noise=0.1"),
        ({"micro_batch": 0}, "micro_batch must be an integer >= 1, got 0"),
    ],
)
def test_time_chunk_bad_settings(kw, match):
    m = _snn(False)
    x, y = _inputs(False, constant=False)
    with pytest.raises(ValueError, match=match):
        lfp_snn.feedback_result(m, x, y, **kw)


def test_time_chunk_rejects_ann_and_active_dropout():
    ann = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="time_chunk is for spiking models"):
        lfp_snn.feedback_result(ann, torch.rand(2, 4), torch.tensor([0, 1]), time_chunk=2)
    snn = lfp_snn.SpikingSequential(nn.Linear(4, 3), nn.Dropout(0.2), lfp_snn.LIF())
    x, y = torch.rand(5, 2, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"active dropout \(layer '1' \(Dropout\), p=0.2\)"):
        lfp_snn.feedback_result(snn, x, y, time_chunk=2)
    snn.eval()
    _close(lfp_snn.feedback(snn, x, y), lfp_snn.feedback_result(snn, x, y, time_chunk=2).feedback, rtol=1e-5)


@pytest.mark.slow  # the memory profiler takes ~10 s
def test_time_chunks_and_compact_spikes_bound_the_memory():
    # 96 steps of a 256-wide network: unchunked, the feedback holds several [T·B, 256] float buffers; in
    # stretches of 8 steps only a few [8·B, 256] ones and the membranes at 12 boundaries
    torch.manual_seed(0)
    m = lfp_snn.SpikingSequential(
        nn.Linear(64, 256),
        lfp_snn.LIF(0.9),
        nn.Linear(256, 256),
        lfp_snn.LIF(0.9),
        nn.Linear(256, 10),
        lfp_snn.LIF(0.9),
    )
    x = (torch.rand(96, 16, 64) < 0.2).to(torch.uint8)  # spikes as uint8: never copied to float as a whole
    y = torch.randint(0, 10, (16,))
    buffer = 96 * 16 * 256 * 4 / 2**20  # one [T·B, 256] float buffer, MiB
    full = tensor_peak_mib(lambda: lfp_snn.feedback_result(m, x, y))
    chunked = tensor_peak_mib(lambda: lfp_snn.feedback_result(m, x, y, time_chunk=8))
    assert full > 2 * buffer  # the unchunked pass does hold [T·B, N] buffers
    assert chunked < 0.35 * full, (chunked, full)


def _sparse_input(T=9, B=5, n=40, density=0.06, seed=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < density).to(torch.uint8), torch.randint(
        0, 5, (B,), generator=g
    )


@pytest.mark.parametrize("counts", [False, True])
def test_sparse_rows_ops_match_the_dense_sums(counts):
    torch.manual_seed(0)
    lin = nn.Linear(40, 7).double()
    x, _ = _sparse_input()
    x2 = x.reshape(-1, 40)
    if counts:  # event counts, not only 0/1: the entries' values weight the sums
        x2 = x2 * torch.randint(1, 4, x2.shape, dtype=torch.uint8)
    x2[3] = 0  # a silent row
    x2[:, 5] = 0  # an input that never spikes
    assert SparseRows.suits(x2)
    sp, dense, op = SparseRows(x2), Dense(x2.double()), LinearOp(lin)
    assert (sp.weights is None) == (not counts)
    w, b = lin.weight, lin.bias
    torch.testing.assert_close(op.forward(sp, w, b), op.forward(dense, w, b), rtol=1e-12, atol=1e-12)
    g = torch.randn(x2.shape[0], 7, dtype=torch.float64)
    fw = op.weight_vjp(g, sp)
    torch.testing.assert_close(fw, op.weight_vjp(g, dense), rtol=1e-12, atol=1e-12)
    assert torch.equal(fw[:, 5], torch.zeros(7, dtype=torch.float64))
    r = torch.randn(x2.shape, dtype=torch.float64)
    assert torch.equal(sp.multiply_(r.clone()), r * x2.double())
    assert sp.negative().is_zero and sp.positive() is sp  # x⁻ of a non-negative input: zero, as αβ needs


def test_sparse_rows_are_used_only_where_they_fit():
    x, _ = _sparse_input()
    x2 = x.reshape(-1, 40)
    assert SparseRows.suits(x2)
    assert SparseRows.suits(x2 * 2)  # counts are fine: their values weight the sums
    assert not SparseRows.suits(x2.double())  # floats: dense
    assert not SparseRows.suits((torch.rand(45, 40) < 0.5).to(torch.uint8))  # too dense
    with pytest.raises(TypeError, match="uint8"):
        SparseRows(x2.float())


@pytest.mark.parametrize(
    "kw", [{}, {"recompute": True}, {"time_chunk": 4}, {"micro_batch": 2, "recompute": True}]
)
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus", "alpha2-beta1", "epsilon-alpha2-beta1"])
@pytest.mark.parametrize("counts", [False, True])
def test_sparse_uint8_input_gives_the_feedback_of_the_float_input(kw, rule, counts):
    torch.manual_seed(1)
    m = lfp_snn.SpikingSequential(
        nn.Linear(40, 24), lfp_snn.LIF(0.9, 0.5), nn.Linear(24, 5), lfp_snn.LIF(0.9, 0.5)
    ).double()
    with torch.no_grad():
        m[0].weight.mul_(4)
    x, y = _sparse_input()
    if counts:
        x = x * torch.randint(1, 4, x.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    ref = lfp_snn.feedback_result(m, x.double(), y, "sequence", rule, input_reward=True)
    res = lfp_snn.feedback_result(m, x, y, "sequence", rule, input_reward=True, **kw)
    assert ref.spike_rate["1"] > 0.02, "the first layer must fire"
    assert torch.equal(res.output, ref.output)
    _close(ref.feedback, res.feedback)
    torch.testing.assert_close(res.input_reward, ref.input_reward, rtol=1e-10, atol=1e-12)
    trace = lfp_snn.forward_trace(m, x)
    assert isinstance(trace.record("0").x, SparseRows)
    off = lfp_snn.forward_trace(m, x, plan=lfp_snn.FeedbackPlan(sparse_input="off"))
    assert isinstance(off.record("0").x, Spikes)


@pytest.mark.parametrize("k", [2, 3])
def test_spikes_through_maxpool_route_the_reward_as_torchs_argmax(k):
    """The uint8 spike path of MaxPool2d (OR over a window, reward to its first spike) is torch's max pooling
    with its arg-max on 0/1 values, ties and empty windows included."""
    from lfp_snn.engine.handlers.pooling import MaxPoolHandler

    g = torch.Generator().manual_seed(k)
    x = (torch.rand(5, 3, 6 * k, 4 * k, generator=g) < 0.3).to(torch.uint8)
    x[0, 0] = 0  # windows without spikes
    x[1, 1] = 1  # windows full of ties
    y, idx = torch.nn.functional.max_pool2d(x.double(), k, return_indices=True)
    r = torch.randn(y.shape, dtype=torch.float64, generator=g)
    want = torch.zeros(5, 3, x.shape[2] * x.shape[3], dtype=torch.float64)
    want.scatter_add_(2, idx.flatten(2), r.flatten(2))
    got = MaxPoolHandler._route_to_first_spike(r, x, k)
    assert torch.equal(got, want.reshape(x.shape))
    assert torch.equal(torch.amax(x.view(5, 3, 6, k, 4, k), dim=(3, 5)).double(), y)


def test_spikes_reach_maxpool_as_uint8():
    m = _snn(True)
    x, y = _inputs(True, constant=False)
    trace = lfp_snn.forward_trace(m, x)
    rec = trace.record("2")  # the MaxPool2d after the first LIF
    assert rec.spikes is not None and rec.spikes.dtype == torch.uint8 and rec.indices is None


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_spike_pooling_is_the_torch_path(k, dtype):
    from lfp_snn.engine.handlers.pooling import MaxPoolHandler
    from lfp_snn.kernels import native_scan

    g = torch.Generator().manual_seed(k)
    x = (torch.rand(4, 3, 5 * k, 2 * k, generator=g) < 0.3).to(torch.uint8)
    x[0, 0] = 0
    x[1, 1] = 1
    y = native_scan.spike_pool_forward(x, k)
    assert torch.equal(y, torch.amax(x.view(4, 3, 5, k, 2, k), dim=(3, 5)))
    r = torch.randn(y.shape, dtype=dtype, generator=g)
    assert torch.equal(native_scan.spike_pool_backward(r, x, k), MaxPoolHandler._route_to_first_spike(r, x, k))


def test_event_counts_through_maxpool_take_the_max_not_the_or():
    """uint8 counts (not 0/1) are pooled by value (the spike path is for 0/1 only)."""
    m = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 3)).double()
    x = torch.tensor([[[[1, 3, 0, 0], [2, 0, 0, 1], [0, 0, 2, 2], [0, 0, 2, 1]]]], dtype=torch.uint8)
    out = lfp_snn.run(m, x)
    torch.testing.assert_close(out, m[2](torch.tensor([[3.0, 1.0, 0.0, 2.0]], dtype=torch.float64)))
