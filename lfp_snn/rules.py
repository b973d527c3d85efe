"""LFP rules for parametric layers (Linear, Conv): reward at the output z -> reward at the input and feedback.

Notation: z = W x + b (or a convolution), R the reward at z, stabilize(z) = z + ε (sign(z) + [z = 0]).
A rule returns the reward at the input x and the feedback F_W, F_b (summed over rows, positions and time).
The optimiser step then uses ``p.grad = -F_p``: LFP maximises the reward.

- :class:`Epsilon` (LFP-ε, Eq. 8-9)::

      g = R / stabilize(z);   R_in = x ⊙ (∂z/∂x)ᵀ g;   F_W = |W| ⊙ (∂z/∂W)ᵀ g;   F_b = |b| ⊙ Σ g

  ``Epsilon(eps=0)`` is LFP-0 (Theorem 1; unstable in practice).
- :class:`ZPlusZMinus` (LFP-z⁺z⁻, Eq. 12-13): two passes z⁺ = f(x; W⁺, b⁺), z⁻ = f(x; W⁻, b⁻),
  D = |z⁺| + |z⁻| + ε, g± = R (|z±| / D) / stabilize(z±)::

      R_in = x ⊙ [(∂z⁺/∂x)ᵀ g⁺ + (∂z⁻/∂x)ᵀ g⁻];   F_W = |W⁺| ⊙ (∂z⁺/∂W)ᵀ g⁺ - |W⁻| ⊙ (∂z⁻/∂W)ᵀ g⁻

  For x >= 0 this is Eq. 13: F_w = |w| x R / (Σ |z_ij| + |b|).
- :class:`AlphaBeta` (LFP-αβ, Eq. 10-11): four passes (x⁺, W⁺, b⁺), (x⁻, W⁻), (x⁺, W⁻, b⁻), (x⁻, W⁺)
  with coefficients α, α, -β, -β; z⁺ is the sum of the first two, z⁻ of the last two,
  g± = R / stabilize(z±), and every pass k contributes c_k x_k ⊙ (∂out_k/∂x_k)ᵀ g_k to R_in and
  c_k |p_k| ⊙ (∂out_k/∂p_k)ᵀ g_k to the feedback of p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .layers import row_slices


def stabilize(z: Tensor, eps: float) -> Tensor:
    """z + ε (sign(z) + [z = 0]): moves z away from zero by ε, keeping its sign (zero goes to +ε)."""
    if eps == 0:
        return z
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


@dataclass(frozen=True)
class LayerFeedback:
    """What a rule returns for one layer: reward at the input (None when not asked) and the feedback."""

    input_reward: Tensor | None
    weight: Tensor
    bias: Tensor | None


def _pos(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


class Rule:
    """Base class. Subclasses implement :meth:`__call__`; ``eps`` is the stabiliser."""

    eps: float
    name: str = "rule"

    def __call__(self, op, x: Tensor, z: Tensor, reward: Tensor, need_input: bool = True) -> LayerFeedback:
        raise NotImplementedError


@dataclass(frozen=True)
class Epsilon(Rule):
    """LFP-ε; ``Epsilon(0.0)`` is LFP-0."""

    eps: float = 1e-6
    name = "epsilon"

    def __post_init__(self) -> None:
        if not (self.eps >= 0):
            raise ValueError(f"eps must be >= 0, got {self.eps!r}")

    def __call__(self, op, x, z, reward, need_input=True, matmul_dtype=None):
        return self.normalized(op, x, reward / stabilize(z, self.eps), need_input, matmul_dtype)

    def normalized(
        self,
        op,
        x: Tensor,
        g: Tensor,
        need_input: bool = True,
        matmul_dtype: torch.dtype | None = None,
        x_input: Tensor | None = None,
        weight_into: Tensor | None = None,
    ) -> LayerFeedback:
        """The ε rule given g = R / stabilize(z) directly (a LIF layer's feedback scan produces g).

        ``matmul_dtype`` (e.g. ``torch.bfloat16``) runs the two feedback GEMMs in that precision (spikes are
        exact in bf16; g and W are rounded to 8 significant bits); the results come back in g's dtype.
        ``x_input`` (x's shape) replaces x in the input reward, R_in = x_input ⊙ (∂z/∂x)ᵀ g, while F_W keeps
        x (the membrane-aware variant, :mod:`lfp_snn.small_beta`, passes S + λ a there).
        ``weight_into``: a running sum that F_W is added to (and returned as) before the input reward is made,
        so the two [out, in]-sized and [rows, in]-sized results are never held at once.
        """
        m = op.module
        w = m.weight.to(g.dtype)
        gm, xm, wm = (
            (g, x, w)
            if matmul_dtype is None
            else (g.to(matmul_dtype), x.to(matmul_dtype), w.to(matmul_dtype))
        )
        fw = _mul_abs_(op.weight_vjp(gm, xm).to(g.dtype), w)
        if weight_into is not None:
            fw = weight_into.add_(fw)
        fb = None if m.bias is None else m.bias.to(g.dtype).abs() * op.bias_vjp(g)
        rin = None
        if need_input:  # x ⊙ (∂z/∂x)ᵀ g, multiplied in place
            rin = op.input_vjp(gm, wm, xm).to(g.dtype)
            xi = x if x_input is None else x_input
            if xi.dtype == torch.uint8 and rin.shape == xi.shape:  # spikes: a block of rows at a time, so
                r2, x2 = rin.view(rin.shape[0], -1), xi.reshape(xi.shape[0], -1)  # no float copy of all x
                for sl in row_slices(*r2.shape):
                    r2[sl].mul_(x2[sl])
            else:
                rin.mul_(xi)
        return LayerFeedback(rin, fw, fb)


def _mul_abs_(t: Tensor, w: Tensor) -> Tensor:
    """t ⊙= |w| in place, a block of rows at a time (no temporary the size of w)."""
    t2, w2 = t.view(t.shape[0], -1), w.reshape(w.shape[0], -1)
    for sl in row_slices(*t2.shape, elements=1 << 16):
        t2[sl].mul_(w2[sl].abs())
    return t


@dataclass(frozen=True)
class ZPlusZMinus(Rule):
    """LFP-z⁺z⁻: positive and negative contributions normalised separately."""

    eps: float = 1e-6
    name = "zplus-zminus"

    def __call__(self, op, x, z, reward, need_input=True):
        m = op.module
        w = m.weight.to(reward.dtype)
        b = None if m.bias is None else m.bias.to(reward.dtype)
        xd = x.to(reward.dtype)
        wp, wn, bp, bn = _pos(w), _neg(w), _pos(b), _neg(b)
        zp, zn = op.forward(xd, wp, bp), op.forward(xd, wn, bn)
        d = zp.abs() + zn.abs() + self.eps
        gp = reward * (zp.abs() / d) / stabilize(zp, self.eps)
        gn = reward * (zn.abs() / d) / stabilize(zn, self.eps)
        fw = wp * op.weight_vjp(gp, xd) + wn * op.weight_vjp(gn, xd)  # |W⁻| (..) g⁻ with a minus = W⁻ (..) g⁻
        fb = None if b is None else bp * op.bias_vjp(gp) + bn * op.bias_vjp(gn)
        rin = xd * (op.input_vjp(gp, wp, xd) + op.input_vjp(gn, wn, xd)) if need_input else None
        return LayerFeedback(rin, fw, fb)


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LFP-αβ (α - β = 1 is the usual choice; α=2, β=1 by default)."""

    alpha: float = 2.0
    beta: float = 1.0
    eps: float = 1e-6
    name = "alpha-beta"

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={self.alpha}, beta={self.beta}")

    def __call__(self, op, x, z, reward, need_input=True):
        m = op.module
        w = m.weight.to(reward.dtype)
        b = None if m.bias is None else m.bias.to(reward.dtype)
        xd = x.to(reward.dtype)
        xp, xn, wp, wn = _pos(xd), _neg(xd), _pos(w), _neg(w)
        zp = op.forward(xp, wp, _pos(b)) + op.forward(xn, wn, None)
        zn = op.forward(xp, wn, _neg(b)) + op.forward(xn, wp, None)
        gp = reward / stabilize(zp, self.eps)
        gn = reward / stabilize(zn, self.eps)
        # passes (input part, weight part, normaliser, coefficient); |W⁻| = -W⁻
        passes = (
            (xp, wp, gp, self.alpha),
            (xn, wn, gp, self.alpha),
            (xp, wn, gn, -self.beta),
            (xn, wp, gn, -self.beta),
        )
        fw = torch.zeros_like(w)
        rin = torch.zeros_like(xd) if need_input else None
        for xk, wk, gk, ck in passes:
            fw = fw + ck * wk.abs() * op.weight_vjp(gk, xk)
            if need_input:
                rin = rin + ck * xk * op.input_vjp(gk, wk, xk)
        fb = None
        if b is not None:
            fb = self.alpha * _pos(b) * op.bias_vjp(gp) - self.beta * _neg(b).abs() * op.bias_vjp(gn)
        return LayerFeedback(rin, fw, fb)


def alpha2_beta1(eps: float = 1e-6) -> AlphaBeta:
    return AlphaBeta(2.0, 1.0, eps)


def zero() -> Epsilon:
    """LFP-0: the ε rule with ε = 0."""
    return Epsilon(0.0)
