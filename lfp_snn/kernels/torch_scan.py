"""Plain-torch reference scans for the LIF neuron: the forward membrane scan and the reverse feedback scan.

Both loop over the time axis of [T, B, ...] tensors with in-place element-wise operations on one step at a
time, so no [T, B, ...] temporaries are made besides the outputs. They are the reference that the Triton
kernels (``lfp_snn.kernels.triton_scan``) are tested against, and the CPU default.

Notation (docs/engine.md, "LIF layers"). For step t = 1..T with input current I_t and U_0 the initial membrane:

    reset_t = H(U_{t-1} - θ)          (reset_delay=True; 0 otherwise)
    P_t     = U_{t-1}                 (subtract),  U_{t-1} (1 - reset_t)   (zero)     "previous membrane"
    Ũ_t     = β P_t + I_t                                                  "membrane before the reset"
    delayed reset:   U_t = Ũ_t - θ reset_t (subtract)  or  Ũ_t (zero);      S_t = H(U_t - θ)
    immediate reset: S_t = H(Ũ_t - θ);  U_t = Ũ_t - θ S_t (subtract)  or  Ũ_t (1 - S_t) (zero)

H is the Heaviside step with a strict inequality (H(0) = 0).

What the forward keeps for the feedback is the *firing potential* V_t, the value compared with θ:
V_t = U_t with a delayed reset, V_t = Ũ_t with an immediate one. From V (and S_t = H(V_t - θ)) the feedback
recovers every quantity it needs exactly as the forward computed it, without the input current:

    delayed, subtract:    P_t = V_{t-1},               Ũ_t - P_t = V_t + θ S_{t-1} - V_{t-1}
    delayed, zero:        P_t = V_{t-1} (1 - S_{t-1}), Ũ_t - P_t = V_t - P_t
    immediate, subtract:  P_t = V_{t-1} - θ S_{t-1},   Ũ_t - P_t = V_t - P_t
    immediate, zero:      P_t = V_{t-1} (1 - S_{t-1}), Ũ_t - P_t = V_t - P_t

(with V_0 = U_0 and S_0 = H(U_0 - θ) for the delayed reset, S_0 = 0 for the immediate one).
"""

from __future__ import annotations

import torch
from torch import Tensor

RESETS = ("subtract", "zero")
CHUNK_ELEMENTS = 1 << 18  # feedback scan: elements per chunk of steps processed together


def _as_tensor(v: Tensor | float, like: Tensor) -> Tensor:
    # comparisons and products with a Python scalar can take a slow path in torch's CPU kernels, so scalars
    # become 0-d tensors of the data's dtype
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def lif_forward_scan(
    current: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    steps: int | None = None,
    out: Tensor | None = None,
    spike_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the LIF membrane over time.

    Args:
        current: input current I, [T, B, ...]; or [B, ...] together with ``steps=T`` for a constant current.
        beta, threshold: scalars or tensors broadcastable to one step's shape [B, ...].
        mem0: initial membrane U_0, [B, ...] (zeros when None).
        out: where to write the firing potential; may be ``current`` itself (each step reads its current
            before writing), which saves a [T, B, ...] buffer.
        spike_dtype: dtype of the returned spikes (default the current's; ``torch.uint8`` keeps them compact).
    Returns:
        spikes S [T, B, ...] (0./1. in the current's dtype) and the firing potential V [T, B, ...]
        (the membrane U_t with a delayed reset, the pre-reset membrane Ũ_t with an immediate one; see
        :func:`membrane` for U).
    """
    constant = steps is not None
    beta, threshold = _as_tensor(beta, current), _as_tensor(threshold, current)
    T = steps if constant else current.shape[0]
    step_shape = current.shape if constant else current.shape[1:]
    compact = spike_dtype is not None and spike_dtype != current.dtype
    spikes = current.new_empty((T, *step_shape), dtype=spike_dtype)
    pot = current.new_empty((T, *step_shape)) if out is None else out
    step_spikes = [current.new_empty(step_shape), current.new_empty(step_shape)] if compact else None
    prev = current.new_zeros(step_shape) if mem0 is None else mem0.to(current.dtype).expand(step_shape)
    prev_spike = (prev > threshold).to(current.dtype) if reset_delay else None  # reset_1 = H(U_0 - θ)
    subtract = reset == "subtract"
    carried = current.new_empty(step_shape)
    u = current.new_empty(step_shape) if not reset_delay else None
    for t in range(T):
        v = pot[t]
        s = step_spikes[t % 2] if compact else spikes[t]
        torch.mul(prev, beta, out=carried)  # β U_{t-1}
        if reset_delay and not subtract:
            carried.addcmul_(carried, prev_spike, value=-1)  # β U_{t-1} (1 - reset_t)
        if constant:
            torch.add(carried, current, out=v)
        else:
            if out is not current:
                v.copy_(current[t])
            v.add_(carried)
        if reset_delay and subtract:
            v.addcmul_(prev_spike, threshold, value=-1)
        torch.gt(v, threshold, out=s)
        if compact:
            spikes[t].copy_(s)
        if reset_delay:
            prev, prev_spike = v, s
        else:  # U_t from Ũ_t = V_t
            u.copy_(v)
            if subtract:
                u.addcmul_(s, threshold, value=-1)
            else:
                u.addcmul_(u, s, value=-1)
            prev = u
    return spikes, pot


def membrane(
    pot: Tensor, spikes: Tensor, threshold: Tensor | float, reset: str = "subtract", reset_delay: bool = True
) -> Tensor:
    """The membrane U [T, B, ...] after the reset, from the firing potential and spikes of the forward scan."""
    if reset_delay:
        return pot
    threshold = _as_tensor(threshold, pot)
    return pot - threshold * spikes if reset == "subtract" else pot * (1 - spikes)


NORM_FLOOR = 1e-10
"""Below this maximum |R_t| the max-abs normalisation leaves R_t as it is (the reference's guard)."""


def lif_feedback_scan(
    reward: Tensor,
    pot: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    eps: float = 1e-6,
    out: Tensor | None = None,
    norm: bool = False,
) -> Tensor:
    """Reverse scan of LFP-ε through a LIF layer (the reference rule), t = T..1.

        R_t = reward_t + C_{t+1}  (C_{T+1} = 0);   D_t = |P_t| + |Ũ_t - P_t|;   g_t = R_t / (D_t + ε);
        C_t = β P_t g_t           (the membrane's share, handed to step t-1)

    With ``norm``, R_t ← R_t / m_t before g_t, m_t = max |R_t| over the step's whole [B, ...] tensor where
    m_t > 1e-10 (else R_t is left as it is): the reference's max-abs normalisation of the backward pass.

    For subtract + delayed reset, D_t = |U_{t-1}| + |U_t + θ reset_t - U_{t-1}| as in the reference.

    Args:
        reward: reward arriving at the spikes S, [T, B, ...].
        pot: the firing potential V from :func:`lif_forward_scan`, [T, B, ...].
        out: where to write g (may be ``reward`` itself: each step reads its reward before writing g).
    Returns:
        g [T, B, ...]: the normalised reward at the input current; the layer below takes it as
        ``R_in = X ⊙ (∂I/∂X)ᵀ g`` and ``F_W = |W| ⊙ (∂I/∂W)ᵀ g``.
    """
    T = pot.shape[0]
    beta, threshold = _as_tensor(beta, pot), _as_tensor(threshold, pot)
    eps = _as_tensor(eps, pot)
    subtract = reset == "subtract"
    g = torch.empty_like(pot) if out is None else out
    step_shape = pot.shape[1:]
    v0 = pot.new_zeros(step_shape) if mem0 is None else mem0.to(pot.dtype).expand(step_shape)
    # Everything but the carry is element-wise over t, so it runs on chunks of steps at once (few kernel
    # launches for small layers); the chunk is sized to bound the temporaries (~4 chunk-sized buffers).
    chunk = max(1, min(T, CHUNK_ELEMENTS // max(pot[0].numel(), 1)))
    carry = None
    for t1 in range(T, 0, -chunk):
        t0 = max(0, t1 - chunk)
        if t0 > 0:
            v_prev = pot[t0 - 1 : t1 - 1]
        else:
            v_prev = torch.cat([v0.unsqueeze(0), pot[: t1 - 1]]) if t1 > 1 else v0.unsqueeze(0)
        s_prev = torch.gt(v_prev, threshold).to(pot.dtype)  # S_{t-1}, the reset of step t when delayed
        if t0 == 0 and not reset_delay:
            s_prev[0] = 0
        p = v_prev.clone()  # P_t
        if subtract and not reset_delay:
            p.addcmul_(s_prev, threshold, value=-1)  # U_{t-1} = Ũ_{t-1} - θ S_{t-1}
        elif not subtract:
            p.addcmul_(p, s_prev, value=-1)  # U_{t-1} (1 - S_{t-1})
        d = pot[t0:t1] - p  # Ũ_t - P_t (delayed subtract: + θ reset_t)
        if subtract and reset_delay:
            d.addcmul_(s_prev, threshold)
        del s_prev, v_prev
        d.abs_().add_(p.abs(), alpha=1).add_(eps)  # D_t + ε
        p.mul_(beta)  # β P_t
        for t in range(t1 - 1, t0 - 1, -1):
            k = t - t0
            if carry is None:
                r = reward[t].clone() if norm else reward[t]
            else:
                r = carry.add_(reward[t])  # R_t = reward_t + C_{t+1}
            if norm:
                m = r.abs().amax()
                r.div_(torch.where(m > NORM_FLOOR, m, torch.ones_like(m)))
            torch.div(r, d[k], out=g[t])
            carry = torch.mul(p[k], g[t])  # C_t = β P_t g_t
    return g
