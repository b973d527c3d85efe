"""Pooling layers. MaxPool routes the reward to the arg-max (torch's own choice on ties); AvgPool is a
parameter-free ε layer: R_in = x ⊙ (∂z/∂x)ᵀ (R / stabilize(z))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...rules import stabilize
from ..activations import Act, Reward
from .base import Back, Handler


@dataclass
class MaxPoolRecord:
    indices: Tensor
    in_shape: torch.Size
    constant: bool


class MaxPoolHandler(Handler):
    def names(self) -> list[str]:
        return ["MaxPool1d", "MaxPool2d"]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m = node.module
        fn = F.max_pool1d if isinstance(m, nn.MaxPool1d) else F.max_pool2d
        x = a.float(ctx.dtype)
        y, idx = fn(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
        rec = MaxPoolRecord(idx, x.shape, a.constant) if ctx.keep else None
        return Act(y, a.constant, a.binary), rec

    def reverse(self, node, rec: MaxPoolRecord, msg, ctx) -> Back:
        if not ctx.wants(node, 0):
            return Back((None,))
        r, shape, idx = msg.value, rec.in_shape, rec.indices
        out = r.new_zeros(shape[0], shape[1], idx.new_tensor(shape[2:]).prod().item())
        out.scatter_add_(2, idx.flatten(2), r.flatten(2))
        return Back((Reward(out.reshape(shape), msg.summed, True),))


@dataclass
class AvgPoolRecord:
    x: Tensor  # compact (uint8 for spikes)
    constant: bool


class AvgPoolHandler(Handler):
    def names(self) -> list[str]:
        return ["AvgPool1d", "AvgPool2d"]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        rec = AvgPoolRecord(a.compact(), a.constant) if ctx.keep else None
        return Act(node.module(a.float(ctx.dtype)), a.constant), rec

    def reverse(self, node, rec: AvgPoolRecord, msg, ctx) -> Back:
        if not ctx.wants(node, 0):
            return Back((None,))
        r = msg.value
        x = rec.x.to(r.dtype).requires_grad_(True)
        with torch.enable_grad():
            z = node.module(x)
            (grad,) = torch.autograd.grad(z, x, r / stabilize(z.detach(), ctx.eps))
        return Back((Reward(x.detach().mul_(grad), msg.summed, True),))
