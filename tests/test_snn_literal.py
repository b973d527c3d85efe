"""A literal, step-by-step SNN: the second opinion for the multi-step engine (docs/engine.md, "LIF layers").

Forward: for t = 1..T, for every layer in order: Linear/Conv on this step's input, then the LIF update of
that layer in the documented dynamics (lfp_snn/neurons/lif.py docstring). Backward: for t = T..1 and, within
a step, from the last layer to the first, with one carry C per LIF layer:

    R_t = (reward arriving at S_t) + C_{t+1};   P_t = U_{t-1} (zero reset with delay: U_{t-1} (1 - reset_t))
    Ũ_t = β P_t + I_t;   D_t = |P_t| + |Ũ_t - P_t|;   g_t = R_t / (D_t + ε);   C_t = β P_t g_t

(for subtract + delay D_t = |U_{t-1}| + |U_t + θ reset_t - U_{t-1}|, the reference's form). The parametric
layer below then takes g_t: ε: F_W += |W| ⊙ (∂I_t/∂W)ᵀ g_t, reward to X_t = X_t ⊙ (∂I_t/∂X_t)ᵀ g_t;
other rules (z⁺z⁻ here) get the reward at the current R^I_t = I_t ⊙ g_t and apply their own equations
with z = I_t. Vector-Jacobian products come from torch.func on F.linear/F.conv2d, one step at a time; no
lfp_snn scan or layer code is used.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vjp

import lfp_snn
from lfp_snn import LIF, SpikingSequential

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


EPS = 1e-6


def _stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _affine(m: nn.Module):
    if isinstance(m, nn.Linear):
        return lambda x, w, b: F.linear(x, w, b)
    return lambda x, w, b: F.conv2d(x, w, b, m.stride, m.padding, m.dilation, m.groups)


def _vjps(m, x, w, b, g):
    """((∂f/∂x)ᵀ g, (∂f/∂w)ᵀ g, (∂f/∂b)ᵀ g) for f = the layer's affine map at (x, w, b)."""
    f = _affine(m)
    if b is None:
        _, pull = vjp(lambda x_, w_: f(x_, w_, None), x, w)
        gx, gw = pull(g)
        return gx, gw, None
    _, pull = vjp(f, x, w, b)
    return pull(g)


def _lif_step(u_prev, i_t, beta, thr, reset, delay):
    """One documented LIF step. Returns (spikes, U_t, P_t, Ũ_t)."""
    if delay:
        fired = (u_prev > thr).to(DT)  # reset_t = H(U_{t-1} - θ)
        p = u_prev if reset == "subtract" else u_prev * (1 - fired)
        pre = beta * p + i_t
        u = pre - thr * fired if reset == "subtract" else pre
        s = (u > thr).to(DT)
    else:
        p = u_prev
        pre = beta * p + i_t
        s = (pre > thr).to(DT)
        u = pre - thr * s if reset == "subtract" else pre * (1 - s)
    return s, u, p, pre


def literal_snn(
    model: nn.Sequential, xs: torch.Tensor, reward_fn, rule: str, eps: float = EPS, norm: bool = False
):
    """xs: [T, B, ...]. Returns (output spikes [T, B, C], hidden spikes per LIF layer, feedback, input reward
    [T, B, ...], the reward at the output). ``norm``: the max-abs normalisation, R_t ← R_t / max|R_t| (over
    the batch and the layer's neurons, where that exceeds 1e-10) at every LIF layer and step."""
    layers = list(model.named_children())
    T = xs.shape[0]
    store = [dict(x=[], i=[], p=[], pre=[], u=[], s=[], idx=[], shape=None) for _ in layers]
    state = {k: None for k, (_, m) in enumerate(layers) if isinstance(m, LIF)}
    outs = []
    # ---------------- forward: step by step, layer by layer
    for t in range(T):
        a = xs[t]
        for k, (_, m) in enumerate(layers):
            st = store[k]
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                st["x"].append(a)
                a = _affine(m)(
                    a, m.weight.detach().to(DT), None if m.bias is None else m.bias.detach().to(DT)
                )
                st["i"].append(a)
            elif isinstance(m, LIF):
                u_prev = torch.zeros_like(a) if state[k] is None else state[k]
                beta, thr = m.beta.to(DT), m.threshold.to(DT)
                s, u, p, pre = _lif_step(u_prev, a, beta, thr, m.reset, m.reset_delay)
                state[k] = u
                for key, v in (("p", p), ("pre", pre), ("u", u), ("s", s)):
                    st[key].append(v)
                a = s
            elif isinstance(m, nn.MaxPool2d):
                st["shape"] = a.shape
                a, idx = F.max_pool2d(a, m.kernel_size, m.stride, return_indices=True)
                st["idx"].append(idx)
            elif isinstance(m, nn.Flatten):
                st["shape"] = a.shape
                a = a.reshape(a.shape[0], -1)
            else:
                raise TypeError(type(m))
        outs.append(a)
    out = torch.stack(outs)
    reward = reward_fn(out)
    # ---------------- backward: t = T..1, last layer first, one carry per LIF layer
    carry = {k: torch.zeros_like(store[k]["u"][0]) for k in state}
    fb = {}
    for name, m in layers:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fb[f"{name}.weight"] = torch.zeros_like(m.weight, dtype=DT)
            if m.bias is not None:
                fb[f"{name}.bias"] = torch.zeros_like(m.bias, dtype=DT)
    rin = [None] * T
    for t in range(T - 1, -1, -1):
        r = reward[t]
        g_from_lif = None  # (g_t, I_t) handed from a LIF layer to the parametric layer below it
        for k in range(len(layers) - 1, -1, -1):
            name, m = layers[k]
            st = store[k]
            if isinstance(m, LIF):
                beta = m.beta.to(DT)
                p, pre = st["p"][t], st["pre"][t]
                R = r + carry[k]
                if norm and float(R.abs().max()) > 1e-10:
                    R = R / R.abs().max()
                d = p.abs() + (pre - p).abs()
                if m.reset == "subtract" and m.reset_delay:  # the reference's own expression
                    u_prev = store[k]["u"][t - 1] if t > 0 else torch.zeros_like(p)
                    fired = (u_prev > m.threshold.to(DT)).to(DT)
                    d_ref = u_prev.abs() + (st["u"][t] + m.threshold.to(DT) * fired - u_prev).abs()
                    torch.testing.assert_close(d, d_ref, rtol=1e-12, atol=1e-12)
                g = R / (d + eps)
                carry[k] = beta * p * g
                g_from_lif = g
                r = None
            elif isinstance(m, (nn.Linear, nn.Conv2d)):
                x, i_t = st["x"][t], st["i"][t]
                w = m.weight.detach().to(DT)
                b = None if m.bias is None else m.bias.detach().to(DT)
                assert g_from_lif is not None, "every parametric layer here sits below a LIF layer"
                g = g_from_lif
                if rule == "epsilon":
                    gx, gw, gb = _vjps(m, x, w, b, g)
                    fw, fbias, r = w.abs() * gw, None if b is None else b.abs() * gb, x * gx
                elif rule == "zplus-zminus":
                    R_I = i_t * g  # the reward at the input current
                    wp, wn = w.clamp(min=0), w.clamp(max=0)
                    bp, bn = (None, None) if b is None else (b.clamp(min=0), b.clamp(max=0))
                    f = _affine(m)
                    zp, zn = f(x, wp, bp), f(x, wn, bn)
                    dd = zp.abs() + zn.abs() + eps
                    gp = R_I * (zp.abs() / dd) / _stab(zp, eps)
                    gn = R_I * (zn.abs() / dd) / _stab(zn, eps)
                    gxp, gwp, gbp = _vjps(m, x, wp, bp, gp)
                    gxn, gwn, gbn = _vjps(m, x, wn, bn, gn)
                    fw = wp.abs() * gwp - wn.abs() * gwn
                    fbias = None if b is None else bp.abs() * gbp - bn.abs() * gbn
                    r = x * (gxp + gxn)
                else:
                    raise ValueError(rule)
                fb[f"{name}.weight"] += fw
                if fbias is not None:
                    fb[f"{name}.bias"] += fbias
                g_from_lif = None
            elif isinstance(m, nn.MaxPool2d):
                shape, idx = st["shape"], st["idx"][t]
                full = torch.zeros(shape[0], shape[1], shape[2] * shape[3], dtype=DT)
                full.scatter_add_(2, idx.flatten(2), r.flatten(2))
                r = full.reshape(shape)
            elif isinstance(m, nn.Flatten):
                r = r.reshape(st["shape"])
        rin[t] = r
    hidden = {layers[k][0]: torch.stack(store[k]["s"]) for k in state}
    return out, hidden, fb, torch.stack(rin), reward


# ------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------


def _lif(reset, delay, beta=0.85, thr=1.0):
    return LIF(beta, thr, reset, delay)


def mlp_snn(reset, delay):
    torch.manual_seed(21)
    m = SpikingSequential(nn.Linear(12, 10), _lif(reset, delay), nn.Linear(10, 4), _lif(reset, delay, 0.7))
    return _scaled(m)


def conv_snn(reset, delay):
    torch.manual_seed(22)
    m = SpikingSequential(
        nn.Conv2d(1, 3, 3),
        _lif(reset, delay),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 4),
        _lif(reset, delay, 0.9, 0.8),
    )
    return _scaled(m)


def _scaled(m):
    m = m.to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)  # so that every layer spikes
    return m


MODELS = {"mlp": (mlp_snn, (12,)), "conv": (conv_snn, (1, 6, 6))}
T, B = 6, 3


def _inputs(kind, sample_shape, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, *sample_shape, generator=g, dtype=DT)
    if kind == "constant":
        return x.unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(x.unsqueeze(0).expand(T, *x.shape).contiguous(), generator=g)  # rate-encoded


def _assert_close(got, want, what, tol=1e-10):
    assert got.shape == want.shape, f"{what}: {tuple(got.shape)} != {tuple(want.shape)}"
    scale = max(1.0, float(want.abs().max()))
    err = float((got - want).abs().max())
    assert err <= tol * scale, f"{what}: max error {err:.3e}"


LABELS = torch.tensor([0, 1, 3])


@pytest.mark.parametrize("inp", ["constant", "rate"])
@pytest.mark.parametrize("delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
@pytest.mark.parametrize("arch", list(MODELS))
def test_snn_matches_step_by_step_literal(arch, rule, reset, delay, inp):
    build, sample_shape = MODELS[arch]
    model = build(reset, delay)
    xs = _inputs(inp, sample_shape)
    g = torch.Generator().manual_seed(7)
    dense = torch.randn(T, B, 4, generator=g, dtype=DT)

    def reward_fn(out, labels=LABELS):  # the sequence reward plus a dense part that reaches silent steps
        return lfp_snn.sequence_reward(out, labels) + 0.3 * dense

    out, hidden, fb_lit, rin_lit, r_lit = literal_snn(model, xs, reward_fn, rule)
    # the layers spike, but not always
    for name, s in {**hidden, "out": out}.items():
        rate = float(s.mean())
        assert 0.02 < rate < 0.98, f"layer {name} spike rate {rate:.3f}: adjust the weights"

    res = lfp_snn.feedback_result(model, xs, LABELS, lambda o, y: reward_fn(o, y), rule, input_reward=True)
    assert torch.equal(res.output, out), "output spikes differ"
    for name, s in hidden.items():
        assert torch.equal(res.spike_counts[name].to(DT), s.sum((0, 1))), f"spike counts of layer {name}"
        upto = [n for n, _ in model.named_children()].index(name) + 1
        assert torch.equal(lfp_snn.run(model[:upto], xs), s), f"spikes of layer {name}"
    assert torch.equal(lfp_snn.run(model, xs), out)
    _assert_close(res.reward, r_lit, "reward", 0)
    assert set(res.feedback) == set(fb_lit)
    for name, want in fb_lit.items():
        assert float(want.abs().max()) > 0, f"{name}: literal feedback is zero, test is vacuous"
        _assert_close(res.feedback[name], want, f"feedback {name}")
    # reward at the input: per step for a time-varying input, summed over time for a constant one
    rin = res.input_reward
    if inp == "constant":
        _assert_close(rin.reshape(B, *sample_shape), rin_lit.sum(0), "input reward (Σ_t)")
    else:
        _assert_close(rin.reshape(T, B, *sample_shape), rin_lit, "input reward")


def test_literal_snn_tells_resets_apart():
    """Subtract with and without delay and zero reset give different feedback, so the comparison above can
    tell them apart. Zero reset with and without delay are the same dynamics for spikes and feedback
    (V_t = β V_{t-1} (1 - S_{t-1}) + I_t in both; only the reported membrane differs), in both
    implementations."""
    build, shape = MODELS["mlp"]
    xs = _inputs("constant", shape)
    lit, fast = {}, {}
    for reset in ("subtract", "zero"):
        for delay in (True, False):
            model = build(reset, delay)
            _, _, fb, _, _ = literal_snn(model, xs, lambda o: lfp_snn.sequence_reward(o, LABELS), "epsilon")
            lit[reset, delay] = fb["0.weight"]
            fast[reset, delay] = lfp_snn.feedback(model, xs, LABELS, "sequence")["0.weight"]
    distinct = [("subtract", True), ("subtract", False), ("zero", True)]
    for i, a in enumerate(distinct):
        for b in distinct[i + 1 :]:
            assert float((lit[a] - lit[b]).abs().max()) > 1e-6, (a, b)
    assert torch.equal(lit["zero", True], lit["zero", False])
    _assert_close(fast["zero", True], fast["zero", False], "zero reset, delay vs no delay")


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
def test_constant_input_forms_agree(arch, rule):
    """A constant input as steps=T with [B, ...], as x.expand(T, ...) (stride-0 view) and as a materialised
    x.repeat(T, ...) gives the same output, spike counts and feedback."""
    build, sample_shape = MODELS[arch]
    model = build("subtract", True)
    x = torch.rand(B, *sample_shape, generator=torch.Generator().manual_seed(3), dtype=DT)
    expanded = x.unsqueeze(0).expand(T, *x.shape)
    repeated = x.unsqueeze(0).repeat(T, *([1] * x.dim()))
    assert expanded.stride(0) == 0 and repeated.stride(0) != 0
    kw = dict(reward="sequence", rule=rule)
    a = lfp_snn.feedback_result(model, x, LABELS, steps=T, **kw)
    b = lfp_snn.feedback_result(model, expanded, LABELS, **kw)
    c = lfp_snn.feedback_result(model, repeated, LABELS, **kw)
    for other in (b, c):
        assert torch.equal(other.output, a.output)
        for name in a.spike_counts:
            assert torch.equal(other.spike_counts[name], a.spike_counts[name])
        for name, f in a.feedback.items():
            _assert_close(other.feedback[name], f, f"feedback {name}")
    assert float(a.output.mean()) > 0
