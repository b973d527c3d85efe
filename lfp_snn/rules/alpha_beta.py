"""LFP-αβ (Eq. 10-11; α=2, β=1 by default, α - β = 1 the usual choice).

Four passes (x⁺, W⁺, b⁺), (x⁻, W⁻), (x⁺, W⁻, b⁻), (x⁻, W⁺) with coefficients α, α, -β, -β; z⁺ is the sum of
the first two, z⁻ of the last two, g± = R / stabilize(z±), and every pass k contributes
c_k x_k ⊙ (∂out_k/∂x_k)ᵀ g_k to R_in and c_k |p_k| ⊙ (∂out_k/∂p_k)ᵀ g_k to the feedback of p.
A pass whose input part is zero (x⁻ of a non-negative input such as spikes) contributes nothing and is
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Gemm, LayerFeedback, Rule, neg, pos, stabilize


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LFP-αβ."""

    alpha: float = 2.0
    beta: float = 1.0
    eps: float = 1e-6
    name = "alpha-beta"

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={self.alpha}, beta={self.beta}")

    def __call__(self, op, x, z, reward, need_input=True, gemm_dtype=None, weight_into=None):
        m = op.module
        dt = reward.dtype
        mm = Gemm(gemm_dtype, dt)
        w = m.weight.to(dt)
        b = None if m.bias is None else m.bias.to(dt)
        xp, xn, wp, wn = x.positive(), x.negative(), pos(w), neg(w)

        def out(xk, wk, bk):
            return None if xk.is_zero and bk is None else mm.forward(op, xk, wk, bk)

        def total(*parts):
            parts = [p for p in parts if p is not None]
            return parts[0] if len(parts) == 1 else parts[0] + parts[1]

        zp = total(mm.forward(op, xp, wp, pos(b)), out(xn, wn, None))
        zn = total(mm.forward(op, xp, wn, neg(b)), out(xn, wp, None))
        gp = reward / stabilize(zp, self.eps)
        gn = reward / stabilize(zn, self.eps)
        del zp, zn
        # passes (input part, weight part, normaliser, coefficient); |W⁻| = -W⁻
        passes = (
            (xp, wp, gp, self.alpha),
            (xn, wn, gp, self.alpha),
            (xp, wn, gn, -self.beta),
            (xn, wp, gn, -self.beta),
        )
        fw = torch.zeros_like(w) if weight_into is None else weight_into
        rin = torch.zeros(x.shape, dtype=dt, device=w.device) if need_input else None
        for xk, wk, gk, ck in passes:
            if xk.is_zero:
                continue
            fw.add_(wk.abs() * mm.weight_vjp(op, gk, xk), alpha=ck)
            if need_input:
                rin.add_(xk.multiply_(mm.input_vjp(op, gk, wk, xk)), alpha=ck)
        fb = None
        if b is not None:
            fb = self.alpha * pos(b) * op.bias_vjp(gp) - self.beta * neg(b).abs() * op.bias_vjp(gn)
        return LayerFeedback(rin, fw, fb)


def alpha2_beta1(eps: float = 1e-6) -> AlphaBeta:
    return AlphaBeta(2.0, 1.0, eps)
