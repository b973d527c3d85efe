"""Rewards by formula (Eq. 7, softmax, ±1, Eq. A.16 as the reference implements it), spike-count predictions,
the static encoders, and the errors users see for bad labels, inputs, rewards and layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.encoders import (
    ConstantEncoder,
    LatencyEncoder,
    RateEncoder,
    constant_encode,
    get_encoder,
    latency_encode,
    rate_encode,
)
from lfp_snn.rewards import (
    REWARDS,
    SequenceReward,
    correct_class_reward,
    get_reward,
    sequence_reward,
    sigmoid_reward,
    softmax_reward,
    spike_count_predictions,
)

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def sequence_reward_literal(o: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. A.16 as the reference implements it, by loops: true class r_t = 1 - σ(Σ_t o_t - T//2) at every
    t; other classes r_t = -o_t (1 - σ(Σ_t |o_t - 1| - T//2)). Not divided by T."""
    T, B, C = o.shape
    r = torch.empty_like(o)
    for b in range(B):
        for c in range(C):
            n = sum(float(o[t, b, c]) for t in range(T))
            misses = sum(abs(float(o[t, b, c]) - 1.0) for t in range(T))
            for t in range(T):
                if c == int(labels[b]):
                    r[t, b, c] = 1.0 - _sig(n - (T // 2))
                else:
                    r[t, b, c] = -float(o[t, b, c]) * (1.0 - _sig(misses - (T // 2)))
    return r


def _spikes(T, B, C, p=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((T, B, C), p, dtype=DT), generator=g)


@pytest.mark.parametrize("T", [1, 4, 5, 8])
def test_sequence_reward_matches_literal(T):
    o = _spikes(T, 4, 3, seed=T)
    labels = torch.tensor([0, 1, 2, 1])
    want = sequence_reward_literal(o, labels)
    torch.testing.assert_close(sequence_reward(o, labels), want, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(get_reward("sequence")(o, labels), want, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(REWARDS["sequence-scaled"](o, labels), want / T, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(
        SequenceReward(scale_by_steps=True)(o, labels), want / T, rtol=1e-14, atol=1e-15
    )


def test_sequence_reward_uses_integer_half_and_no_division():
    """T = 5, a true-class neuron that spiked 3 times: r = 1 - σ(3 - 2) (T//2 = 2, not 2.5), at every step;
    a wrong-class neuron that spiked at t = 1, 2 only: r_t = -o_t (1 - σ(3 - 2)) (3 misses)."""
    o = torch.zeros(5, 1, 2, dtype=DT)
    o[[0, 2, 4], 0, 0] = 1
    o[[0, 1], 0, 1] = 1
    r = sequence_reward(o, torch.tensor([0]))
    assert torch.allclose(r[:, 0, 0], torch.full((5,), 1 - _sig(1.0), dtype=DT))
    want_other = torch.tensor([-(1 - _sig(1.0)), -(1 - _sig(1.0)), 0, 0, 0], dtype=DT)
    assert torch.allclose(r[:, 0, 1], want_other)


def test_rewards_by_formula():
    g = torch.Generator().manual_seed(3)
    o = torch.randn(4, 5, generator=g, dtype=DT)
    o[1, 2] = 0.0
    y = torch.tensor([0, 2, 4, 1])
    sig, soft, corr = (torch.empty_like(o) for _ in range(3))
    for b in range(4):
        exps = [math.exp(float(v)) for v in o[b]]
        for c in range(5):
            v, t = float(o[b, c]), 1.0 if c == int(y[b]) else 0.0
            sig[b, c] = v * (t - _sig(v))  # Eq. 7
            soft[b, c] = v * (t - exps[c] / sum(exps))
            corr[b, c] = (2 * t - 1) * (1.0 if v == 0 else math.copysign(1.0, v))
    torch.testing.assert_close(sigmoid_reward(o, y), sig, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(softmax_reward(o, y), soft, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(correct_class_reward(o, y), corr, rtol=0, atol=0)
    assert float(corr[1, 2]) == 1.0  # o = 0 at the true class: +1
    # names resolve to the same callables
    assert get_reward("sigmoid") is sigmoid_reward and get_reward("softmax") is softmax_reward
    custom = lambda out, lab: out  # noqa: E731
    assert get_reward(custom) is custom


def test_spike_count_reward_formula():
    o = _spikes(6, 3, 4, seed=5)
    y = torch.tensor([0, 3, 1])
    r = REWARDS["spike-count-softmax"](o, y)
    counts = o.sum(0)
    for b in range(3):
        sm = torch.softmax(counts[b], 0)
        for c in range(4):
            rc = (1.0 if c == int(y[b]) else 0.0) - float(sm[c])
            for t in range(6):
                if c == int(y[b]):
                    want = rc / 6
                else:
                    want = rc * float(o[t, b, c]) / max(float(counts[b, c]), 1.0)
                assert float(r[t, b, c]) == pytest.approx(want, abs=1e-14)


def test_spike_count_predictions():
    o = torch.zeros(4, 3, 3)
    o[:, 0, 2] = 1  # 4 spikes on class 2
    o[:2, 0, 0] = 1
    o[:2, 1, 0] = 1  # tie between 0 and 1: the lower index wins
    o[:2, 1, 1] = 1
    # sample 2: silent, all tied at zero -> class 0
    assert spike_count_predictions(o).tolist() == [2, 0, 0]
    from lfp_snn.training import predictions

    assert predictions(o, spiking=True).tolist() == [2, 0, 0]
    assert predictions(torch.tensor([[0.1, 0.9], [2.0, -1.0]]), spiking=False).tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------------
# encoders
# ------------------------------------------------------------------------------------------------------


def _images(b=3, seed=0):
    return torch.rand(b, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_constant_encoder_is_a_stride_zero_view():
    x = _images()
    xs = constant_encode(x, 7)
    assert xs.shape == (7, 3, 1, 4, 4)
    assert xs.stride(0) == 0 and xs.data_ptr() == x.data_ptr()
    assert torch.equal(xs[5], x)
    assert ConstantEncoder(7)(x).stride(0) == 0


def test_encoder_shapes_time_first():
    x = _images(2)
    for name in ("constant", "rate", "latency"):
        enc = get_encoder(name, 5)
        out = enc(x, torch.Generator().manual_seed(0))
        assert out.shape == (5, 2, 1, 4, 4), name
        assert out.dtype == x.dtype
    assert rate_encode(torch.rand(2, 3), 4).shape == (4, 2, 3)


def test_rate_encoder_statistics():
    p = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
    T = 4000
    s = rate_encode(p.unsqueeze(0), T, generator=torch.Generator().manual_seed(11))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    mean = s.mean(0)[0]
    std = torch.sqrt(p * (1 - p) / T)
    assert bool(((mean - p).abs() <= 5 * std + 1e-12).all()), (mean, p)
    assert float(mean[0]) == 0.0 and float(mean[-1]) == 1.0
    # gain scales the probability (clamped to 1)
    s2 = RateEncoder(T, gain=2.0)(p.unsqueeze(0), torch.Generator().manual_seed(12))
    p2 = (2 * p).clamp(max=1)
    std2 = torch.sqrt(p2 * (1 - p2) / T)
    assert bool(((s2.mean(0)[0] - p2).abs() <= 5 * std2 + 1e-12).all())


def test_rate_encoder_seeding():
    x = _images(4)
    a = rate_encode(x, 20, generator=torch.Generator().manual_seed(5))
    b = rate_encode(x, 20, generator=torch.Generator().manual_seed(5))
    c = rate_encode(x, 20, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the dataclass passes the generator through
    d = RateEncoder(20)(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, d)


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "log"])
def test_latency_encoder_one_spike_earlier_for_brighter(linear):
    T = 10
    x = torch.tensor([[0.0, 0.005, 0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]])
    s = LatencyEncoder(T, threshold=0.01, linear=linear)(x)
    counts = s.sum(0)[0]
    assert counts.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1]  # one spike above the threshold, none below
    times = s[:, 0].argmax(0)[2:]
    assert all(int(a) >= int(b) for a, b in zip(times[:-1], times[1:])), times  # brighter: not later
    assert int(times[-1]) == 0  # x = 1 fires at the first step
    assert int(times[0]) > int(times[-1])
    if linear:
        want = torch.round((1 - x[0, 2:]) * (T - 1)).long()
        assert torch.equal(times, want)
        # inputs further apart than 1 / (T - 1) fire strictly in order
        assert int(latency_encode(torch.tensor([0.2]), T).argmax(0)) > int(
            latency_encode(torch.tensor([0.4]), T).argmax(0)
        )


# ------------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------------


def _ann():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def _snn():
    torch.manual_seed(0)
    return lfp_snn.SpikingSequential(nn.Linear(4, 5), lfp_snn.LIF(), nn.Linear(5, 3), lfp_snn.LIF())


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\].*max 3"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\].*min -1"):
        lfp_snn.feedback(_snn(), torch.rand(2, 4), torch.tensor([-1, 0]), "sequence", steps=3)


def test_float_labels():
    with pytest.raises(ValueError, match=r"integer class indices.*float32"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"integer class indices.*bool"):
        sigmoid_reward(torch.rand(2, 3), torch.tensor([True, False]))


def test_labels_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"labels of shape \[2\].*\[3\]"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1, 2]))


def test_nan_in_inputs():
    x = torch.rand(2, 4)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"input contains 1 NaN"):
        lfp_snn.feedback(_ann(), x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"NaN"):
        constant_encode(x, 3)
    with pytest.raises(ValueError, match=r"NaN"):
        rate_encode(x, 3)


def test_nan_in_a_custom_reward():
    def bad(out, labels):
        r = torch.zeros_like(out)
        r[0, 0] = float("nan")
        return r

    with pytest.raises(ValueError, match=r"reward contains 1 NaN"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1]), bad)


def test_reward_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"reward must have the outputs' shape \[2, 3\], got \[2\]"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1]), lambda o, y: o.sum(1))
    with pytest.raises(ValueError, match=r"outputs' shape \[3, 2, 3\]"):
        lfp_snn.feedback(_snn(), torch.rand(2, 4), torch.tensor([0, 1]), lambda o, y: o[0], steps=3)
    with pytest.raises(TypeError, match=r"must return a tensor.*float"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1]), lambda o, y: 1.0)


def test_sequence_reward_needs_time_axis():
    with pytest.raises(ValueError, match=r"\[T, B, C\]"):
        sequence_reward(torch.rand(2, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize("steps", [0, -2])
def test_steps_must_be_positive(steps):
    with pytest.raises(ValueError, match=rf"steps must be a positive integer, got {steps}"):
        lfp_snn.feedback(_snn(), torch.rand(2, 4), torch.tensor([0, 1]), "sequence", steps=steps)
    for enc in (constant_encode, rate_encode, latency_encode):
        with pytest.raises(ValueError, match=r"steps must be a positive integer"):
            enc(torch.rand(2, 4), steps)
    with pytest.raises(ValueError, match=r"steps must be a positive integer"):
        get_encoder("rate", steps)


def test_steps_on_an_ann_is_an_error():
    with pytest.raises(ValueError, match=r"steps= is for spiking models"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1]), steps=3)


@pytest.mark.parametrize("lo, hi", [(-0.5, 1.0), (0.0, 1.5)])
def test_rate_and_latency_need_values_in_unit_interval(lo, hi):
    x = torch.tensor([[lo, 0.5, hi]])
    for enc in (rate_encode, latency_encode):
        with pytest.raises(ValueError, match=r"values in \[0, 1\].*min.*max") as e:
            enc(x, 4)
        assert f"{lo:.4g}" in str(e.value) and f"{hi:.4g}" in str(e.value)
    assert constant_encode(x, 4).shape == (4, 1, 3)  # the constant encoder takes any real values


def test_integer_images_are_rejected_by_encoders():
    with pytest.raises(ValueError, match=r"floating-point.*int64"):
        rate_encode(torch.tensor([[0, 1]]), 3)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"unknown encoder 'poisson'.*constant.*latency.*rate"):
        get_encoder("poisson", 3)
    with pytest.raises(ValueError, match=r"unknown reward 'mse'.*sigmoid"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1]), "mse")
    with pytest.raises(ValueError, match=r"unknown rule or composite 'lrp'.*epsilon.*zplus-zminus"):
        lfp_snn.feedback(_ann(), torch.rand(2, 4), torch.tensor([0, 1]), "sigmoid", "lrp")


@pytest.mark.parametrize(
    "layer, shape",
    [(nn.InstanceNorm2d(2), (2, 1, 5, 5)), (nn.LSTM(4, 4), (2, 4)), (nn.GELU(), (2, 4))],
    ids=["InstanceNorm2d", "LSTM", "GELU"],
)
def test_unsupported_layer_is_named_with_the_supported_list(layer, shape):
    if isinstance(layer, nn.InstanceNorm2d):
        model = nn.Sequential(nn.Conv2d(1, 2, 3), layer, nn.Flatten(), nn.Linear(18, 3))
    else:
        model = nn.Sequential(nn.Linear(4, 4), layer, nn.Linear(4, 3))
    name = type(layer).__name__
    with pytest.raises(TypeError, match=rf"layer '1' of type {name} is not supported") as e:
        lfp_snn.feedback(model, torch.rand(*shape), torch.tensor([0, 1]))
    msg = str(e.value)
    for supported in ("Linear", "Conv2d", "LIF", "MaxPool2d", "ReLU", "Flatten", "Dropout"):
        assert supported in msg
    assert set(lfp_snn.supported_layers()) <= set(msg.replace(",", " ").split())


def test_unsupported_layer_in_a_nested_sequential_is_named_by_its_path():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.LayerNorm(4)), nn.Linear(4, 3))
    with pytest.raises(TypeError, match=r"layer '1\.1' of type LayerNorm"):
        lfp_snn.feedback(model, torch.rand(2, 4), torch.tensor([0, 1]))
