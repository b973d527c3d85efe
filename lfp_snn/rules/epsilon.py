"""LFP-ε (Eq. 8-9) and LFP-0.

    g = R / stabilize(z);   R_in = x ⊙ (∂z/∂x)ᵀ g;   F_W = |W| ⊙ (∂z/∂W)ᵀ g;   F_b = |b| ⊙ Σ g

``Epsilon(eps=0)`` is LFP-0 (Theorem 1; unstable in practice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..ops import Value
from .base import Gemm, LayerFeedback, Rule, mul_abs_, stabilize


@dataclass(frozen=True)
class Epsilon(Rule):
    """LFP-ε; ``Epsilon(0.0)`` is LFP-0."""

    eps: float = 1e-6
    name = "epsilon"
    takes_normalized = True

    def __post_init__(self) -> None:
        if not (self.eps >= 0):
            raise ValueError(f"eps must be >= 0, got {self.eps!r}")

    def __call__(self, op, x, z, reward, need_input=True, gemm_dtype=None, weight_into=None):
        g = reward / stabilize(z, self.eps)
        return self.normalized(op, x, g, need_input, gemm_dtype, weight_into=weight_into)

    def normalized(
        self,
        op,
        x: Value,
        g: Tensor,
        need_input: bool = True,
        gemm_dtype: torch.dtype | None = None,
        x_input: Value | None = None,
        weight_into: Tensor | None = None,
    ) -> LayerFeedback:
        """The ε rule given g = R / stabilize(z) directly (a LIF layer's feedback scan produces g).

        ``gemm_dtype`` (e.g. ``torch.bfloat16``) runs the two feedback GEMMs in that precision (spikes are
        exact in bf16; g and W are rounded to 8 significant bits); the results come back in g's dtype.
        ``x_input`` (x's shape) replaces x in the input reward, R_in = x_input ⊙ (∂z/∂x)ᵀ g, while F_W keeps
        x (the membrane-aware variant, :mod:`lfp_snn.rules.membrane_share`, passes S + λ a there).
        ``weight_into``: a running sum that F_W is added to (and returned as) before the input reward is made,
        so the two [out, in]-sized and [rows, in]-sized results are never held at once.
        """
        m = op.module
        w = m.weight.to(g.dtype)
        mm = Gemm(gemm_dtype, g.dtype)
        gm = mm.cast(g)
        fw = mul_abs_(mm.weight_vjp(op, gm, x), w)
        if weight_into is not None:
            fw = weight_into.add_(fw)
        fb = None if m.bias is None else m.bias.to(g.dtype).abs() * op.bias_vjp(g)
        rin = None
        if need_input:  # x ⊙ (∂z/∂x)ᵀ g, multiplied in place
            rin = (x if x_input is None else x_input).multiply_(mm.input_vjp(op, gm, w, x))
        return LayerFeedback(rin, fw, fb)


def zero() -> Epsilon:
    """LFP-0: the ε rule with ε = 0."""
    return Epsilon(0.0)
