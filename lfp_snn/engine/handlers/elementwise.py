"""Element-wise activations (ReLU, LeakyReLU, Tanh, Sigmoid, SiLU, ELU, Identity, Heaviside, and their
functional forms) pass the reward through unchanged, as in the reference; so does a multiplication or division
by a constant number (z = c x: x ⊙ c R / (c x) = R). Dropout applies its own backward (mask and 1/(1 - p))."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Number

import torch
from torch import Tensor, nn

from ...neurons import Heaviside
from ..activations import Act, Reward
from .base import Back, Handler

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.Identity, Heaviside)
KEEPS_BINARY = (nn.ReLU, nn.Identity, Heaviside)  # 0/1 in, 0/1 out


class ActivationHandler(Handler):
    shape_only = False

    def names(self) -> list[str]:
        return [c.__name__ for c in ACTIVATIONS]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m = node.module
        binary = isinstance(m, Heaviside) or (a.binary and isinstance(m, KEEPS_BINARY))
        if isinstance(m, nn.Identity):
            return a, None
        return Act(m(a.float(ctx.dtype)), a.constant, binary), None

    def reverse(self, node, rec, msg, ctx) -> Back:
        return Back((msg if ctx.wants(node, 0) else None,))


class IdentityHandler(ActivationHandler):
    """nn.Identity: nothing changes (it may sit between a LIF and the layer it feeds)."""

    shape_only = True

    def names(self) -> list[str]:
        return ["Identity"]


class ActivationFunctionHandler(Handler):
    """F.relu, torch.relu, torch.sigmoid, torch.tanh, ... and their methods."""

    def __init__(self, label: str, keeps_binary: bool = False) -> None:
        self.label = label
        self.keeps_binary = keeps_binary

    def names(self) -> list[str]:
        return [self.label]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        args, kwargs = ctx.resolve(node, raw=True)
        if kwargs.get("inplace"):
            kwargs = {**kwargs, "inplace": False}
        x = a.float(ctx.dtype)
        y = (
            getattr(x, node.target)(*args[1:], **kwargs)
            if node.kind == "method"
            else node.target(x, *args[1:], **kwargs)
        )
        return Act(y, a.constant, a.binary and self.keeps_binary), None

    def reverse(self, node, rec, msg, ctx) -> Back:
        return Back((msg if ctx.wants(node, 0) else None,))


class ScaleHandler(Handler):
    """x * c, c * x, x / c for a constant number c."""

    def names(self) -> list[str]:
        return [self.label]

    def __init__(self, label: str) -> None:
        self.label = label

    def forward(self, node, inputs, ctx):
        args, kwargs = ctx.resolve(node, raw=True)
        if len(node.inputs) != 1 or kwargs or len(args) != 2 or not any(isinstance(v, Number) for v in args):
            raise ValueError(
                f"{node.describe()} is supported for a tensor times (or divided by) a constant number only; "
                f"got arguments {[type(v).__name__ for v in args]}"
            )
        (a,) = inputs
        x = a.float(ctx.dtype)
        c = next(v for v in args if isinstance(v, Number))
        if node.target.__name__ in ("truediv", "div") and not isinstance(args[0], Tensor):
            raise ValueError(f"{node.describe()}: a number divided by a tensor is not supported")
        y = x / c if node.target.__name__ in ("truediv", "div") else x * c
        return Act(y, a.constant, a.binary and c == 1), None

    def reverse(self, node, rec, msg, ctx) -> Back:
        return Back((msg if ctx.wants(node, 0) else None,))


@dataclass
class DropoutRecord:
    mask: Tensor
    scale: float


class DropoutHandler(Handler):
    def names(self) -> list[str]:
        return ["Dropout"]

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m = node.module
        if not (m.training and m.p > 0):
            return a, None
        if a.constant:  # a mask per step breaks the constant shortcut: one row block per step
            a = a.per_step(ctx.steps)
        x = a.float(ctx.dtype)
        mask = torch.rand(x.shape, generator=ctx.generator, dtype=x.dtype, device=x.device) >= m.p
        rec = DropoutRecord(mask, 1.0 / (1.0 - m.p)) if ctx.keep else None
        return Act(x * mask / (1.0 - m.p), a.constant), rec

    def reverse(self, node, rec: DropoutRecord | None, msg, ctx) -> Back:
        if not ctx.wants(node, 0):
            return Back((None,))
        if rec is None:
            return Back((msg,))
        return Back((Reward(msg.value * rec.mask * rec.scale, msg.summed, True),))
