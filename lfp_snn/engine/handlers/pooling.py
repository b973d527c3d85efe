"""Pooling layers. MaxPool routes the reward to the arg-max (torch's own choice on ties: the first maximum in
the window's row-major order); AvgPool is a parameter-free ε layer: R_in = x ⊙ (∂z/∂x)ᵀ (R / stabilize(z)).

Spikes (uint8 0/1) through a MaxPool2d with non-overlapping windows (stride = kernel, no padding or dilation,
sizes divisible) take a short path: the pooled value is the OR over the window, the record keeps the uint8
spikes instead of int64 indices (8x less), and the reverse routes the reward to the first spike in each window
(to the first position where there is none), which is torch's arg-max on 0/1 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...kernels import native_scan, resolve_backend
from ...kernels.layout import max_in_memory_order
from ...rules import stabilize
from ..activations import Act, Reward
from .base import Back, Handler
from .parametric import check_binary


@dataclass
class MaxPoolRecord:
    indices: Tensor | None  # torch's arg-max per output (None on the spike path)
    in_shape: torch.Size
    constant: bool
    spikes: Tensor | None = None  # the spike path: the uint8 input


def _binary_windows(m: nn.Module, x: Tensor) -> int | None:
    """The window size k when ``x`` holds uint8 spikes and ``m`` pools non-overlapping k x k windows."""
    if not isinstance(m, nn.MaxPool2d) or x.dtype != torch.uint8 or x.dim() != 4:
        return None
    k, st, pad, dil = (
        v if isinstance(v, int) else None for v in (m.kernel_size, m.stride, m.padding, m.dilation)
    )
    if k is None or st != k or pad != 0 or dil != 1 or (m.ceil_mode and (x.shape[2] % k or x.shape[3] % k)):
        return None
    return k  # floor mode: rows and columns past the last whole window are dropped, as torch does


def _native(ctx, t: Tensor) -> bool:
    """Whether the C kernels serve this pass: the plan's backend (default ``auto``) resolves to native."""
    backend = ctx.plan.backend or "auto"
    dtype = ctx.dtype if t.dtype == torch.uint8 else t.dtype
    return t.device.type == "cpu" and resolve_backend(backend, t.device, dtype) == "native"


def _windows(x: Tensor, k: int) -> Tensor:
    """The whole k x k windows of x [N, C, H, W] as a view [N, C, H/k, k, W/k, k] (floor division)."""
    n, c, h, w = x.shape
    return x[:, :, : h // k * k, : w // k * k].view(n, c, h // k, k, w // k, k)


class MaxPoolHandler(Handler):
    def names(self) -> list[str]:
        return ["MaxPool1d", "MaxPool2d"]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m = node.module
        fx = ctx.compiled.fixed
        if fx is not None and node.index in fx.reads_input:
            check_binary(a.value, node)
        k = _binary_windows(m, a.value) if a.binary else None
        # 0/1 spikes (not counts): the OR over each window
        if k is not None and int(max_in_memory_order(a.value)) <= 1:
            if _native(ctx, a.value):
                y = native_scan.spike_pool_forward(a.value, k)
            else:
                y = torch.amax(_windows(a.value, k), dim=(3, 5))
            rec = MaxPoolRecord(None, a.value.shape, a.constant, a.value) if ctx.keep else None
            return Act(y, a.constant, True), rec
        fn = F.max_pool1d if isinstance(m, nn.MaxPool1d) else F.max_pool2d
        x = a.float(ctx.dtype)
        y, idx = fn(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
        rec = MaxPoolRecord(idx, x.shape, a.constant) if ctx.keep else None
        return Act(y, a.constant, a.binary), rec

    def reverse(self, node, rec: MaxPoolRecord, msg, ctx) -> Back:
        if not ctx.wants(node, 0):
            return Back((None,))
        r, shape = msg.value, rec.in_shape
        if rec.spikes is not None:
            k = node.module.kernel_size
            if _native(ctx, r):
                out = native_scan.spike_pool_backward(r, rec.spikes, k)
            else:
                out = self._route_to_first_spike(r, rec.spikes, k)
            return Back((Reward(out, msg.summed, True),))
        idx = rec.indices
        out = r.new_zeros(shape[0], shape[1], idx.new_tensor(shape[2:]).prod().item())
        out.scatter_add_(2, idx.flatten(2), r.flatten(2))
        return Back((Reward(out.reshape(shape), msg.summed, True),))

    @staticmethod
    def _route_to_first_spike(r: Tensor, spikes: Tensor, k: int) -> Tensor:
        """The reward at each window's first spike in row-major order, or at its first position when it has
        none (torch's arg-max on 0/1 values); zero elsewhere."""
        n, c, h, w = spikes.shape
        whole = h % k == 0 and w % k == 0  # else the positions past the last whole window stay 0
        # in the spikes' layout (channels-last stays so)
        out = (torch.empty_like if whole else torch.zeros_like)(spikes, dtype=r.dtype)
        ow, sw = _windows(out, k), _windows(spikes, k)
        seen = torch.zeros_like(sw[:, :, :, 0, :, 0], dtype=torch.bool)
        for i in range(k):
            for j in range(k):
                e = sw[:, :, :, i, :, j].bool()
                first = e & ~seen
                if i == 0 and j == 0:
                    first |= ~torch.amax(sw, dim=(3, 5)).bool()  # a window without spikes: its first position
                torch.mul(r, first, out=ow[:, :, :, i, :, j])
                seen |= e
        return out


@dataclass
class AvgPoolRecord:
    x: Tensor  # compact (uint8 for spikes)
    constant: bool
    summed: bool = False  # the integer network's sum pool (plan.fixed_point)


def sum_pool(m: nn.AvgPool2d, x: Tensor) -> Tensor:
    """The window's sum instead of its mean: what the integer network runs for an AvgPool2d (its 1/divisor
    sits in the weights of the layer that reads it, :mod:`lfp_snn.engine.fixed`)."""
    return F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, 1)


class AvgPoolHandler(Handler):
    def names(self) -> list[str]:
        return ["AvgPool1d", "AvgPool2d"]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        fx = ctx.compiled.fixed
        if fx is not None:  # spike counts per window, exact in float64
            if node.index in fx.reads_input:
                check_binary(a.value, node)
            rec = AvgPoolRecord(a.compact(), a.constant, True) if ctx.keep else None
            return Act(sum_pool(node.module, a.float(torch.float64)), a.constant, True), rec
        rec = AvgPoolRecord(a.compact(), a.constant) if ctx.keep else None
        return Act(node.module(a.float(ctx.dtype)), a.constant), rec

    def reverse(self, node, rec: AvgPoolRecord, msg, ctx) -> Back:
        if not ctx.wants(node, 0):
            return Back((None,))
        r = msg.value
        x = rec.x.to(r.dtype).requires_grad_(True)
        with torch.enable_grad():
            z = sum_pool(node.module, x) if rec.summed else node.module(x)
            (grad,) = torch.autograd.grad(z, x, r / stabilize(z.detach(), ctx.eps))
        return Back((Reward(x.detach().mul_(grad), msg.summed, True),))
