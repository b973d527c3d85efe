"""Scans of the recurrent LIF neuron, torch reference: the recurrent product V S_{t-1} makes every step wait for
the one before, so both scans loop over t with one [B, N] x [N, N] product per step (the feed-forward current
W x_t + b of all steps comes in as one GEMM from the layer below).

Forward, t = 1..T:   X_t = I_t + V S_{t-1}  (I_t = W x_t + b, S_0 given, zero by default), then the LIF update
of lfp_snn.kernels.torch_scan with X_t as its current (every reset mode).

Feedback, t = T..1 (the LFP rule, docs/neurons.md): the LIF rule with one more reward at S_t, the one its
spikes earn through V at the next step (the ε rule of the recurrent product, whose input is S_{t-1}):

    R_t = (reward at S_t) + C_{t+1} + Q_{t+1};   g_t = R_t / (D_t + ε);   C_t = β P_t g_t;
    Q_t = S_{t-1} ⊙ (g_t V)
    F_V = |V| ⊙ Σ_t g_tᵀ S_{t-1}  (one GEMM over all steps)

The layer below takes g_t (I_t's share, as for the LIF).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as(v, like: Tensor) -> Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def recurrent_forward_scan(
    current: Tensor,
    weight: Tensor,
    beta,
    threshold,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    spike0: Tensor | None = None,
    steps: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(spikes S, firing potential V), [T, B, N]; ``current`` [T, B, N] (or [B, N] with ``steps=T``), ``weight``
    the recurrent V [N, N] (row j: the weights into neuron j)."""
    beta, thr = _as(beta, current), _as(threshold, current)
    constant = steps is not None
    T = steps if constant else current.shape[0]
    shape = current.shape if constant else current.shape[1:]
    spikes = current.new_empty((T, *shape))
    pot = current.new_empty((T, *shape))
    u = current.new_zeros(shape) if mem0 is None else mem0.to(current.dtype).expand(shape).clone()
    s_prev = current.new_zeros(shape) if spike0 is None else spike0.to(current.dtype).expand(shape)
    w_t = weight.to(current.dtype).T
    subtract = reset == "subtract"
    for t in range(T):
        x = current if constant else current[t]
        x = torch.addmm(x, s_prev, w_t)  # X_t = I_t + V S_{t-1}
        if reset_delay:
            fired = (u > thr).to(current.dtype)  # reset_t = H(U_{t-1} - θ)
            v = (u * beta).add_(x).sub_(thr * fired) if subtract else (u * beta).mul_(1 - fired).add_(x)
            s = (v > thr).to(current.dtype)
            u = v
        else:
            v = (u * beta).add_(x)
            s = (v > thr).to(current.dtype)
            u = v - thr * s if subtract else v * (1 - s)
        spikes[t], pot[t] = s, v
        s_prev = s
    return spikes, pot


def recurrent_feedback_scan(
    reward: Tensor,
    pot: Tensor,
    spikes: Tensor,
    weight: Tensor,
    beta,
    threshold,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    spike0: Tensor | None = None,
    eps: float = 1e-6,
    carry: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(g [T, B, N], Σ_t g_tᵀ S_{t-1} [N, N], C_1 + Q_1): the reverse scan above. ``carry`` (C + Q from a
    later stretch) joins the reward at the last step; the returned carry is the reward the first step hands
    to the stretch before (at its last step's spikes)."""
    beta, thr = _as(beta, pot), _as(threshold, pot)
    eps_t = _as(eps, pot)
    T = pot.shape[0]
    shape = pot.shape[1:]
    w = weight.to(pot.dtype)
    subtract = reset == "subtract"
    zeros = pot.new_zeros(shape)
    u0 = zeros if mem0 is None else mem0.to(pot.dtype).expand(shape)
    s0 = zeros if spike0 is None else spike0.to(pot.dtype).expand(shape)
    g = torch.empty_like(pot)
    c = None if carry is None else carry.clone()
    for t in range(T - 1, -1, -1):
        s_prev = spikes[t - 1].to(pot.dtype) if t > 0 else s0
        if t > 0:
            v_prev = pot[t - 1]
            if reset_delay:
                u_prev = v_prev
            elif subtract:
                u_prev = v_prev - thr * s_prev
            else:
                u_prev = v_prev * (1 - s_prev)
        else:
            u_prev = u0
        if reset_delay:
            fired = (u_prev > thr).to(pot.dtype)  # reset_t
            p = u_prev if subtract else u_prev * (1 - fired)
            d = pot[t] - p
            if subtract:
                d = d + fired * thr
        else:
            p = u_prev
            d = pot[t] - p
        r = reward[t] if c is None else reward[t] + c
        g[t] = r / (d.abs() + p.abs() + eps_t)
        c = (p * beta).mul_(g[t]).add_(s_prev * (g[t] @ w))  # C_t + Q_t, both for step t-1
    fv = g[1:].reshape(-1, shape[-1]).T @ spikes[:-1].to(pot.dtype).reshape(-1, shape[-1]) if T > 1 else None
    if spike0 is not None:
        first = g[0].reshape(-1, shape[-1]).T @ s0.reshape(-1, shape[-1])
        fv = first if fv is None else fv + first
    if fv is None:
        fv = pot.new_zeros(w.shape)
    return g, fv, c
