"""Plain-torch reference scans for the LIF neuron: the forward membrane scan and the reverse feedback scan.

Both run an element-wise loop over the time axis of [T, B, ...] tensors. They are the reference the Triton
kernels (`lfp_snn.kernels.triton_scan`) are tested against, and the CPU default.

Notation (DESIGN.md section 1). For step t = 1..T with input current I_t and U_0 the initial membrane:

    reset_t = H(U_{t-1} - θ)          (reset_delay=True; 0 otherwise)
    P_t     = U_{t-1}                 (subtract),  U_{t-1} (1 - reset_t)   (zero)     "previous membrane"
    Ũ_t     = β P_t + I_t                                                  "membrane before the reset"
    delayed reset:   U_t = Ũ_t - θ reset_t (subtract)  or  Ũ_t (zero);      S_t = H(U_t - θ)
    immediate reset: S_t = H(Ũ_t - θ);  U_t = Ũ_t - θ S_t (subtract)  or  Ũ_t (1 - S_t) (zero)

H is the Heaviside step with a strict inequality (H(0) = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

RESETS = ("subtract", "zero")


def _current_at(current: Tensor, t: int, constant: bool) -> Tensor:
    return current if constant else current[t]


def lif_forward_scan(
    current: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    steps: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the LIF membrane over time.

    Args:
        current: input current I, [T, B, ...]; or [B, ...] together with ``steps=T`` for a constant current.
        beta, threshold: scalars or tensors broadcastable to one step's shape [B, ...].
        mem0: initial membrane U_0, [B, ...] (zeros when None).
    Returns:
        spikes S [T, B, ...] (0./1. in the current's dtype) and membrane U [T, B, ...] (after the reset).
    """
    constant = steps is not None
    T = steps if constant else current.shape[0]
    step_shape = current.shape if constant else current.shape[1:]
    spikes = current.new_empty((T, *step_shape))
    mem = current.new_empty((T, *step_shape))
    u = current.new_zeros(step_shape) if mem0 is None else mem0.to(current.dtype)
    subtract = reset == "subtract"
    for t in range(T):
        i_t = _current_at(current, t, constant)
        if reset_delay:
            fired = u > threshold
            if subtract:
                u = beta * u + i_t - threshold * fired.to(u.dtype)
            else:
                u = beta * torch.where(fired, torch.zeros_like(u), u) + i_t
            s = u > threshold
        else:
            u = beta * u + i_t
            s = u > threshold
            u = u - threshold * s.to(u.dtype) if subtract else torch.where(s, torch.zeros_like(u), u)
        spikes[t] = s
        mem[t] = u
    return spikes, mem


def lif_feedback_scan(
    reward: Tensor,
    current: Tensor,
    mem: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Reverse scan of LFP-ε through a LIF layer (the reference rule), t = T..1.

        R_t = reward_t + C_{t+1}  (C_{T+1} = 0);   D_t = |P_t| + |Ũ_t - P_t|;   g_t = R_t / (D_t + ε);
        C_t = β P_t g_t           (the membrane's share, handed to step t-1)

    For subtract + delayed reset, D_t = |U_{t-1}| + |U_t + θ reset_t - U_{t-1}| as in the reference.

    Args:
        reward: reward arriving at the spikes S, [T, B, ...].
        current: the input current, [T, B, ...] or a constant [B, ...].
        mem: the membrane U from :func:`lif_forward_scan`, [T, B, ...].
    Returns:
        g [T, B, ...]: the normalised reward at the input current; the layer below takes it as
        ``R_in = X ⊙ (∂I/∂X)ᵀ g`` and ``F_W = |W| ⊙ (∂I/∂W)ᵀ g``.
    """
    T = mem.shape[0]
    prev = torch.empty_like(mem)
    prev[0] = 0 if mem0 is None else mem0
    prev[1:] = mem[:-1]
    if reset_delay and reset == "zero":
        prev = torch.where(prev > threshold, torch.zeros_like(prev), prev)
    carried = beta * prev
    pre_reset = carried + current  # Ũ_t (current broadcasts over T when constant)
    inv_d = 1.0 / (prev.abs() + (pre_reset - prev).abs() + eps)
    del pre_reset
    share = carried * inv_d  # C_t = share_t * R_t
    g = torch.empty_like(mem)
    carry = None
    for t in range(T - 1, -1, -1):
        r_t = reward[t] if carry is None else reward[t] + carry
        g[t] = r_t * inv_d[t]
        carry = r_t * share[t]
    return g
