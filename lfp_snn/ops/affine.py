"""Affine views of parametric layers: the forward map z = f(x; W, b) and its transposed maps, on typed inputs.

Every LFP rule is written against this small interface, so one rule serves Linear and Conv layers and every
input representation (:mod:`lfp_snn.ops.values`):

    forward(x, W, b)       z = f(x; W, b)                 in W's dtype
    input_vjp(g, W, x)     (∂z/∂x)ᵀ g                     shape of x, g's dtype
    weight_vjp(g, x)       (∂z/∂W)ᵀ g, summed over rows   shape of W, g's dtype
    bias_vjp(g)            Σ g over rows (and positions)  shape of b

Each op computes with the x it is handed: a :class:`~lfp_snn.ops.values.Zero` x gives zeros (plus the bias),
sparse rows sum over their entries, uint8 spikes are converted a block of rows at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .values import Dense, SparseRows, Spikes, Value, Zero, row_slices


def _row_blocks(x2: Tensor, elements: int = 1 << 18):
    """(start, block) over the rows of a 2-D tensor, ~``elements`` entries a block."""
    for sl in row_slices(x2.shape[0], x2.shape[1], elements):
        yield sl.start, x2[sl]


class LinearOp:
    """z = x Wᵀ + b over the last axis of x."""

    def __init__(self, module: nn.Linear) -> None:
        self.module = module

    def forward(self, x: Value, w: Tensor, b: Tensor | None) -> Tensor:
        if isinstance(x, SparseRows):
            z = F.embedding_bag(
                x.cols, w.T.contiguous(), x.offsets, mode="sum", per_sample_weights=x.entry_weights(w.dtype)
            )
            return z if b is None else z.add_(b)
        if isinstance(x, Zero):
            z = w.new_zeros((*x.shape[:-1], w.shape[0]))
            return z if b is None else z.add_(b)
        if isinstance(x, Spikes):  # convert a block of rows at a time instead of all of x at once
            x2 = x.t.reshape(-1, x.shape[-1])
            out = x2.new_empty((x2.shape[0], w.shape[0]), dtype=w.dtype)
            for a, xc in _row_blocks(x2):
                xc = xc.to(w.dtype)
                if b is None:
                    torch.mm(xc, w.T, out=out[a : a + len(xc)])
                else:
                    torch.addmm(b, xc, w.T, out=out[a : a + len(xc)])
            return out.reshape(*x.shape[:-1], w.shape[0])
        return F.linear(x.dense(w.dtype), w, b)

    def input_vjp(self, g: Tensor, w: Tensor, x: Value) -> Tensor:
        return g @ w.to(g.dtype)

    def weight_vjp(self, g: Tensor, x: Value) -> Tensor:
        g2 = g.reshape(-1, g.shape[-1])
        if isinstance(x, SparseRows):
            # row i of the result: Σ of g over the rows where input i is non-zero (times the entry's value)
            rows, offsets, values = x.by_feature()
            out = F.embedding_bag(
                rows,
                g2,
                offsets,
                mode="sum",
                per_sample_weights=None if values is None else values.to(g2.dtype),
            )
            return out.T.contiguous()
        if isinstance(x, Zero):
            return g2.new_zeros(g2.shape[1], x.shape[-1])
        if isinstance(x, Spikes):  # a block of rows at a time instead of a float copy of all x
            x2 = x.t.reshape(-1, x.shape[-1])
            out = g2.new_zeros(g2.shape[1], x2.shape[1])
            for a, xc in _row_blocks(x2):
                out.addmm_(g2[a : a + len(xc)].T, xc.to(g2.dtype))
            return out
        return g2.T @ x.dense(g2.dtype).reshape(-1, x.shape[-1])

    def bias_vjp(self, g: Tensor) -> Tensor:
        return g.reshape(-1, g.shape[-1]).sum(0)


class ConvOp:
    """Conv1d / Conv2d with zero padding (stride, padding, dilation, groups).

    On the CPU a Conv2d computes channels-last (:data:`CHANNELS_LAST_ON_CPU`): its input, weight and output
    keep the logical shape [N, C, H, W] with memory ordered [N, H, W, C], where oneDNN's convolutions run
    1.5-3x faster than on contiguous tensors (the weight feedback most). The weight feedback comes back
    contiguous. Elsewhere (CUDA, Conv1d) the tensors stay contiguous."""

    def __init__(self, module: nn.Conv1d | nn.Conv2d) -> None:
        check_conv(module)
        self.module = module
        self.nd = 1 if isinstance(module, nn.Conv1d) else 2
        self.fn = F.conv1d if self.nd == 1 else F.conv2d

    def _format(self, t: Tensor) -> torch.memory_format | None:
        """channels_last for a Conv2d on CPU floats (when switched on), else None (as it is)."""
        if self.nd == 2 and CHANNELS_LAST_ON_CPU and t.device.type == "cpu" and t.is_floating_point():
            return torch.channels_last
        return None

    def _weight(self, w: Tensor, fmt) -> Tensor:
        return w if fmt is None else w.contiguous(memory_format=fmt)

    def forward(self, x: Value, w: Tensor, b: Tensor | None) -> Tensor:
        m = self.module
        fmt = self._format(w)
        return self.fn(x.dense(w.dtype, fmt), self._weight(w, fmt), b, m.stride, m.padding, m.dilation, m.groups)

    def _backward(self, g: Tensor, x: Tensor, w: Tensor, mask: list[bool]):
        m = self.module
        return torch.ops.aten.convolution_backward(
            g, x, w, None, m.stride, m.padding, m.dilation, False, [0] * self.nd, m.groups, mask
        )

    def input_vjp(self, g: Tensor, w: Tensor, x: Value) -> Tensor:
        # only x's shape matters here: a stride-0 stand-in instead of a converted copy of x
        shape_only = g.new_empty(1).expand(x.shape)
        w = self._weight(w.to(g.dtype), self._format(g))  # a channels-last weight makes oneDNN compute so
        return self._backward(g, shape_only, w, [True, False, False])[0]

    def weight_vjp(self, g: Tensor, x: Value) -> Tensor:
        if isinstance(x, Zero):
            return g.new_zeros(self.module.weight.shape)
        fmt = self._format(g)
        w = self._weight(self.module.weight.to(g.dtype), fmt)
        return self._backward(g, x.dense(g.dtype, fmt), w, [False, True, False])[1].contiguous()

    def bias_vjp(self, g: Tensor) -> Tensor:
        return g.sum(dim=[d for d in range(g.dim()) if d != 1])


CHANNELS_LAST_ON_CPU = True
"""Whether Conv2d layers on the CPU compute channels-last (:class:`ConvOp`); the tests switch it off to compare
the two layouts."""


def check_conv(module: nn.Module) -> None:
    """Raise naming the setting when a convolution uses a padding the ops do not implement."""
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


OPS = {nn.Linear: LinearOp, nn.Conv1d: ConvOp, nn.Conv2d: ConvOp}
PARAMETRIC = tuple(OPS)


def affine_op(module: nn.Module):
    """The affine view of ``module`` (Linear, Conv1d, Conv2d)."""
    return OPS[type(module)](module)


__all__ = ["PARAMETRIC", "ConvOp", "Dense", "LinearOp", "affine_op", "check_conv"]
