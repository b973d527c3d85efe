"""Channels-last tensors through the element-wise scans and the row-blockwise ops.

On the CPU the engine runs Conv2d layers channels-last (:mod:`lfp_snn.ops.affine`): oneDNN's convolutions,
above all the weight feedback, are 1.5-3x faster on [N, C, H, W] tensors whose memory is ordered [N, H, W, C].
The tensors keep their logical shape [..., C, H, W]; only the strides differ. What reads them must then
either not care (torch's element-wise ops) or work in memory order: the LIF scans treat every neuron alike, so
they run on the view with the channel axis moved last, which is contiguous, and hand their outputs back in
the same layout (no copy on the way in or out).
"""

from __future__ import annotations

import torch
from torch import Tensor

CHANNELS_LAST = torch.channels_last


def channels_last(t: Tensor) -> bool:
    """Whether ``t`` ([..., C, H, W], 4 or more axes) holds its last three axes channels-last with everything
    before them in order, so that :func:`channels_innermost` of it is contiguous while ``t`` is not (a
    leading time axis expanded with stride 0 is allowed). False where the two layouts coincide (C = 1 or
    H = W = 1: then ``t`` is contiguous too)."""
    if t.dim() < 4 or t.is_contiguous():
        return False
    p = channels_innermost(t)
    if p.dim() >= 5 and p.shape[0] > 1 and p.stride(0) == 0:
        p = p[0]
    return p.is_contiguous()


def channels_innermost(t: Tensor) -> Tensor:
    """The view of [..., C, H, W] as [..., H, W, C] (contiguous when ``t`` is channels-last)."""
    return t.movedim(-3, -1)


def channels_back(t: Tensor) -> Tensor:
    """The inverse of :func:`channels_innermost`: [..., H, W, C] viewed as [..., C, H, W]."""
    return t.movedim(-1, -3)


def innermost_param(v):
    """A per-neuron parameter (β, θ) that broadcasts to one step's [..., C, H, W], viewed to broadcast to the
    channels-innermost [..., H, W, C] instead; numbers and single values as they are."""
    if not isinstance(v, Tensor) or v.numel() == 1:
        return v
    if v.dim() < 3:  # broadcasts over C, H, W from the right: give it those axes first
        v = v.reshape(*([1] * (3 - v.dim())), *v.shape)
    return channels_innermost(v)


def rows_view(t: Tensor) -> Tensor:
    """A [rows, features] view of ``t`` ([rows, ...], contiguous or channels-last) in memory order: features in
    their own order when ``t`` is contiguous, channels innermost when it is channels-last. RuntimeError for
    any other layout (it must be a view: callers write through it)."""
    if channels_last(t):
        t = channels_innermost(t)
    return t.view(t.shape[0], -1)


def rows_like(x: Tensor, ref: Tensor) -> Tensor:
    """``x`` (shaped like ``ref``) as [rows, features] with its entries in the order of
    :func:`rows_view` (ref): a view where the layouts agree, else a copy."""
    if channels_last(ref):
        x = channels_innermost(x)
    return x.reshape(x.shape[0], -1)


def dense_in_layout(t: Tensor) -> Tensor:
    """``t`` itself when it is contiguous or channels-last in memory, else a copy laid out as it suggests
    (channels-last stays so: e.g. a reward expanded over time)."""
    if t.is_contiguous():
        return t
    if channels_last(t):
        return channels_back(channels_innermost(t).contiguous())  # a no-op unless a time axis was expanded
    return t.contiguous()


def sum_leading(t: Tensor) -> Tensor:
    """``t.sum(0)`` computed in memory order: torch's reduction over the leading axis of a channels-last
    [T, N, C, H, W] runs ~10x slower than on its channels-innermost view, which is contiguous. The sum keeps
    ``t``'s layout."""
    if channels_last(t):
        return channels_back(channels_innermost(t).sum(0))
    return t.sum(0)


def max_in_memory_order(t: Tensor) -> Tensor:
    """``t.max()`` over every entry, read in memory order: on a channels-last tensor torch's full reduction
    makes a contiguous copy first (~20x slower on a layer's uint8 spikes than on the channels-innermost view)."""
    return channels_innermost(t).max() if channels_last(t) else t.max()


__all__ = [
    "CHANNELS_LAST",
    "channels_back",
    "channels_innermost",
    "channels_last",
    "dense_in_layout",
    "innermost_param",
    "max_in_memory_order",
    "rows_like",
    "rows_view",
    "sum_leading",
]
