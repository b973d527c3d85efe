"""The current-based, adaptive and recurrent LIF neurons: scans against hand-computed traces, their LFP rules
against a literal step-by-step implementation in float64 (loop over t, then layers, straight from the
equations in docs/neurons.md), the LIF as their special case (α = 0, κ = 0, V = 0) bit for bit, what the
synaptic stage conserves, and their parameter errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lfp_snn
from lfp_snn import LIF, SpikingSequential
from lfp_snn.kernels.synaptic import synaptic_feedback_scan, synaptic_forward_scan
from lfp_snn.neurons import AdaptiveLIF, CubaLIF, RecurrentLIF

DT = torch.float64
EPS = 1e-6
RESETS = [("subtract", True), ("subtract", False), ("zero", True), ("zero", False)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _stab(z, eps=EPS):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


# ------------------------------------------------------------------------------------------------------
# literal neurons: one step forward and one step back, from the equations
# ------------------------------------------------------------------------------------------------------


def _membrane_step(u_prev, s_prev, x, beta, thr_now, thr_prev, reset, delay):
    """One membrane update; returns (S_t, U_t, P_t, Ũ_t). thr_prev: the threshold a delayed subtract removes."""
    if delay:
        p = u_prev if reset == "subtract" else u_prev * (1 - s_prev)
        pre = beta * p + x
        u = pre - thr_prev * s_prev if reset == "subtract" else pre
        s = (u > thr_now).to(DT)
    else:
        p = u_prev
        pre = beta * p + x
        s = (pre > thr_now).to(DT)
        u = pre - thr_now * s if reset == "subtract" else pre * (1 - s)
    return s, u, p, pre


class Literal:
    """A literal network: Linear -> neuron -> Linear -> neuron, ε rule, step by step."""

    def __init__(self, net, kind):
        self.fcs = [net[0], net[2]]
        self.neurons = [net[1], net[3]]
        self.kind = kind

    def run(self, xs, R):
        T = xs.shape[0]
        L = 2
        st = [dict(u=None, s=None, i=None, a=None) for _ in range(L)]
        keep = [[None] * T for _ in range(L)]
        outs = []
        for t in range(T):
            h = xs[t]
            for k in range(L):
                m, fc = self.neurons[k], self.fcs[k]
                x_ff = F.linear(h, fc.weight, fc.bias)
                B, N = x_ff.shape
                z = torch.zeros(B, N, dtype=DT)
                u_prev = st[k]["u"] if st[k]["u"] is not None else z
                s_prev = st[k]["s"] if st[k]["s"] is not None else z
                beta, thr = m.beta.to(DT), m.threshold.to(DT)
                rec = dict(h=h, s_prev=s_prev, x_ff=x_ff)
                if self.kind == "cuba":
                    i_prev = st[k]["i"] if st[k]["i"] is not None else z
                    i_t = m.alpha.to(DT) * i_prev + x_ff  # I_t = α I_{t-1} + X_t
                    s, u, p, pre = _membrane_step(
                        u_prev, (u_prev > thr).to(DT), i_t, beta, thr, thr, m.reset, m.reset_delay
                    )
                    st[k]["i"] = i_t
                    rec.update(i=i_t, i_prev=i_prev)
                elif self.kind == "adaptive":
                    a_prev = st[k]["a"] if st[k]["a"] is not None else z
                    a_t = m.rho.to(DT) * a_prev + m.adaptation.to(DT) * s_prev  # a_t = ρ a_{t-1} + κ S_{t-1}
                    s, u, p, pre = _membrane_step(
                        u_prev, s_prev, x_ff, beta, thr + a_t, thr + a_prev, m.reset, m.reset_delay
                    )
                    st[k]["a"] = a_t
                    rec.update(a=a_t, a_prev=a_prev)
                elif self.kind == "recurrent":
                    x_t = x_ff + s_prev @ m.effective_weight().T  # X_t = I_t + V S_{t-1}
                    s, u, p, pre = _membrane_step(
                        u_prev, (u_prev > thr).to(DT), x_t, beta, thr, thr, m.reset, m.reset_delay
                    )
                else:  # the LIF
                    s, u, p, pre = _membrane_step(
                        u_prev, (u_prev > thr).to(DT), x_ff, beta, thr, thr, m.reset, m.reset_delay
                    )
                st[k]["u"], st[k]["s"] = u, s
                rec.update(p=p, pre=pre, s=s)
                keep[k][t] = rec
                h = s
            outs.append(h)
        out = torch.stack(outs)
        # ------------------------------------------------------------- back: t = T..1, last layer first
        fb = {}
        for k, fc in zip((0, 2), self.fcs):
            fb[f"{k}.weight"] = torch.zeros_like(fc.weight)
            fb[f"{k}.bias"] = torch.zeros_like(fc.bias)
        if self.kind == "recurrent":
            for k in (1, 3):
                fb[f"{k}.weight"] = torch.zeros_like(self.neurons[k // 2].weight)
        C = [0.0] * L  # membrane carries
        CI = [0.0] * L  # synaptic carries (cuba)
        A = [0.0] * L  # adaptation carries
        Q = [0.0] * L  # reward at S_t from step t+1 (adaptation or recurrent product)
        rin = [None] * T
        for t in range(T - 1, -1, -1):
            r = R[t]
            for k in range(L - 1, -1, -1):
                m, fc, rec = self.neurons[k], self.fcs[k], keep[k][t]
                p, pre = rec["p"], rec["pre"]
                Rt = r + C[k] + Q[k]
                D = p.abs() + (pre - p).abs()
                if self.kind == "adaptive":
                    D = D + rec["a"].abs()
                g = Rt / (D + EPS)
                C[k] = m.beta.to(DT) * p * g
                Q[k] = 0.0
                if self.kind == "cuba":  # g^I_t = g^U_t + C^I_{t+1} / stab(I_t); C^I_t = α I_{t-1} g^I_t
                    g = g + CI[k] / _stab(rec["i"])
                    CI[k] = m.alpha.to(DT) * rec["i_prev"] * g
                elif self.kind == "adaptive":
                    a, a_prev = rec["a"], rec["a_prev"]
                    ga = (A[k] - a * g) / (a + EPS)  # the adaptation's share, -a_t g_t, plus its carry
                    A[k] = m.rho.to(DT) * a_prev * ga
                    Q[k] = m.adaptation.to(DT) * rec["s_prev"] * ga  # to the spike that raised θ
                elif self.kind == "recurrent":
                    w = m.effective_weight()
                    fb[f"{2 * k + 1}.weight"] += w.abs() * (g.T @ rec["s_prev"])
                    Q[k] = rec["s_prev"] * (g @ w)
                fb[f"{2 * k}.weight"] += fc.weight.abs() * (g.T @ rec["h"])
                fb[f"{2 * k}.bias"] += fc.bias.abs() * g.sum(0)
                r = rec["h"] * (g @ fc.weight)
            rin[t] = r
        return out, fb, torch.stack(rin)


def _neuron(kind, reset, delay, k):
    if kind == "cuba":
        return CubaLIF(0.6 if k else 0.4, 0.85, 0.8, reset, delay)
    if kind == "adaptive":
        return AdaptiveLIF(0.85, 0.8, 0.7, 0.4 if k else 0.6, reset, delay)
    if kind == "recurrent":
        return RecurrentLIF(10 if k == 0 else 4, 0.85, 0.8, reset, delay)
    return LIF(0.85, 0.8, reset, delay)


def _net(kind, reset="subtract", delay=True, seed=0):
    torch.manual_seed(seed)
    net = SpikingSequential(
        nn.Linear(6, 10), _neuron(kind, reset, delay, 0), nn.Linear(10, 4), _neuron(kind, reset, delay, 1)
    ).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.5)
    return net


def _data(T=8, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, 6, generator=g, dtype=DT), torch.randn(T, B, 4, generator=g, dtype=DT)


@pytest.mark.parametrize("kind", ["cuba", "adaptive", "recurrent", "lif"])
@pytest.mark.parametrize("reset, delay", RESETS)
@pytest.mark.parametrize("kw", [{}, {"time_chunk": 3}])
def test_fast_rule_matches_the_literal_step_by_step_rule(kind, reset, delay, kw):
    net = _net(kind, reset, delay)
    xs, R = _data()
    with torch.no_grad():
        out, fb, rin = Literal(net, kind).run(xs, R)
    res = lfp_snn.feedback_result(
        net, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R, input_reward=True, **kw
    )
    assert torch.equal(res.output, out)
    assert 0 < float(out.mean()) < 1, "the output layer must spike sometimes"
    assert res.feedback.keys() == fb.keys()
    for k, want in fb.items():
        torch.testing.assert_close(res.feedback[k], want, rtol=1e-10, atol=1e-12, msg=k)
    torch.testing.assert_close(res.input_reward, rin, rtol=1e-10, atol=1e-12)
    assert fb["0.weight"].abs().max() > 0


def test_the_literal_rules_tell_the_neurons_apart():
    """The literal check can fail: each neuron's rule differs from the LIF's on the same weights."""
    xs, R = _data()
    base = Literal(_net("lif"), "lif").run(xs, R)[1]["0.weight"]
    for kind in ("cuba", "adaptive", "recurrent"):
        fb = lfp_snn.feedback(_net(kind), xs, torch.zeros(3, dtype=torch.long), lambda o, y: R)
        assert (fb["0.weight"] - base).abs().max() > 1e-3 * base.abs().max(), kind


# ------------------------------------------------------------------------------------------------------
# the LIF as a special case, bit for bit
# ------------------------------------------------------------------------------------------------------


def _special(kind, reset, delay):
    net = _net(kind, reset, delay)
    for m in (net[1], net[3]):
        if kind == "cuba":
            m.alpha.zero_()
        elif kind == "adaptive":
            m.adaptation.zero_()
        else:
            with torch.no_grad():
                m.weight.zero_()
    lif = _net("lif", reset, delay)
    lif.load_state_dict(
        {
            k: v
            for k, v in net.state_dict().items()
            if not k.endswith(("1.weight", "3.weight")) or kind != "recurrent"
        },
        strict=False,
    )
    for k in (0, 2):
        lif[k].load_state_dict(net[k].state_dict())
    return net, lif


@pytest.mark.parametrize("kind", ["cuba", "adaptive", "recurrent"])
@pytest.mark.parametrize("reset, delay", RESETS)
def test_the_special_case_reproduces_the_lif_exactly(kind, reset, delay):
    net, lif = _special(kind, reset, delay)
    xs, R = _data()
    a = lfp_snn.feedback_result(net, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R, input_reward=True)
    b = lfp_snn.feedback_result(lif, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R, input_reward=True)
    assert torch.equal(a.output, b.output)
    for k, v in b.feedback.items():
        assert torch.equal(a.feedback[k], v), k
    assert torch.equal(a.input_reward, b.input_reward)
    if kind == "recurrent":  # V = 0 gets feedback all the same (|V| = 0 times it: zero)
        assert torch.equal(a.feedback["1.weight"], torch.zeros_like(a.feedback["1.weight"]))


# ------------------------------------------------------------------------------------------------------
# scans by hand
# ------------------------------------------------------------------------------------------------------


def test_cuba_scan_by_hand():
    # α = 0.5, β = 0.5, θ = 1, subtract with delay; X = 1, 1, 0, 0
    x = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=DT).reshape(4, 1, 1)
    s, u, i, state = CubaLIF(0.5, 0.5, 1.0).to(DT).scan(x)
    assert i.flatten().tolist() == [1.0, 1.5, 0.75, 0.375]  # I_t = 0.5 I_{t-1} + X_t
    # U: 1, 0.5 + 1.5 = 2.0 (> 1: spike), 1.0 + 0.75 - 1 = 0.75, 0.375 + 0.375 = 0.75
    assert u.flatten().tolist() == [1.0, 2.0, 0.75, 0.75]
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert state.syn.item() == 0.375 and state.mem.item() == 0.75


def test_adaptive_scan_by_hand():
    # β = 1 (IF), θ_0 = 1, ρ = 0.5, κ = 1, subtract with delay; I = 1.5 at every step
    x = torch.full((5, 1, 1), 1.5, dtype=DT)
    s, v, a, state = AdaptiveLIF(1.0, 1.0, 0.5, 1.0).to(DT).scan(x)
    # t1: a=0, U=1.5 > 1 spike; t2: a=1, U=1.5+1.5-1=2.0 < θ=2: none; t3: a=0.5, U=3.5 > 1.5 spike
    # t4: a=0.25+1=1.25, U=3.5+1.5-1.5=3.5 > 2.25 spike; t5: a=0.625+1=1.625, U=3.5+1.5-2.25=2.75 > 2.625 spike
    assert a.flatten().tolist() == [0.0, 1.0, 0.5, 1.25, 1.625]
    assert v.flatten().tolist() == [1.5, 2.0, 3.5, 3.5, 2.75]
    assert s.flatten().tolist() == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert state.adapt.item() == 1.625 and state.spikes.item() == 1.0


def test_recurrent_scan_by_hand():
    # two neurons, neuron 0 excites neuron 1 by 2; β = 0.5, θ = 1, subtract with delay
    m = RecurrentLIF(2, 0.5, 1.0).to(DT)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    x = torch.tensor([[1.5, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=DT).reshape(3, 1, 2)
    s, u, _ = m.scan(x)
    # t1: U = (1.5, 0), S = (1, 0); t2: X = (0, 2): U = (0.75 - 1, 2) = (-0.25, 2), S = (0, 1)
    # t3: X = (0, 0): U = (-0.125, 1 - 1) = (-0.125, 0)
    assert u.reshape(3, 2).tolist() == [[1.5, 0.0], [-0.25, 2.0], [-0.125, 0.0]]
    assert s.reshape(3, 2).tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]


def test_recurrent_mask_removes_connections_and_their_feedback():
    torch.manual_seed(0)
    mask = 1 - torch.eye(10)
    net = SpikingSequential(
        nn.Linear(6, 10), RecurrentLIF(10, 0.85, 0.8, recurrent_mask=mask), nn.Linear(10, 4), LIF(0.85, 0.8)
    ).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.5)
    xs, R = _data()
    fb = lfp_snn.feedback(net, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R)
    assert torch.equal(torch.diagonal(fb["1.weight"]), torch.zeros(10, dtype=DT))
    assert fb["1.weight"].abs().max() > 0


# ------------------------------------------------------------------------------------------------------
# conservation
# ------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    alpha=st.floats(0.0, 0.95),
    seed=st.integers(0, 10_000),
    T=st.integers(1, 12),
)
def test_the_synaptic_stage_conserves_the_reward(alpha, seed, T):
    """Σ_t I_t g^U_t (what the membrane hands the synaptic current) = Σ_t X_t g^I_t (what reaches the input),
    up to the stabiliser: nothing is lost or made in the synaptic current's reverse scan."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, 3, 5, generator=g, dtype=DT) + 0.5
    g_mem = torch.randn(T, 3, 5, generator=g, dtype=DT)
    syn = synaptic_forward_scan(x, alpha)
    g_syn, c1 = synaptic_feedback_scan(g_mem, syn, alpha, eps=1e-12)
    assert c1 is None  # I_0 = 0: nothing is handed before the first step
    into, out = (syn * g_mem).sum(), (x * g_syn).sum()
    assert float(out) == pytest.approx(float(into), rel=1e-6, abs=1e-8)


# ------------------------------------------------------------------------------------------------------
# bad parameters
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CubaLIF(alpha=1.0), r"alpha must lie in \[0, 1\), got 1.0"),
        (lambda: CubaLIF(alpha=-0.1), r"alpha must lie in \[0, 1\), got -0.1"),
        (lambda: CubaLIF(beta=1.5), r"beta must lie in \(0, 1\]"),
        (lambda: AdaptiveLIF(rho=1.0), r"rho must lie in \[0, 1\), got 1.0"),
        (lambda: AdaptiveLIF(adaptation=-0.2), r"adaptation must be >= 0 and finite, got -0.2"),
        (lambda: AdaptiveLIF(threshold=0.0), r"threshold must be > 0"),
        (lambda: RecurrentLIF(0), r"features must be an integer >= 1, got 0"),
        (
            lambda: RecurrentLIF(4, recurrent_mask=torch.ones(3, 3)),
            r"recurrent mask must have shape \[4, 4\]",
        ),
        (
            lambda: RecurrentLIF(4, recurrent_mask=torch.full((4, 4), 0.5)),
            r"recurrent_mask must hold 0s and 1s",
        ),
        (lambda: CubaLIF(reset="hard"), r"reset must be one of"),
        (lambda: AdaptiveLIF(backend="gpu"), r"unknown backend 'gpu'"),
    ],
)
def test_bad_parameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_recurrent_layer_of_the_wrong_width_and_its_weight_shape_are_named():
    net = SpikingSequential(nn.Linear(6, 8), RecurrentLIF(10)).to(DT)
    with pytest.raises(
        ValueError, match=r"layer '1' \(RecurrentLIF\) has 10 neurons; expected input rows of shape"
    ):
        lfp_snn.feedback(net, torch.rand(4, 2, 6, dtype=DT), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"recurrent weight must have shape \[3, 3\]"):
        lfp_snn.neurons.recurrent_lif_scan(torch.rand(4, 2, 3), torch.zeros(3, 4))


def test_if_neurons_work_in_all_of_them():
    """β = 1 (integrate-and-fire) is accepted by every neuron and trains."""
    for kind in ("cuba", "adaptive", "recurrent"):
        torch.manual_seed(0)
        m = _neuron(kind, "subtract", True, 0)
        m.beta.fill_(1.0)
        net = SpikingSequential(nn.Linear(6, 10), m, nn.Linear(10, 4), LIF(1.0)).to(DT)
        xs, R = _data()
        fb = lfp_snn.feedback(net, xs * 3, torch.zeros(3, dtype=torch.long), lambda o, y, R=R: R)
        assert fb["0.weight"].abs().max() > 0, kind


@pytest.mark.parametrize(
    "neuron, what",
    [
        (lambda: AdaptiveLIF(backend="native"), "adaptive LIF's"),
        (lambda: RecurrentLIF(10, backend="native"), "recurrent LIF's"),
    ],
)
def test_a_backend_without_kernels_for_the_neuron_is_named(neuron, what):
    net = SpikingSequential(nn.Linear(6, 10), neuron(), nn.Linear(10, 4), LIF()).to(DT)
    xs, R = _data()
    with pytest.raises(
        ValueError, match=rf"layer '1' .* has backend 'native'; the {what} scans exist for the torch"
    ):
        lfp_snn.feedback(net, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R)
    with pytest.raises(ValueError, match=r"the adaptive LIF's scans exist for the torch"):
        lfp_snn.feedback_result(
            _net("adaptive"), xs, torch.zeros(3, dtype=torch.long), lambda o, y: R, backend="native"
        )
