"""Properties the LFP rules must have: conservation, Theorem 1 (LFP-0 vs the BCE gradient), linearity in the
reward, and the ``write_grad`` contract (``p.grad = -feedback``, so a torch optimiser ascends the reward)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

import lfp_snn
from lfp_snn import LIF, AlphaBeta, Epsilon, SpikingSequential, ZPlusZMinus

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = 1e-12
HYP = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _values(shape, lo=-2.0, hi=2.0):
    return arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False, width=64))


@st.composite
def layer_case(draw, signed_x=True):
    b = draw(st.integers(1, 3))
    n_in = draw(st.integers(1, 6))
    n_out = draw(st.integers(1, 5))
    x = draw(_values((b, n_in), -2.0 if signed_x else 0.0, 2.0))
    w = draw(_values((n_out, n_in)))
    r = draw(_values((b, n_out)))
    return torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(r)


def _linear(w: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    m = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None).to(DT)
    with torch.no_grad():
        m.weight.copy_(w)
        if bias is not None:
            m.bias.copy_(bias)
    return m


def _well_conditioned(*zs: torch.Tensor) -> torch.Tensor:
    """Where every given pre-activation is either exactly zero or clear of the stabiliser (|z| > 1e-3)."""
    ok = torch.ones_like(zs[0], dtype=torch.bool)
    for z in zs:
        ok &= (z == 0) | (z.abs() > 1e-3)
    return ok


def _run(model, x, reward, rule, eps=TINY):
    labels = torch.zeros(x.shape[0], dtype=torch.long)
    return lfp_snn.feedback_result(model, x, labels, lambda o, y: reward, rule, eps=eps, input_reward=True)


# ------------------------------------------------------------------------------------------------------
# (a) conservation
# ------------------------------------------------------------------------------------------------------


@HYP
@given(layer_case())
def test_epsilon_conserves_reward_across_a_layer(case):
    """LFP-ε with ε -> 0 and no bias: Σ_i R_in = Σ_j R_j for every sample."""
    x, w, r = case
    z = x @ w.T
    r = r * (z.abs() > 1e-3)  # an output whose z sits at the stabiliser keeps a share: give it no reward
    res = _run(nn.Sequential(_linear(w)), x, r, Epsilon(TINY))
    np.testing.assert_allclose(res.input_reward.sum(1), r.sum(1), rtol=1e-7, atol=1e-8)


@HYP
@given(layer_case())
def test_zplus_zminus_conserves_reward_across_a_layer(case):
    x, w, r = case
    zp, zn = x @ w.clamp(min=0).T, x @ w.clamp(max=0).T
    r = r * (_well_conditioned(zp, zn) & (zp.abs() + zn.abs() > 1e-3))  # no reward where z is degenerate
    res = _run(nn.Sequential(_linear(w)), x, r, ZPlusZMinus(TINY))
    np.testing.assert_allclose(res.input_reward.sum(1), r.sum(1), rtol=1e-7, atol=1e-8)


@HYP
@given(layer_case(), st.sampled_from([(2.0, 1.0), (1.0, 0.0), (1.5, 0.5)]))
def test_alpha_beta_with_alpha_minus_beta_one_conserves(case, ab):
    """α - β = 1 conserves the reward of every output whose z⁺ and z⁻ are both nonzero; where one side is
    empty (z⁻ = 0, e.g. x >= 0 and W >= 0) that output hands on α R instead (the rule's known gap), so per
    sample Σ_i R_in = Σ_j R_j (α [z⁺_j != 0] - β [z⁻_j != 0])."""
    alpha, beta = ab
    x, w, r = case
    xp, xn, wp, wn = x.clamp(min=0), x.clamp(max=0), w.clamp(min=0), w.clamp(max=0)
    zp = xp @ wp.T + xn @ wn.T
    zn = xp @ wn.T + xn @ wp.T
    r = r * _well_conditioned(zp, zn)
    res = _run(nn.Sequential(_linear(w)), x, r, AlphaBeta(alpha, beta, TINY))
    want = (r * (alpha * (zp != 0).to(DT) - beta * (zn != 0).to(DT))).sum(1)
    np.testing.assert_allclose(res.input_reward.sum(1), want, rtol=1e-7, atol=1e-8)
    both = (zp != 0) & (zn != 0)
    if bool(both.all()):
        np.testing.assert_allclose(res.input_reward.sum(1), r.sum(1), rtol=1e-7, atol=1e-8)


@HYP
@given(layer_case(signed_x=False), st.integers(0, 2**31 - 1))
def test_epsilon_conserves_through_a_relu_network(case, seed):
    """Linear-ReLU-Linear without biases: reward is conserved from the output to the input."""
    x, w2, r = case  # w2: (n_out, n_hidden) with n_hidden := n_in of the drawn case
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(w2.shape[1], 4, generator=g, dtype=DT)
    x = torch.rand(x.shape[0], 4, generator=g, dtype=DT)
    h = torch.relu(x @ w1.T)
    z1, z2 = x @ w1.T, h @ w2.T
    assume(bool((z1.abs() > 1e-3).all()))  # a hidden unit at the stabiliser would keep a share
    r = r * (z2.abs() > 1e-3)
    model = nn.Sequential(_linear(w1), nn.ReLU(), _linear(w2))
    res = _run(model, x, r, Epsilon(TINY))
    np.testing.assert_allclose(res.input_reward.sum(1), r.sum(1), rtol=1e-7, atol=1e-8)


@HYP
@given(layer_case(), _values((5,)))
def test_bias_takes_its_share(case, b):
    """With a bias, the input gets Σ_j R_j (z_j - b_j) / z_j: the bias absorbs Σ_j R_j b_j / z_j."""
    x, w, r = case
    b = torch.from_numpy(b)[: w.shape[0]]
    z = x @ w.T + b
    ok = z.abs() > 1e-3
    r, z = r * ok, torch.where(ok, z, 1.0)  # no reward (and no 0/0) where z sits at the stabiliser
    res = _run(nn.Sequential(_linear(w, b)), x, r, Epsilon(TINY))
    want = (r * (z - b) / z).sum(1)
    np.testing.assert_allclose(res.input_reward.sum(1), want, rtol=1e-7, atol=1e-8)
    bias_share = (r * b / z).sum(1)
    if bool((bias_share.abs() > 1e-3).any()):
        assert not torch.allclose(res.input_reward.sum(1), r.sum(1), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------------
# (b) Theorem 1
# ------------------------------------------------------------------------------------------------------


def _bce_grad(model, x, y, classes):
    model.zero_grad()
    loss = nn.functional.binary_cross_entropy_with_logits(
        model(x), nn.functional.one_hot(y, classes).to(DT), reduction="sum"
    )
    loss.backward()
    return {n: -p.grad.detach().clone() for n, p in model.named_parameters()}


@settings(max_examples=20, deadline=None, database=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 8), st.integers(2, 5))
def test_theorem1_sign_of_lfp0_feedback_is_sign_of_negative_bce_gradient(seed, hidden, classes):
    """Theorem 1, in the setting of its proof: a ReLU network with one hidden layer, non-negative inputs,
    a single sample, LFP-0 and the sigmoid reward r_c = o_c (y_c - σ(o_c)) (Eq. 7).

    Condition checked: for every weight and bias whose BCE gradient is nonzero (and whose value is
    nonzero, since the feedback carries |w|), sign(F) == sign(-∂BCE/∂w). Where the gradient is zero
    (hidden units the ReLU switched off, zero inputs) the feedback is zero too.

    Why it holds: at the output g_c = R_c / o_c = y_c - σ(o_c) = -∂BCE/∂o_c; through a ReLU with LFP-0,
    g_k = R_k / z_k = (a_k / z_k) Σ_c w_ck g_c, and a_k / z_k = 1 = ReLU'(z_k) for active units; so g equals
    the back-propagated error and F_W = |W| ⊙ (gᵀ a) = |W| ⊙ (-∇_W BCE).
    """
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, classes)).to(DT)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 5, generator=g, dtype=DT)
    y = torch.randint(0, classes, (1,), generator=g)
    with torch.no_grad():
        z1 = model[0](x)
        z2 = model(x)
    assume(bool((z1.abs() > 1e-6).all() and (z2.abs() > 1e-6).all()))
    fb = lfp_snn.feedback(model, x, y, "sigmoid", "zero", eps=0.0)
    neg_grad = _bce_grad(model, x, y, classes)
    checked = 0
    for name, p in model.named_parameters():
        ng, f = neg_grad[name], fb[name]
        nz = (ng.abs() > 1e-12) & (p.detach().abs() > 0)
        assert torch.equal(torch.sign(f[nz]), torch.sign(ng[nz])), name
        assert bool((f[ng.abs() <= 1e-15].abs() <= 1e-15).all()), name
        checked += int(nz.sum())
    assert checked > 0


@pytest.mark.parametrize("act", [nn.ReLU, nn.LeakyReLU], ids=["relu", "leaky-relu"])
@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed-x"])
def test_lfp0_relu_feedback_is_abs_weight_times_negative_bce_gradient(act, signed):
    """The stronger form behind Theorem 1: for positively homogeneous activations (ReLU, LeakyReLU), LFP-0
    with the sigmoid reward gives F_p = |p| ⊙ (-∇_p BCE) exactly, for batches, two hidden layers and signed
    inputs too (so the sign statement holds for every weight there)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 8), act(), nn.Linear(8, 7), act(), nn.Linear(7, 4)).to(DT)
    x = torch.rand(5, 6, dtype=DT) - (0.5 if signed else 0.0)
    y = torch.tensor([0, 1, 2, 3, 1])
    fb = lfp_snn.feedback(model, x, y, "sigmoid", "zero", eps=0.0)
    neg_grad = _bce_grad(model, x, y, 4)
    for name, p in model.named_parameters():
        torch.testing.assert_close(fb[name], p.detach().abs() * neg_grad[name], rtol=1e-10, atol=1e-14)


def test_theorem1_identity_needs_the_homogeneous_activation():
    """With tanh, a / z != tanh'(z): the identity F = |W| ⊙ (-∇ BCE) no longer holds for the hidden layer
    (the last layer still matches). Shows the identity test above can fail."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).to(DT)
    x, y = torch.rand(3, 6, dtype=DT), torch.tensor([0, 1, 2])
    fb = lfp_snn.feedback(model, x, y, "sigmoid", "zero", eps=0.0)
    neg_grad = _bce_grad(model, x, y, 4)
    w2 = model[2].weight.detach().abs()
    torch.testing.assert_close(fb["2.weight"], w2 * neg_grad["2.weight"], rtol=1e-10, atol=1e-14)
    w1 = model[0].weight.detach().abs()
    assert float((fb["0.weight"] - w1 * neg_grad["0.weight"]).abs().max()) > 1e-4


# ------------------------------------------------------------------------------------------------------
# (c) linearity in the reward
# ------------------------------------------------------------------------------------------------------

RULES = ["epsilon", "zplus-zminus", "alpha2-beta1", "epsilon-zplus-zminus"]


def _ann():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    ).to(DT)


def _snn():
    torch.manual_seed(0)
    m = SpikingSequential(nn.Linear(6, 8), LIF(0.8), nn.Linear(8, 3), LIF(0.8)).to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
    return m


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("kind", ["ann", "snn"])
def test_feedback_is_linear_in_the_reward(rule, kind):
    g = torch.Generator().manual_seed(1)
    if kind == "ann":
        model, x, y = _ann(), torch.rand(4, 1, 6, 6, generator=g, dtype=DT), torch.tensor([0, 1, 2, 0])
        out_shape = (4, 3)
    else:
        model, x, y = _snn(), torch.rand(5, 4, 6, generator=g, dtype=DT), torch.tensor([0, 1, 2, 0])
        out_shape = (5, 4, 3)
    r1 = torch.randn(out_shape, generator=g, dtype=DT)
    r2 = torch.randn(out_shape, generator=g, dtype=DT)

    def fb(r):
        return lfp_snn.feedback_result(model, x, y, lambda o, lab: r, rule, input_reward=True)

    f1, f2, f_double, f_sum = fb(r1), fb(r2), fb(2 * r1), fb(r1 + r2)
    for name in f1.feedback:
        assert float(f1.feedback[name].abs().max()) > 0
        torch.testing.assert_close(f_double.feedback[name], 2 * f1.feedback[name], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(
            f_sum.feedback[name], f1.feedback[name] + f2.feedback[name], rtol=1e-9, atol=1e-12
        )
    torch.testing.assert_close(f_double.input_reward, 2 * f1.input_reward, rtol=1e-12, atol=1e-14)
    zero = fb(torch.zeros(out_shape, dtype=DT))
    assert all(float(v.abs().max()) == 0 for v in zero.feedback.values())


# ------------------------------------------------------------------------------------------------------
# (d) write_grad and the optimiser step
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ann", "snn"])
def test_write_grad_sets_negative_feedback_and_sgd_ascends(kind):
    g = torch.Generator().manual_seed(2)
    if kind == "ann":
        model, x = _ann(), torch.rand(4, 1, 6, 6, generator=g, dtype=DT)
        reward, steps = "sigmoid", None
    else:
        model, x = _snn(), torch.rand(4, 6, generator=g, dtype=DT)
        reward, steps = "sequence", 5
    y = torch.tensor([0, 1, 2, 0])
    for p in model.parameters():  # a stale gradient must be replaced, not accumulated
        p.grad = torch.full_like(p, 7.0)
    fb = lfp_snn.feedback(model, x, y, reward, "epsilon", steps=steps, write_grad=True)
    assert set(fb) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, -fb[name], rtol=0, atol=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr = 0.01
    torch.optim.SGD(model.parameters(), lr=lr).step()
    total = 0.0
    for name, p in model.named_parameters():
        step = p.detach() - before[name]
        torch.testing.assert_close(step, lr * fb[name], rtol=1e-12, atol=1e-15)
        total += float((step * fb[name]).sum())
    assert total > 0  # the weights moved along the feedback


def test_write_grad_false_leaves_grad_alone():
    model = _ann()
    x, y = torch.rand(2, 1, 6, 6, dtype=DT), torch.tensor([0, 1])
    lfp_snn.feedback(model, x, y, "sigmoid", "epsilon")
    assert all(p.grad is None for p in model.parameters())


def test_lfp_step_increases_the_reward_of_a_linear_model():
    """A small SGD step on -feedback raises the sigmoid reward objective (Σ_c log σ-likelihood proxy): for a
    single Linear layer LFP-ε with the sigmoid reward is |W|-weighted gradient ascent on -BCE."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(6, 3)).to(DT)
    x, y = torch.rand(8, 6, dtype=DT), torch.randint(0, 3, (8,))

    def bce():
        with torch.no_grad():
            return float(
                nn.functional.binary_cross_entropy_with_logits(
                    model(x), nn.functional.one_hot(y, 3).to(DT), reduction="sum"
                )
            )

    before = bce()
    lfp_snn.feedback(model, x, y, "sigmoid", "epsilon", write_grad=True)
    torch.optim.SGD(model.parameters(), lr=1e-3).step()
    assert bce() < before
