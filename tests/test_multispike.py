"""The multi-spike LIF (sinabs's MultiSpike, rockpool's LIFTorch) against a literal step-by-step SNN in float64.

Literal forward, for t = 1..T and every layer in order (lfp_snn/neurons/multispike.py):

    Ũ_t = β U_{t-1} + I_t;   S_t = floor(Ũ_t / θ) where Ũ_t >= θ, else 0 (at most max_spikes);   U_t = Ũ_t - θ S_t

Literal backward, t = T..1, last layer first, one carry per neuron layer (the LIF's rule with P_t = U_{t-1}):

    R_t = (reward at S_t) + C_{t+1};  D_t = |P_t| + |Ũ_t - P_t|;  g_t = R_t / (D_t + ε);  C_t = β P_t g_t

then ε (F_W += |W| ⊙ (∂I_t/∂W)ᵀ g_t, reward to X_t = X_t ⊙ (∂I_t/∂X_t)ᵀ g_t) or z⁺z⁻ (on R^I_t = I_t ⊙ g_t) in the
Linear layer below. No lfp_snn scan or layer code is used; the engine's fast path must match.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_snn_literal import _assert_close, _stab, _vjps
from torch import nn

import lfp_snn
from lfp_snn import LIF, MultiSpikeLIF, SpikingSequential

DT = torch.float64
EPS = 1e-6
T, B = 7, 3
LABELS = torch.tensor([0, 1, 3])

pytestmark = pytest.mark.usefixtures("one_thread")


def model(max_spikes=None, scale=4.0):
    torch.manual_seed(31)
    m = SpikingSequential(
        nn.Linear(12, 10),
        MultiSpikeLIF(0.85, 1.0, max_spikes),
        nn.Linear(10, 4),
        MultiSpikeLIF(0.7, 0.8, max_spikes),
    ).to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def literal(m, xs, reward_fn, rule):
    layers = list(m.children())
    store = [dict(x=[], i=[], p=[], pre=[], s=[]) for _ in layers]
    state: dict[int, torch.Tensor] = {}
    outs = []
    for t in range(T):
        a = xs[t]
        for k, layer in enumerate(layers):
            st = store[k]
            if isinstance(layer, nn.Linear):
                st["x"].append(a)
                a = F.linear(a, layer.weight.detach(), layer.bias.detach())
                st["i"].append(a)
            else:
                beta, thr = layer.beta.to(DT), layer.threshold.to(DT)
                u_prev = state.get(k, torch.zeros_like(a))
                pre = beta * u_prev + a
                s = torch.where(pre >= thr, torch.floor(pre / thr), torch.zeros_like(pre))
                if layer.max_spikes is not None:
                    s = torch.clamp(s, max=layer.max_spikes)
                state[k] = pre - thr * s
                st["p"].append(u_prev)
                st["pre"].append(pre)
                st["s"].append(s)
                a = s
        outs.append(a)
    out = torch.stack(outs)
    reward = reward_fn(out)
    fb = {}
    for k, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            fb[f"{k}.weight"] = torch.zeros_like(layer.weight)
            fb[f"{k}.bias"] = torch.zeros_like(layer.bias)
    carry = {k: 0.0 for k, layer in enumerate(layers) if isinstance(layer, MultiSpikeLIF)}
    rin = [None] * T
    for t in range(T - 1, -1, -1):
        r, g = reward[t], None
        for k in range(len(layers) - 1, -1, -1):
            layer, st = layers[k], store[k]
            if isinstance(layer, MultiSpikeLIF):
                beta = layer.beta.to(DT)
                p, pre = st["p"][t], st["pre"][t]
                R = r + carry[k]
                g = R / (p.abs() + (pre - p).abs() + EPS)
                carry[k] = beta * p * g
            else:
                x, i_t = st["x"][t], st["i"][t]
                w, b = layer.weight.detach(), layer.bias.detach()
                if rule == "epsilon":
                    gx, gw, gb = _vjps(layer, x, w, b, g)
                    fw, fbias, r = w.abs() * gw, b.abs() * gb, x * gx
                else:  # zplus-zminus on the reward at the current
                    R_I = i_t * g
                    wp, wn, bp, bn = w.clamp(min=0), w.clamp(max=0), b.clamp(min=0), b.clamp(max=0)
                    zp, zn = F.linear(x, wp, bp), F.linear(x, wn, bn)
                    dd = zp.abs() + zn.abs() + EPS
                    gp = R_I * (zp.abs() / dd) / _stab(zp, EPS)
                    gn = R_I * (zn.abs() / dd) / _stab(zn, EPS)
                    gxp, gwp, gbp = _vjps(layer, x, wp, bp, gp)
                    gxn, gwn, gbn = _vjps(layer, x, wn, bn, gn)
                    fw, fbias = wp.abs() * gwp - wn.abs() * gwn, bp.abs() * gbp - bn.abs() * gbn
                    r = x * (gxp + gxn)
                fb[f"{k}.weight"] += fw
                fb[f"{k}.bias"] += fbias
        rin[t] = r
    hidden = torch.stack(store[1]["s"])
    return out, hidden, fb, torch.stack(rin)


def inputs(kind, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, 12, generator=g, dtype=DT)
    if kind == "constant":
        return x.unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(x.unsqueeze(0).expand(T, *x.shape).contiguous(), generator=g)


@pytest.mark.parametrize("max_spikes", [None, 2])
@pytest.mark.parametrize("inp", ["constant", "rate"])
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
def test_multispike_matches_the_literal_snn(rule, inp, max_spikes):
    m = model(max_spikes)
    xs = inputs(inp)
    dense = torch.randn(T, B, 4, generator=torch.Generator().manual_seed(7), dtype=DT)

    def reward_fn(out, labels=LABELS):
        return lfp_snn.sequence_reward(out, labels) + 0.3 * dense

    out, hidden, fb_lit, rin_lit = literal(m, xs, reward_fn, rule)
    assert float(hidden.max()) >= 2 and float(out.max()) >= 2, (
        "no step with several spikes: the test is vacuous"
    )
    assert 0.05 < float((hidden > 0).to(DT).mean()) < 0.95
    if max_spikes is not None:
        assert float(hidden.max()) == max_spikes
    res = lfp_snn.feedback_result(m, xs, LABELS, lambda o, y: reward_fn(o, y), rule, input_reward=True)
    assert torch.equal(res.output, out) and torch.equal(lfp_snn.run(m, xs), out)
    assert torch.equal(lfp_snn.run(m[:2], xs), hidden)
    assert torch.equal(res.spike_counts["1"].to(DT), hidden.sum((0, 1)))
    for name, want in fb_lit.items():
        assert float(want.abs().max()) > 0, name
        _assert_close(res.feedback[name], want, f"feedback {name}")
    rin = res.input_reward
    if inp == "constant":
        _assert_close(rin.reshape(B, 12), rin_lit.sum(0), "input reward (Σ_t)")
    else:
        _assert_close(rin.reshape(T, B, 12), rin_lit, "input reward")
    # stretches of time carry the membrane and its share across the boundary: the same feedback
    chunked = lfp_snn.feedback_result(m, xs, LABELS, lambda o, y: reward_fn(o, y), rule, time_chunk=3)
    assert torch.equal(chunked.output, out)
    for name, want in fb_lit.items():
        _assert_close(chunked.feedback[name], want, f"time_chunk feedback {name}")


def test_multispike_differs_from_the_single_spike_lif_only_where_it_fires_twice():
    m = model()
    single = SpikingSequential(
        m[0], LIF(0.85, 1.0, "subtract", False), m[2], LIF(0.7, 0.8, "subtract", False)
    )
    xs = inputs("rate")
    h_multi, h_single = lfp_snn.run(m[:2], xs), lfp_snn.run(single[:2], xs)
    assert float(h_multi.max()) >= 2 and not torch.equal(h_multi, h_single)
    low = model(scale=0.9)  # weak enough never to pass 2θ: the same spikes as the single-spike neuron
    low_single = SpikingSequential(
        low[0], LIF(0.85, 1.0, "subtract", False), low[2], LIF(0.7, 0.8, "subtract", False)
    )
    assert float(lfp_snn.run(low, xs).max()) <= 1 and torch.equal(
        lfp_snn.run(low, xs), lfp_snn.run(low_single, xs)
    )


def test_multispike_module_checks_and_scan():
    with pytest.raises(ValueError, match="max_spikes must be None"):
        MultiSpikeLIF(0.9, 1.0, 0)
    with pytest.raises(ValueError, match="beta must lie in"):
        MultiSpikeLIF(1.5)
    n = MultiSpikeLIF(0.5, 1.0)
    s, u, st = n.scan(torch.tensor([[3.5], [0.0], [0.2]]).unsqueeze(1))
    # Ũ = 3.5 -> 3 spikes, U = 0.5; Ũ = 0.25 -> 0, U = 0.25; Ũ = 0.325 -> 0
    assert s.flatten().tolist() == [3.0, 0.0, 0.0]
    assert u.flatten().tolist() == pytest.approx([0.5, 0.25, 0.325])
    assert float(n(torch.full((1, 1, 1), 1.0))) == 1.0  # fires at Ũ = θ (sinabs, rockpool), unlike the LIF
    with pytest.raises(ValueError, match="backend 'native'"):
        lfp_snn.feedback_result(model(), inputs("rate"), LABELS, "sequence", backend="native")
