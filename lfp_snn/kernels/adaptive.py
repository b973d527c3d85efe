"""Scans of the adaptive LIF neuron (ALIF), torch reference.

Forward, t = 1..T (a_0, S_0 and U_0 given, zero by default):

    a_t = ρ a_{t-1} + κ S_{t-1};   θ_t = θ_0 + a_t
    delayed reset:   U_t = β U_{t-1} + I_t - θ_{t-1} S_{t-1}  (subtract)  or  β U_{t-1} (1 - S_{t-1}) + I_t  (zero)
                     S_t = H(U_t - θ_t)                                     (V_t = U_t)
    immediate reset: Ũ_t = β U_{t-1} + I_t;  S_t = H(Ũ_t - θ_t);  U_t = Ũ_t - θ_t S_t  or  Ũ_t (1 - S_t)   (V_t = Ũ_t)

(the subtract reset takes away the threshold that was crossed). The forward keeps the firing potential V and
the adaptation a; the feedback recovers S, P_t and Ũ_t - P_t from them as the LIF scan does, with θ_{t-1} in
place of θ.

Feedback, t = T..1 (the LFP rule, docs/neurons.md): the spike compares U_t - a_t with θ_0, so the adaptation
is one more contribution beside the membrane's and the current's:

    R_t = (reward at S_t) + C_{t+1} + Q_t;   D_t = |P_t| + |Ũ_t - P_t| + |a_t|;   g_t = R_t / (D_t + ε)
    C_t = β P_t g_t                                  (membrane, to step t-1)
    R^a_t = -a_t g_t + A_{t+1};   g^a_t = R^a_t / (a_t + ε)
    A_t = ρ a_{t-1} g^a_t                            (adaptation, to step t-1)
    Q_{t-1} = κ S_{t-1} g^a_t                        (to the spike at t-1 that raised the threshold)

The layer below takes g_t (as the reference's LIF rule). With κ = 0 (a ≡ 0) this is the LIF rule exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as(v, like: Tensor) -> Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def adaptive_forward_scan(
    current: Tensor,
    beta,
    threshold,
    rho,
    kappa,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    adapt0: Tensor | None = None,
    spike0: Tensor | None = None,
    steps: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(spikes S, firing potential V, adaptation a), each [T, B, ...]; ``current`` [T, B, ...] (or a constant
    [B, ...] with ``steps=T``)."""
    beta, thr0, rho, kappa = (_as(v, current) for v in (beta, threshold, rho, kappa))
    constant = steps is not None
    T = steps if constant else current.shape[0]
    shape = current.shape if constant else current.shape[1:]
    spikes = current.new_empty((T, *shape))
    pot = current.new_empty((T, *shape))
    adapt = current.new_empty((T, *shape))
    u = current.new_zeros(shape) if mem0 is None else mem0.to(current.dtype).expand(shape).clone()
    a_prev = current.new_zeros(shape) if adapt0 is None else adapt0.to(current.dtype).expand(shape)
    s_prev = current.new_zeros(shape) if spike0 is None else spike0.to(current.dtype).expand(shape)
    subtract = reset == "subtract"
    for t in range(T):
        i_t = current if constant else current[t]
        a = torch.mul(a_prev, rho).add_(s_prev * kappa)
        thr = a + thr0
        if reset_delay:
            if subtract:
                v = (u * beta).add_(i_t).sub_((a_prev + thr0) * s_prev)
            else:
                v = (u * beta).mul_(1 - s_prev).add_(i_t)
            s = (v > thr).to(current.dtype)
            u = v
        else:
            v = (u * beta).add_(i_t)
            s = (v > thr).to(current.dtype)
            u = v - thr * s if subtract else v * (1 - s)
        spikes[t], pot[t], adapt[t] = s, v, a
        a_prev, s_prev = a, s
    return spikes, pot, adapt


def adaptive_state(pot: Tensor, adapt: Tensor, spikes: Tensor, threshold, reset: str, reset_delay: bool):
    """(U, a, S) after the last step of a forward scan: what the next stretch of time starts from."""
    thr = adapt[-1] + _as(threshold, pot)
    s = spikes[-1].to(pot.dtype)
    if reset_delay:
        u = pot[-1]
    elif reset == "subtract":
        u = pot[-1] - thr * s
    else:
        u = pot[-1] * (1 - s)
    return u.clone(), adapt[-1].clone(), s.clone()


def adaptive_feedback_scan(
    reward: Tensor,
    pot: Tensor,
    adapt: Tensor,
    beta,
    threshold,
    rho,
    kappa,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    adapt0: Tensor | None = None,
    spike0: Tensor | None = None,
    eps: float = 1e-6,
    carry: Tensor | None = None,
    carry_adapt: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(g [T, B, ...], C_1 + Q_0, A_1): the reverse scan above. ``carry`` is C_{T+1} + Q_T (from a later
    stretch: it joins the reward at the last step), ``carry_adapt`` is A_{T+1}; the returned pair is what this
    stretch hands to the one before (the reward for its last step, and its adaptation carry)."""
    beta, thr0, rho, kappa = (_as(v, pot) for v in (beta, threshold, rho, kappa))
    eps_t = _as(eps, pot)
    T = pot.shape[0]
    shape = pot.shape[1:]
    g = torch.empty_like(pot)
    subtract = reset == "subtract"
    zeros = pot.new_zeros(shape)
    u0 = zeros if mem0 is None else mem0.to(pot.dtype).expand(shape)
    a0 = zeros if adapt0 is None else adapt0.to(pot.dtype).expand(shape)
    s0 = zeros if spike0 is None else spike0.to(pot.dtype).expand(shape)

    def spike(t):
        return s0 if t < 0 else (pot[t] > adapt[t] + thr0).to(pot.dtype)

    c = zeros.clone() if carry is None else carry.clone()
    ca = zeros.clone() if carry_adapt is None else carry_adapt.clone()
    for t in range(T - 1, -1, -1):
        v_prev = pot[t - 1] if t > 0 else None
        a_prev = adapt[t - 1] if t > 0 else a0
        s_prev = spike(t - 1)
        if t > 0:  # U_{t-1} from the kept potential
            if reset_delay:
                u_prev = v_prev
            elif subtract:
                u_prev = v_prev - (a_prev + thr0) * s_prev
            else:
                u_prev = v_prev * (1 - s_prev)
        else:
            u_prev = u0
        p = u_prev * (1 - s_prev) if (reset_delay and not subtract) else u_prev  # P_t
        d = pot[t] - p  # Ũ_t - P_t (delayed subtract: + θ_{t-1} S_{t-1})
        if reset_delay and subtract:
            d = d + (a_prev + thr0) * s_prev
        a = adapt[t]
        denom = p.abs() + d.abs() + a.abs() + eps_t
        g[t] = (reward[t] + c) / denom
        c = beta * p * g[t]
        ga = (ca - a * g[t]) / (a + eps_t)
        ca = rho * a_prev * ga
        c = c + kappa * s_prev * ga  # Q_{t-1}: joins the reward of step t-1
    return g, c, ca
