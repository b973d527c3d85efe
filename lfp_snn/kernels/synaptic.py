"""Scans of the synaptic current of a current-based LIF neuron (CubaLIF), torch reference.

Forward, t = 1..T:   I_t = α I_{t-1} + X_t        (I_0 given, zero by default)

Feedback (the LFP rule of the synaptic stage, docs/neurons.md). The membrane's reverse scan hands g^U_t, the
reward per unit of I_t (the reward at I_t is I_t g^U_t). With the carry C_{t+1} from the next step:

    g^I_t = g^U_t + C_{t+1} / stabilize(I_t);     C_t = α I_{t-1} g^I_t        (C_{T+1} given, zero by default)

so the reward at I_t, I_t g^U_t + C_{t+1}, goes to its two contributions in proportion: α I_{t-1} g^I_t back
in time, X_t g^I_t to the layer below (which takes g^I itself, as the reference's LIF rule hands g to it).
With α = 0 there is no carry and g^I = g^U exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as(v, like: Tensor) -> Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def synaptic_forward_scan(
    x: Tensor, alpha, syn0: Tensor | None = None, steps: int | None = None, out: Tensor | None = None
) -> Tensor:
    """I [T, B, ...] from X [T, B, ...] (or a constant [B, ...] X with ``steps=T``); ``out`` may be ``x``."""
    alpha = _as(alpha, x)
    constant = steps is not None
    T = steps if constant else x.shape[0]
    shape = x.shape if constant else x.shape[1:]
    syn = x.new_empty((T, *shape)) if out is None else out
    prev = None if syn0 is None else syn0.to(x.dtype).expand(shape)
    for t in range(T):
        xt = x if constant else x[t]
        if prev is None:
            syn[t].copy_(xt)
        else:
            torch.addcmul(xt, prev, alpha, out=syn[t])
        prev = syn[t]
    return syn


def synaptic_feedback_scan(
    g_mem: Tensor,
    syn: Tensor,
    alpha,
    syn0: Tensor | None = None,
    eps: float = 1e-6,
    carry: Tensor | None = None,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """(g^I [T, B, ...], C_1): the reverse scan above from g^U and the kept currents I. ``carry`` is C_{T+1}
    (from a later stretch of time); ``out`` may be ``g_mem``. C_1 = α I_0 g^I_1 is None when I_0 is zero."""
    alpha = _as(alpha, syn)
    eps_t = _as(eps, syn)
    T = syn.shape[0]
    g = torch.empty_like(g_mem) if out is None else out
    c = carry
    for t in range(T - 1, -1, -1):
        if c is None:
            if g is not g_mem:
                g[t].copy_(g_mem[t])
        else:
            s = syn[t]
            stab = s + eps_t * torch.where(s >= 0, 1.0, -1.0).to(s.dtype) if eps != 0 else s
            torch.add(g_mem[t], c / stab, out=g[t])
        prev = syn[t - 1] if t > 0 else syn0
        c = None if prev is None else (prev.to(syn.dtype) * alpha).mul_(g[t])
    return g, c
