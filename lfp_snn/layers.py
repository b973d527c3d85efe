"""Affine views of parametric layers: the forward map z = f(x; W, b) and its two transposed maps.

Every LFP rule is written against this small interface, so one rule serves Linear and Conv layers:

    forward(x, W, b)       z
    input_vjp(g, W, x)     (∂z/∂x)ᵀ g                     shape of x
    weight_vjp(g, x)       (∂z/∂W)ᵀ g, summed over rows   shape of W
    bias_vjp(g)            Σ g over rows (and positions)  shape of b
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _row_blocks(x2: Tensor, elements: int = 1 << 18):
    """(start, block) over the rows of a 2-D tensor, ~``elements`` entries a block."""
    rows = max(1, elements // max(x2.shape[1], 1))
    for a in range(0, x2.shape[0], rows):
        yield a, x2[a : a + rows]


class LinearOp:
    def __init__(self, module: nn.Linear) -> None:
        self.module = module

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        if x.dtype == w.dtype:
            return F.linear(x, w, b)
        # compact spikes (uint8): convert a block of rows at a time instead of all of x at once
        x2 = x.reshape(-1, x.shape[-1])
        out = x2.new_empty((x2.shape[0], w.shape[0]), dtype=w.dtype)
        for a, xc in _row_blocks(x2):
            xc = xc.to(w.dtype)
            if b is None:
                torch.mm(xc, w.T, out=out[a : a + len(xc)])
            else:
                torch.addmm(b, xc, w.T, out=out[a : a + len(xc)])
        return out.reshape(*x.shape[:-1], w.shape[0])

    def input_vjp(self, g: Tensor, w: Tensor, x: Tensor) -> Tensor:
        return g @ w.to(g.dtype)

    def weight_vjp(self, g: Tensor, x: Tensor) -> Tensor:
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        if x2.dtype == g2.dtype:
            return g2.T @ x2
        # x holds compact spikes (uint8): convert a block of rows at a time instead of all of x at once
        out = g2.new_zeros(g2.shape[1], x2.shape[1])
        for a, xc in _row_blocks(x2):
            out.addmm_(g2[a : a + len(xc)].T, xc.to(g2.dtype))
        return out

    def bias_vjp(self, g: Tensor) -> Tensor:
        return g.reshape(-1, g.shape[-1]).sum(0)


class ConvOp:
    """Conv1d / Conv2d with zero padding (stride, padding, dilation, groups)."""

    def __init__(self, module: nn.Conv1d | nn.Conv2d) -> None:
        if module.padding_mode != "zeros":
            raise ValueError(
                f"{type(module).__name__} with padding_mode={module.padding_mode!r} is not supported; "
                "expected padding_mode='zeros'"
            )
        if isinstance(module.padding, str):
            raise ValueError(
                f"{type(module).__name__} with padding={module.padding!r} is not supported; give the padding "
                "as integers"
            )
        self.module = module
        self.nd = 1 if isinstance(module, nn.Conv1d) else 2
        self.fn = F.conv1d if self.nd == 1 else F.conv2d

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        m = self.module
        return self.fn(x, w, b, m.stride, m.padding, m.dilation, m.groups)

    def _backward(self, g: Tensor, x: Tensor, w: Tensor, mask: list[bool]):
        m = self.module
        return torch.ops.aten.convolution_backward(
            g, x.to(g.dtype), w, None, m.stride, m.padding, m.dilation, False, [0] * self.nd, m.groups, mask
        )

    def input_vjp(self, g: Tensor, w: Tensor, x: Tensor) -> Tensor:
        return self._backward(g, x, w, [True, False, False])[0]

    def weight_vjp(self, g: Tensor, x: Tensor) -> Tensor:
        return self._backward(g, x, self.module.weight.to(g.dtype), [False, True, False])[1]

    def bias_vjp(self, g: Tensor) -> Tensor:
        return g.sum(dim=[d for d in range(g.dim()) if d != 1])


PARAMETRIC = {nn.Linear: LinearOp, nn.Conv1d: ConvOp, nn.Conv2d: ConvOp}


def affine_op(module: nn.Module):
    """The affine view of ``module`` (Linear, Conv1d, Conv2d)."""
    return PARAMETRIC[type(module)](module)
