"""What every LFP rule shares: the stabiliser, the result of a rule, and the precision of its GEMMs.

Notation: z = W x + b (or a convolution), R the reward at z, stabilize(z) = z + ε (sign(z) + [z = 0]).
A rule returns the reward at the input x and the feedback F_W, F_b (summed over rows, positions and time).
The optimiser step then uses ``p.grad = -F_p``: LFP maximises the reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..kernels.layout import rows_like, rows_view
from ..ops import Value, row_slices


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


class Rule:
    """Base class of the rules for parametric layers.

    ``rule(op, x, z, reward, need_input, gemm_dtype, weight_into)`` distributes the reward R at the layer's
    output z = op.forward(x, W, b) over its input x (a :class:`lfp_snn.ops.Value`) and its parameters.
    ``gemm_dtype`` (e.g. ``torch.bfloat16``) runs every GEMM of the rule in that precision, the results coming
    back in the reward's dtype; ``weight_into`` is a running sum that F_W is added to (and returned as).
    Rules whose first step is g = R / stabilize(z) (:class:`Epsilon`) also take g directly
    (:meth:`normalized`, ``takes_normalized = True``): a spiking layer's feedback scan produces it.
    """

    eps: float
    name: str = "rule"
    takes_normalized: bool = False

    def __call__(
        self,
        op,
        x: Value,
        z: Tensor,
        reward: Tensor,
        need_input: bool = True,
        gemm_dtype: torch.dtype | None = None,
        weight_into: Tensor | None = None,
    ) -> LayerFeedback:
        raise NotImplementedError


class Gemm:
    """The precision of a rule's GEMMs: operands cast to ``dtype`` (None: as they are), results back to the
    reward's dtype ``out``."""

    def __init__(self, dtype: torch.dtype | None, out: torch.dtype) -> None:
        self.dtype = None if dtype == out else dtype
        self.out = out

    def cast(self, t: Tensor | None) -> Tensor | None:
        return t if t is None or self.dtype is None else t.to(self.dtype)

    def value(self, x: Value) -> Value:
        return x if self.dtype is None else x.cast(self.dtype)

    def back(self, t: Tensor) -> Tensor:
        return t if t.dtype == self.out else t.to(self.out)

    def forward(self, op, x: Value, w: Tensor, b: Tensor | None) -> Tensor:
        return self.back(op.forward(self.value(x), self.cast(w), self.cast(b)))

    def weight_vjp(self, op, g: Tensor, x: Value) -> Tensor:
        return self.back(op.weight_vjp(self.cast(g), self.value(x)))

    def input_vjp(self, op, g: Tensor, w: Tensor, x: Value) -> Tensor:
        return self.back(op.input_vjp(self.cast(g), self.cast(w), self.value(x)))


def pos(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def neg(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


def mul_abs_(t: Tensor, w: Tensor) -> Tensor:
    """t ⊙= |w| in place, a block of rows at a time (no temporary the size of w)."""
    t2, w2 = rows_view(t), rows_like(w, t)
    for sl in row_slices(*t2.shape, elements=1 << 16):
        t2[sl].mul_(w2[sl].abs())
    return t
