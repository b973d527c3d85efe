"""Engine options that must not change the update: micro-batches, recomputation, compact spikes, bf16 GEMMs;
and the shapes of what the engine returns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.encoders import constant_encode, rate_encode


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
    with pytest.raises(ValueError, match="micro_batch must be >= 1, got 0"):
        lfp_snn.feedback_result(m, x, y, micro_batch=0)


def test_lif_module_rejects_missing_time_axis():
    with pytest.raises(ValueError, match=r"expected currents of shape \[T, B, ...\].*\[4, 3\]"):
        lfp_snn.LIF()(torch.zeros(4, 3))


def test_spikes_are_kept_as_uint8_between_forward_and_feedback():
    m = _snn(False)
    x, _ = _inputs(False, constant=False)
    trace = lfp_snn.forward_trace(m, x)
    kept = [f.saved["x"] for f in trace.frames if "x" in f.saved and f.name != "1"]
    assert kept and all(t.dtype == torch.uint8 for t in kept)


def test_cli_passes_engine_options_to_the_trainer():
    from lfp_snn.cli import build_parser, configs_from_args
    from lfp_snn.data import load_digits

    train, _ = load_digits()
    a = build_parser().parse_args(
        ["train", "--feedback-precision", "bfloat16", "--micro-batch", "8", "--recompute", "--input-noise", "0.1"]
    )
    _, cfg = configs_from_args(a, train)
    assert (cfg.feedback_precision, cfg.micro_batch, cfg.recompute, cfg.input_noise) == ("bfloat16", 8, True, 0.1)
