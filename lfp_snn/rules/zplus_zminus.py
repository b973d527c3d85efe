"""LFP-z⁺z⁻ (Eq. 12-13): positive and negative contributions normalised separately.

Two passes z⁺ = f(x; W⁺, b⁺), z⁻ = f(x; W⁻, b⁻), D = |z⁺| + |z⁻| + ε, g± = R (|z±| / D) / stabilize(z±):

    R_in = x ⊙ [(∂z⁺/∂x)ᵀ g⁺ + (∂z⁻/∂x)ᵀ g⁻];   F_W = |W⁺| ⊙ (∂z⁺/∂W)ᵀ g⁺ - |W⁻| ⊙ (∂z⁻/∂W)ᵀ g⁻

For x >= 0 this is Eq. 13: F_w = |w| x R / (Σ |z_ij| + |b|).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Gemm, LayerFeedback, Rule, neg, pos, stabilize


@dataclass(frozen=True)
class ZPlusZMinus(Rule):
    """LFP-z⁺z⁻."""

    eps: float = 1e-6
    name = "zplus-zminus"

    def __call__(self, op, x, z, reward, need_input=True, gemm_dtype=None, weight_into=None):
        m = op.module
        dt = reward.dtype
        mm = Gemm(gemm_dtype, dt)
        w = m.weight.to(dt)
        b = None if m.bias is None else m.bias.to(dt)
        wp, wn, bp, bn = pos(w), neg(w), pos(b), neg(b)
        zp, zn = mm.forward(op, x, wp, bp), mm.forward(op, x, wn, bn)
        d = zp.abs() + zn.abs() + self.eps
        gp = reward * (zp.abs() / d) / stabilize(zp, self.eps)
        gn = reward * (zn.abs() / d) / stabilize(zn, self.eps)
        del zp, zn, d
        # |W⁻| (..) g⁻ with a minus = W⁻ (..) g⁻
        fw = wp * mm.weight_vjp(op, gp, x) + wn * mm.weight_vjp(op, gn, x)
        if weight_into is not None:
            fw = weight_into.add_(fw)
        fb = None if b is None else bp * op.bias_vjp(gp) + bn * op.bias_vjp(gn)
        rin = None
        if need_input:
            rin = x.multiply_(mm.input_vjp(op, gp, wp, x).add_(mm.input_vjp(op, gn, wn, x)))
        return LayerFeedback(rin, fw, fb)
