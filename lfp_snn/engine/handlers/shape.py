"""Shape-only nodes: Flatten / Unflatten layers and the functions torch.flatten, reshape, view. The reward
takes the input's shape back. They act on the rows of the engine's layout ([B, ...] or [T·B, ...]): the
first axis is the batch (and time) and may not be changed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..activations import Act, Reward
from .base import Back, Handler


@dataclass
class ShapeRecord:
    in_shape: torch.Size


class _ShapeBase(Handler):
    shape_only = True

    def apply(self, node, x: torch.Tensor, ctx) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, node, inputs, ctx):
        a = inputs[0]
        y = self.apply(node, a.value, ctx)
        if y.shape[:1] != a.value.shape[:1]:
            raise ValueError(
                f"{node.describe()} turns an input of shape {list(a.value.shape)} into {list(y.shape)}: it changes "
                "the first axis, which holds the batch (and, in a spiking model, the time steps: T·B rows); "
                "shape ops may change only the axes after it (write them as for one step's batch, e.g. "
                "torch.flatten(x, 1) or x.view(x.size(0), -1))"
            )
        return Act(y, a.constant, a.binary), (ShapeRecord(a.value.shape) if ctx.keep else None)

    def reverse(self, node, rec: ShapeRecord, msg, ctx) -> Back:
        if not ctx.wants(node, 0):
            return Back((None,) * len(node.inputs))
        r = msg.value.reshape(rec.in_shape)
        return Back((Reward(r, msg.summed, getattr(msg, "owned", False)),) + (None,) * (len(node.inputs) - 1))


class ShapeModuleHandler(_ShapeBase):
    """nn.Flatten, nn.Unflatten."""

    def names(self) -> list[str]:
        return ["Flatten", "Unflatten"]

    def apply(self, node, x, ctx):
        return node.module(x)


class ShapeFunctionHandler(_ShapeBase):
    """torch.flatten / torch.reshape and the methods flatten, reshape, view."""

    def __init__(self, label: str) -> None:
        self.label = label

    def names(self) -> list[str]:
        return [self.label]

    def apply(self, node, x, ctx):
        args, kwargs = ctx.resolve(node, raw=True)
        if node.kind == "method":
            name = node.target
            if name == "view" and not x.is_contiguous():  # a channels-last convolution's output: same values
                name = "reshape"
            return getattr(x, name)(*args[1:], **kwargs)
        return node.target(x, *args[1:], **kwargs)


class MetaHandler(Handler):
    """Shape queries (``x.size(0)``, ``x.shape``, ``x.dim()``, indexing a size): Python values for reshapes,
    computed on the rows the engine holds."""

    def __init__(self, label: str) -> None:
        self.label = label

    def names(self) -> list[str]:
        return [self.label]

    def forward(self, node, inputs, ctx):
        args, kwargs = ctx.resolve(node, raw=True)
        if any(isinstance(a, torch.Tensor) for a in args[1:]):
            raise ValueError(
                f"{node.describe()} indexes a tensor; the engine supports no slicing of activations"
            )
        if node.kind == "method":
            return getattr(args[0], node.target)(*args[1:], **kwargs), None
        if isinstance(args[0], torch.Tensor) and node.target is not getattr:
            raise ValueError(
                f"{node.describe()} indexes a tensor; the engine supports no slicing of activations"
            )
        return node.target(*args, **kwargs), None
