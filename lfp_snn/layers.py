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


def row_slices(rows: int, per_row: int, elements: int = 1 << 18):
    """Slices over ``rows`` rows of ``per_row`` entries, ~``elements`` entries a slice: for working through
    a big tensor a block at a time, so that conversions and temporaries stay small."""
    step = max(1, elements // max(per_row, 1))
    for a in range(0, rows, step):
        yield slice(a, a + step)


def _row_blocks(x2: Tensor, elements: int = 1 << 18):
    """(start, block) over the rows of a 2-D tensor, ~``elements`` entries a block."""
    for sl in row_slices(x2.shape[0], x2.shape[1], elements):
        yield sl.start, x2[sl]


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


class SparseSpikeLinearOp(LinearOp):
    """A Linear layer whose input is a sparse 0/1 uint8 matrix (event data, spike trains): the input is
    kept as index lists, the forward sums the weight columns of the inputs that spiked (``embedding_bag``)
    and the weight feedback sums g over the rows where each input spiked. Work and memory scale with the
    number of spikes instead of rows x inputs. Results equal the dense ones up to float summation order;
    the forward and any recomputation use the same sums, so they agree exactly with each other."""

    MAX_DENSITY = 0.1  # above this share of ones the dense GEMM is as fast

    def __init__(self, module: nn.Linear, x: Tensor) -> None:
        super().__init__(module)
        x2 = x.reshape(-1, x.shape[-1])
        self.shape = tuple(x2.shape)
        idx = x2.nonzero()  # [nnz, 2], ordered by row, then input
        self.cols = idx[:, 1].to(torch.int32)
        self.row_offsets = _offsets(idx[:, 0], x2.shape[0])

    @classmethod
    def suits(cls, x: Tensor) -> bool:
        """A uint8 tensor of zeros and ones with at most MAX_DENSITY ones."""
        if x.dtype != torch.uint8 or x.numel() == 0 or x.dim() < 2:
            return False
        ones = int(torch.count_nonzero(x))
        return ones <= cls.MAX_DENSITY * x.numel() and int(x.max()) <= 1

    def forward(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        if tuple(x.reshape(-1, x.shape[-1]).shape) != self.shape:
            raise ValueError(f"this op holds the indices of a {list(self.shape)} input, got {list(x.shape)}")
        z = F.embedding_bag(self.cols, w.T.contiguous(), self.row_offsets, mode="sum")
        if b is not None:
            z.add_(b)
        return z.reshape(*x.shape[:-1], w.shape[0])

    def weight_vjp(self, g: Tensor, x: Tensor) -> Tensor:
        g2 = g.reshape(-1, g.shape[-1])
        dt = g2.dtype if g2.dtype in (torch.float32, torch.float64) else torch.float32
        # row i of the result: Σ of g over the rows where input i spiked (the index by input is made here,
        # used once, and not kept)
        counts = torch.diff(self.row_offsets, append=self.row_offsets.new_tensor([len(self.cols)]))
        rows = torch.repeat_interleave(torch.arange(self.shape[0], dtype=torch.int32), counts)
        order = torch.argsort(self.cols, stable=True)
        by_input, offsets = rows[order], _offsets(self.cols[order].long(), self.shape[1])
        del rows, order
        out = F.embedding_bag(by_input, g2.to(dt), offsets, mode="sum")
        return out.T.contiguous().to(g.dtype)


def _offsets(sorted_keys: Tensor, n: int) -> Tensor:
    """Start of each of n groups in a sorted key list (int32, as embedding_bag takes with int32 indices)."""
    counts = torch.bincount(sorted_keys, minlength=n)
    out = torch.zeros(n, dtype=torch.int64)
    torch.cumsum(counts[:-1], 0, out=out[1:])
    return out.to(torch.int32)


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
