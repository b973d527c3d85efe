"""LIF neuron: hand-computed membrane traces for the four reset variants, per-neuron parameters, the strict
threshold, state passing, and errors for bad parameters and inputs.

All hand traces use β = 0.5, θ = 1 unless stated; U_0 = 0; the reported membrane is U_t after the reset
(lfp_snn/neurons/lif.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import LIF, LIFParameters, LIFState, lif_scan

pytestmark = pytest.mark.usefixtures("one_thread")


DT = torch.float64
CURRENT = [1.5, 0.2, 0.2, 1.2, 0.0, 0.9]

# (reset, reset_delay) -> (spikes, membrane U_t after the reset), worked out by hand:
HAND = {
    # reset_t = H(U_{t-1} - 1); U_t = 0.5 U_{t-1} + I_t - reset_t; S_t = H(U_t - 1)
    # t1: 1.5 (S);  t2: 0.75 + 0.2 - 1 = -0.05;  t3: -0.025 + 0.2 = 0.175;  t4: 0.0875 + 1.2 = 1.2875 (S);
    # t5: 0.64375 + 0 - 1 = -0.35625;  t6: -0.178125 + 0.9 = 0.721875
    ("subtract", True): ([1, 0, 0, 1, 0, 0], [1.5, -0.05, 0.175, 1.2875, -0.35625, 0.721875]),
    # U_t = 0.5 U_{t-1} (1 - reset_t) + I_t
    # t1: 1.5 (S);  t2: 0 + 0.2;  t3: 0.1 + 0.2 = 0.3;  t4: 0.15 + 1.2 = 1.35 (S);  t5: 0 + 0;  t6: 0 + 0.9
    ("zero", True): ([1, 0, 0, 1, 0, 0], [1.5, 0.2, 0.3, 1.35, 0.0, 0.9]),
    # Ũ_t = 0.5 U_{t-1} + I_t; S_t = H(Ũ_t - 1); U_t = Ũ_t - S_t
    # t1: 1.5 (S) -> 0.5;  t2: 0.25 + 0.2 = 0.45;  t3: 0.225 + 0.2 = 0.425;  t4: 0.2125 + 1.2 = 1.4125 (S)
    # -> 0.4125;  t5: 0.20625;  t6: 0.103125 + 0.9 = 1.003125 (S) -> 0.003125
    ("subtract", False): ([1, 0, 0, 1, 0, 1], [0.5, 0.45, 0.425, 0.4125, 0.20625, 0.003125]),
    # U_t = Ũ_t (1 - S_t)
    # t1: 1.5 (S) -> 0;  t2: 0.2;  t3: 0.1 + 0.2 = 0.3;  t4: 0.15 + 1.2 = 1.35 (S) -> 0;  t5: 0;  t6: 0.9
    ("zero", False): ([1, 0, 0, 1, 0, 0], [0.0, 0.2, 0.3, 0.0, 0.0, 0.9]),
}
VARIANTS = list(HAND)
IDS = [f"{r}-{'delay' if d else 'no-delay'}" for r, d in VARIANTS]


def _col(values, batch=1):
    """[T] list -> [T, batch, 1] float64 tensor."""
    return torch.tensor(values, dtype=DT).reshape(-1, 1, 1).expand(-1, batch, 1).contiguous()


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_hand_computed_trace(variant):
    reset, delay = variant
    spikes_want, mem_want = HAND[variant]
    s, u, state = lif_scan(_col(CURRENT, 2), LIFParameters(0.5, 1.0, reset, delay))
    assert s.shape == u.shape == (6, 2, 1)
    assert s[:, 0, 0].tolist() == spikes_want
    torch.testing.assert_close(u[:, 0, 0], torch.tensor(mem_want, dtype=DT), rtol=0, atol=1e-12)
    assert torch.equal(s[:, 0], s[:, 1]) and torch.equal(u[:, 0], u[:, 1])
    torch.testing.assert_close(state.mem, u[-1], rtol=0, atol=0)
    # the module gives the same spikes
    lif = LIF(0.5, 1.0, reset, delay)
    assert torch.equal(lif(_col(CURRENT, 2)), s)


def test_variants_differ():
    """The hand traces are not all alike: the variants are really distinguished."""
    mems = [tuple(HAND[v][1]) for v in VARIANTS]
    assert len(set(mems)) == 4
    assert HAND["subtract", False][0] != HAND["subtract", True][0]


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_threshold_is_strict(variant):
    """H(0) = 0: a membrane exactly at θ does not spike (0.5 + 0.75 lands on 1.0 exactly in binary)."""
    reset, delay = variant
    s, u, _ = lif_scan(_col([0.5, 0.75, 0.25]), LIFParameters(0.5, 1.0, reset, delay))
    assert s.sum() == 0
    assert float(u[1, 0, 0]) == 1.0
    # and one ulp above θ does spike (0.25 + 0.75 + 2^-52 = 1 + 2^-52 exactly)
    s2, _, _ = lif_scan(_col([0.5, 0.75 + 2.0**-52, 0.25]), LIFParameters(0.5, 1.0, reset, delay))
    assert s2[:, 0, 0].tolist() == [0, 1, 0]


@pytest.mark.parametrize("module", [False, True], ids=["lif_scan", "LIF"])
def test_per_neuron_beta_and_threshold(module):
    """Neuron A: β = 0.5, θ = 1; neuron B: β = 1, θ = 0.5; constant current 0.6, subtract + delay.
    A: U = 0.6, 0.9, 1.05 (S), 0.525 + 0.6 - 1 = 0.125.  B: 0.6 (S), 0.6 + 0.6 - 0.5 = 0.7 (S), 0.8 (S), 0.9 (S).
    """
    beta = torch.tensor([0.5, 1.0], dtype=DT)
    thr = torch.tensor([1.0, 0.5], dtype=DT)
    current = torch.full((4, 3, 2), 0.6, dtype=DT)
    if module:
        s, u, _ = LIF(beta, thr).double().scan(current)
    else:
        s, u, _ = lif_scan(current, LIFParameters(beta, thr))
    assert s[:, 0, 0].tolist() == [0, 0, 1, 0]
    assert s[:, 0, 1].tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(
        u[:, 0, 0], torch.tensor([0.6, 0.9, 1.05, 0.125], dtype=DT), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(u[:, 0, 1], torch.tensor([0.6, 0.7, 0.8, 0.9], dtype=DT), rtol=0, atol=1e-12)
    assert torch.equal(s[:, 1:], s[:, :1].expand(-1, 2, -1))


def test_per_neuron_zero_reset_without_delay():
    """Same neurons, zero reset without delay. A: Ũ = 0.6, 0.9, 1.05 (S) -> 0, 0.6. B: spikes every step,
    U = 0 after each."""
    p = LIFParameters(torch.tensor([0.5, 1.0], dtype=DT), torch.tensor([1.0, 0.5], dtype=DT), "zero", False)
    s, u, _ = lif_scan(torch.full((4, 1, 2), 0.6, dtype=DT), p)
    assert s[:, 0, 0].tolist() == [0, 0, 1, 0] and s[:, 0, 1].tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(u[:, 0, 0], torch.tensor([0.6, 0.9, 0.0, 0.6], dtype=DT), rtol=0, atol=1e-12)
    assert float(u[:, 0, 1].abs().max()) == 0.0


def test_beta_one_integrates_without_leak():
    s, u, _ = lif_scan(_col([0.3, 0.3, 0.3, 0.3]), LIFParameters(1.0, 1.0))
    torch.testing.assert_close(u[:, 0, 0], torch.tensor([0.3, 0.6, 0.9, 1.2], dtype=DT), rtol=0, atol=1e-12)
    assert s[:, 0, 0].tolist() == [0, 0, 0, 1]


def test_constant_current_with_steps_equals_expanded():
    c = torch.rand(3, 5, dtype=DT, generator=torch.Generator().manual_seed(0)) * 1.5
    for reset, delay in VARIANTS:
        p = LIFParameters(0.8, 1.0, reset, delay)
        s1, u1, _ = lif_scan(c, p, steps=7)
        s2, u2, _ = lif_scan(c.unsqueeze(0).repeat(7, 1, 1), p)
        assert torch.equal(s1, s2) and torch.equal(u1, u2)


# ------------------------------------------------------------------------------------------------------
# state
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_state_passing_continues_where_the_last_call_ended(variant):
    reset, delay = variant
    g = torch.Generator().manual_seed(1)
    current = torch.rand(9, 4, 3, generator=g, dtype=DT) * 1.6
    p = LIFParameters(0.8, 1.0, reset, delay)
    s_all, u_all, st_all = lif_scan(current, p)
    assert 0 < float(s_all.mean()) < 1
    s1, u1, st1 = lif_scan(current[:4], p)
    s2, u2, st2 = lif_scan(current[4:], p, st1)
    assert torch.equal(torch.cat([s1, s2]), s_all)
    torch.testing.assert_close(torch.cat([u1, u2]), u_all, rtol=0, atol=1e-14)
    torch.testing.assert_close(st2.mem, st_all.mem, rtol=0, atol=1e-14)
    # the LIF module's scan does the same
    lif = LIF(0.8, 1.0, reset, delay).double()
    a = lif.scan(current[:4])
    b = lif.scan(current[4:], a[2])
    assert torch.equal(torch.cat([a[0], b[0]]), s_all)
    # and without the state the second half starts from U_0 = 0, which differs here
    s_fresh, _, _ = lif_scan(current[4:], p)
    assert not torch.equal(s_fresh, s2) or not torch.equal(lif_scan(current[4:], p)[1], u2)


def test_initial_state_by_hand():
    """U_0 = 1.2 > θ, β = 0.5, I_1 = 0.2. Delayed subtract: reset_1 = 1, U_1 = 0.6 + 0.2 - 1 = -0.2.
    Delayed zero: U_1 = 0 + 0.2. Immediate subtract: Ũ_1 = 0.8, no spike. Immediate zero: 0.8 too."""
    state = LIFState(torch.full((1, 1), 1.2, dtype=DT))
    want = {("subtract", True): -0.2, ("zero", True): 0.2, ("subtract", False): 0.8, ("zero", False): 0.8}
    for (reset, delay), u1 in want.items():
        s, u, _ = lif_scan(_col([0.2]), LIFParameters(0.5, 1.0, reset, delay), state)
        assert float(s.sum()) == 0
        assert float(u[0, 0, 0]) == pytest.approx(u1, abs=1e-12), (reset, delay)


def test_no_state_survives_between_calls():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(6, 2, 5, generator=g) * 2, torch.rand(6, 2, 5, generator=g) * 2
    lif = LIF(0.9, 1.0)
    first = lif(a)
    lif(b)
    assert torch.equal(lif(a), first)
    assert torch.equal(lif(b[3:]), lif_scan(b[3:], LIFParameters(0.9, 1.0))[0])
    assert not any(isinstance(v, torch.Tensor) and v.shape == (2, 5) for v in vars(lif).values())
    # nor in a model
    torch.manual_seed(0)
    model = lfp_snn.SpikingSequential(nn.Linear(5, 4), LIF(0.9, 0.5))
    out1 = model(a)
    model(b)
    assert torch.equal(model(a), out1)


# ------------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta, shown", [(0.0, "0.0"), (-0.1, "-0.1"), (1.5, "1.5"), (float("nan"), "nan")])
def test_bad_beta_names_the_value(beta, shown):
    with pytest.raises(ValueError, match=r"beta") as e:
        LIF(beta=beta)
    assert shown in str(e.value)
    with pytest.raises(ValueError, match=r"beta") as e:
        lif_scan(torch.zeros(3, 1, 2), LIFParameters(beta=beta))
    assert shown in str(e.value)


def test_bad_per_neuron_beta_reports_the_range():
    with pytest.raises(ValueError, match=r"beta.*max 1\.2"):
        LIF(beta=torch.tensor([0.5, 1.2]))


@pytest.mark.parametrize("thr, shown", [(0.0, "0.0"), (-1.0, "-1.0"), (float("inf"), "inf")])
def test_bad_threshold_names_the_value(thr, shown):
    with pytest.raises(ValueError, match=r"threshold") as e:
        LIF(threshold=thr)
    assert shown in str(e.value)
    with pytest.raises(ValueError, match=r"threshold") as e:
        lif_scan(torch.zeros(3, 1, 2), LIFParameters(threshold=thr))
    assert shown in str(e.value)


def test_bad_reset_options():
    with pytest.raises(ValueError, match=r"reset.*'subtract'.*'zero'.*'soft'"):
        LIF(reset="soft")
    with pytest.raises(ValueError, match=r"reset_delay.*'yes'"):
        LIF(reset_delay="yes")


def test_parameters_changed_after_construction_are_checked():
    lif = LIF(0.9, 1.0)
    with torch.no_grad():
        lif.beta.fill_(2.0)
    with pytest.raises(ValueError, match=r"beta.*2\.0"):
        lif(torch.ones(3, 1, 2))


def test_zero_steps():
    with pytest.raises(ValueError, match=r"T = 0"):
        lif_scan(torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match=r"T = 0"):
        LIF()(torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match=r"steps.*0"):
        lif_scan(torch.zeros(2, 3), steps=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_current(bad):
    c = torch.zeros(4, 2, 3)
    c[2, 1, 0] = bad
    with pytest.raises(ValueError, match=r"NaN"):
        lif_scan(c)
    with pytest.raises(ValueError, match=r"NaN"):
        LIF()(c)


def test_current_without_time_axis():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\].*\[5\]"):
        lif_scan(torch.zeros(5))


def test_spiking_model_rejects_input_without_time_axis():
    """[B, F] where [T, B, F] is expected: the error says which shape and how to feed a static input."""
    torch.manual_seed(0)
    model = lfp_snn.SpikingSequential(nn.Linear(5, 4), LIF())
    x = torch.rand(3, 5)
    for call in (lambda: model(x), lambda: lfp_snn.feedback(model, x, torch.tensor([0, 1, 2]), "sequence")):
        with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\].*\[3, 5\].*steps=T"):
            call()
    assert model(x, steps=4).shape == (4, 3, 4)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"backend.*'cuda-magic'.*torch"):
        LIF(backend="cuda-magic")


def test_state_dict_with_per_neuron_threshold_loads_into_a_scalar_lif():
    """Checkpoints after threshold homeostasis hold θ per neuron; a freshly built LIF (scalar θ) loads them."""
    src = lfp_snn.LIF(beta=0.8, threshold=torch.tensor([0.5, 1.0, 1.5]))
    dst = lfp_snn.LIF(beta=0.8, threshold=1.0)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.threshold, torch.tensor([0.5, 1.0, 1.5]))
    x = torch.full((3, 1, 3), 0.6)
    assert torch.equal(dst(x), src(x))


@pytest.mark.parametrize("bad", [torch.full((5, 2, 3), 0.9), torch.full((4,), 0.9), torch.full((2, 3), 0.9)])
def test_beta_with_a_time_or_batch_axis_or_the_wrong_length_is_named(bad):
    """β/θ are per neuron: [T, B, N], [wrong N] or [B, N] tensors are errors naming the layer (not beta[0])."""
    m = lfp_snn.SpikingSequential(torch.nn.Linear(4, 3), lfp_snn.LIF(beta=bad))
    with pytest.raises(
        ValueError, match=rf"layer '1' \(LIF\): beta has shape {list(bad.shape)}".replace("[", r"\[")
    ):
        lfp_snn.run(m, torch.rand(5, 2, 4))
    with pytest.raises(ValueError, match=r"beta has shape"):
        lfp_snn.lif_scan(torch.rand(5, 2, 3), lfp_snn.LIFParameters(bad, 1.0))
    good = lfp_snn.SpikingSequential(torch.nn.Linear(4, 3), lfp_snn.LIF(beta=torch.full((3,), 0.9)))
    assert lfp_snn.run(good, torch.rand(5, 2, 4)).shape == (5, 2, 3)
