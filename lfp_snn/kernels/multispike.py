"""Torch scans of the multi-spike LIF (sinabs's MultiSpike, rockpool's LIFTorch): several spikes per step.

For step t = 1..T with input current I_t and U_0 the initial membrane (the reset is immediate, by subtraction):

    Ũ_t = β U_{t-1} + I_t;    S_t = n(Ũ_t);    U_t = Ũ_t - θ S_t
    n(v) = floor(v / θ) where v >= θ, else 0; at most ``max_spikes`` (None: no limit)

n fires at v = θ (sinabs: trunc(v/θ) for v > 0; rockpool: (v >= θ) floor(v/θ); the two agree), where the
single-spike LIF needs v > θ. The forward keeps the firing potential V_t = Ũ_t; the feedback recovers
P_t = U_{t-1} = V_{t-1} - θ n(V_{t-1}) (P_1 = U_0) from it and runs the LIF's rule unchanged
(docs/engine.md, "LIF layers"):

    R_t = reward_t + C_{t+1};   D_t = |P_t| + |Ũ_t - P_t|;   g_t = R_t / (D_t + ε);   C_t = β P_t g_t
"""

from __future__ import annotations

import torch
from torch import Tensor

from .torch_scan import NORM_FLOOR, _as_tensor


def spike_count(v: Tensor, threshold: Tensor, max_spikes: int | None) -> Tensor:
    """n(v): floor(v/θ) spikes where v >= θ, else 0, capped at ``max_spikes`` (in v's dtype)."""
    n = torch.where(v >= threshold, torch.floor(v / threshold), torch.zeros_like(v))
    return n if max_spikes is None else n.clamp_(max=float(max_spikes))


def multispike_forward_scan(
    current: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    max_spikes: int | None = None,
    mem0: Tensor | None = None,
    steps: int | None = None,
    spike_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """(spike counts S [T, B, ...], firing potential V = Ũ [T, B, ...]) for the current [T, B, ...] (or [B, ...]
    with ``steps=T``: constant), from the membrane ``mem0`` (zeros when None)."""
    constant = steps is not None
    beta, threshold = _as_tensor(beta, current), _as_tensor(threshold, current)
    T = steps if constant else current.shape[0]
    step_shape = current.shape if constant else current.shape[1:]
    spikes = current.new_empty((T, *step_shape), dtype=spike_dtype)
    pot = current.new_empty((T, *step_shape))
    u = current.new_zeros(step_shape) if mem0 is None else mem0.to(current.dtype).expand(step_shape).clone()
    for t in range(T):
        v = pot[t]
        torch.mul(u, beta, out=v)  # β U_{t-1}
        v.add_(current if constant else current[t])  # Ũ_t
        s = spike_count(v, threshold, max_spikes)
        spikes[t].copy_(s)
        u = v - threshold * s  # U_t
    return spikes, pot


def multispike_membrane(pot: Tensor, threshold: Tensor | float, max_spikes: int | None = None) -> Tensor:
    """U [T, B, ...] after the reset, from the firing potential."""
    threshold = _as_tensor(threshold, pot)
    return pot - threshold * spike_count(pot, threshold, max_spikes)


def multispike_feedback_scan(
    reward: Tensor,
    pot: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    max_spikes: int | None = None,
    mem0: Tensor | None = None,
    eps: float = 1e-6,
    out: Tensor | None = None,
    norm: bool = False,
) -> Tensor:
    """g [T, B, ...] from the reward at the spikes [T, B, ...] and the forward's firing potential (the LIF
    rule, t = T..1; ``norm``: R_t ← R_t / max |R_t| where that exceeds 1e-10). ``out`` may be ``reward``."""
    T = pot.shape[0]
    beta, threshold = _as_tensor(beta, pot), _as_tensor(threshold, pot)
    eps = _as_tensor(eps, pot)
    g = torch.empty_like(pot) if out is None else out
    step_shape = pot.shape[1:]
    u0 = pot.new_zeros(step_shape) if mem0 is None else mem0.to(pot.dtype).expand(step_shape)
    carry = None
    for t in range(T - 1, -1, -1):
        p = u0 if t == 0 else pot[t - 1] - threshold * spike_count(pot[t - 1], threshold, max_spikes)  # P_t
        d = (pot[t] - p).abs_().add_(p.abs()).add_(eps)  # D_t + ε
        r = (reward[t].clone() if norm else reward[t]) if carry is None else carry.add_(reward[t])
        if norm:
            m = r.abs().amax()
            r.div_(torch.where(m > NORM_FLOOR, m, torch.ones_like(m)))
        torch.div(r, d, out=g[t])
        carry = (beta * p).mul_(g[t])  # C_t = β P_t g_t
    return g
