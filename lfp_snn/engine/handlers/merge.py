"""Nodes that merge branches: the residual sum a + b and torch.cat.

Sum node z = a + b (the LRP-ε sum rule; each branch gets its share of the sum, so reward is conserved up to
the stabiliser):

    R_a = a ⊙ R / stabilize(z),    R_b = b ⊙ R / stabilize(z)

(R_a + R_b = z ⊙ R / stabilize(z) → R as ε → 0). A tensor read by two nodes (a fork, e.g. the skip branch)
receives the sum of the rewards that come back along both; the engine adds them.

Element-wise maximum z = max(a, b) (``torch.max(a, b)``, ``torch.maximum``; for spikes the OR, the residual
merge of the reference's ResNet-like SNN): the reward goes to the larger branch, to ``a`` on ties, as max
pooling routes it to its first maximum.

Concatenation z = cat(a, b, ...; dim): the reward is split along ``dim`` back to the pieces.
Branches whose layouts differ (one the same at every step, one time-resolved) are merged time-resolved.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import Tensor

from ...rules import stabilize
from ..activations import Act, Reward
from .base import Back, Handler


def _aligned(acts: list[Act], steps: int | None) -> tuple[list[Act], bool]:
    if steps is None or all(a.constant for a in acts) or not any(a.constant for a in acts):
        return acts, acts[0].constant if acts else False
    return [a.per_step(steps) for a in acts], False


@dataclass
class SumRecord:
    a: Tensor  # compact (uint8 for spikes)
    b: Tensor
    constant: bool


class AddHandler(Handler):
    """a + b of two tensors of the same shape (operator.add, torch.add, Tensor.add)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def names(self) -> list[str]:
        return [self.label]

    def forward(self, node, inputs, ctx):
        args, kwargs = ctx.resolve(node)
        if len(args) != 2 or not all(isinstance(v, Act) for v in args) or kwargs:
            raise ValueError(
                f"{node.describe()} is supported as the sum of two tensors (a + b); got arguments "
                f"{[type(v).__name__ for v in args]}{' and ' + str(sorted(kwargs)) if kwargs else ''}"
            )
        (a, b), constant = _aligned(list(args), ctx.steps)
        dt = ctx.dtype
        if a.value.shape != b.value.shape:
            raise ValueError(
                f"{node.describe()} adds tensors of shapes {list(a.value.shape)} and {list(b.value.shape)}; the "
                "sum rule needs equal shapes (no broadcasting)"
            )
        z = a.float(dt) + b.float(dt)
        rec = SumRecord(a.compact(), b.compact(), constant) if ctx.keep else None
        return Act(z, constant, a.binary and b.binary), rec

    def reverse(self, node, rec: SumRecord, msg, ctx) -> Back:
        r = msg.value
        a, b = rec.a.to(r.dtype), rec.b.to(r.dtype)
        share = r / stabilize(a + b, ctx.eps)  # R / stabilize(z)
        pieces = {}
        args, _ = ctx.resolve_refs(node)
        for ref, part in zip(args, (a, b)):
            k = node.inputs.index(ref.index)
            if ctx.wants(node, k):
                pieces.setdefault(k, []).append(part * share)
        out = []
        for k in range(len(node.inputs)):
            parts = pieces.get(k)
            if not parts:
                out.append(None)
                continue
            total = parts[0] if len(parts) == 1 else parts[0] + parts[1]
            out.append(Reward(total, rec.constant, True))
        return Back(tuple(out))


@dataclass
class MaxRecord:
    a_wins: Tensor  # bool: a >= b
    constant: bool


class MaxHandler(Handler):
    """torch.max(a, b) / torch.maximum(a, b) of two tensors of the same shape."""

    def names(self) -> list[str]:
        return ["torch.max(a, b)", "torch.maximum"]

    def forward(self, node, inputs, ctx):
        args, kwargs = ctx.resolve(node)
        if len(args) != 2 or not all(isinstance(v, Act) for v in args) or kwargs:
            raise ValueError(
                f"{node.describe()} is supported as the element-wise maximum of two tensors; got arguments "
                f"{[type(v).__name__ for v in args]}{' and ' + str(sorted(kwargs)) if kwargs else ''}"
            )
        (a, b), constant = _aligned(list(args), ctx.steps)
        if a.value.shape != b.value.shape:
            raise ValueError(
                f"{node.describe()} takes the maximum of shapes {list(a.value.shape)} and {list(b.value.shape)}; "
                "expected equal shapes"
            )
        if a.value.dtype == b.value.dtype == torch.uint8:
            wins, z = a.value >= b.value, torch.maximum(a.value, b.value)
        else:
            av, bv = a.float(ctx.dtype), b.float(ctx.dtype)
            wins, z = av >= bv, torch.maximum(av, bv)
        rec = MaxRecord(wins, constant) if ctx.keep else None
        return Act(z, constant, a.binary and b.binary), rec

    def reverse(self, node, rec: MaxRecord, msg, ctx) -> Back:
        r = msg.value
        args, _ = ctx.resolve_refs(node)
        acc: dict[int, Tensor] = {}
        for ref, part in zip(args, (r * rec.a_wins, r * ~rec.a_wins)):
            k = node.inputs.index(ref.index)
            if ctx.wants(node, k):
                acc[k] = part if k not in acc else acc[k] + part
        return Back(
            tuple(Reward(acc[k], rec.constant, True) if k in acc else None for k in range(len(node.inputs)))
        )


@dataclass
class CatRecord:
    sizes: list[int]
    dim: int
    constant: bool


class CatHandler(Handler):
    """torch.cat(tensors, dim) along an axis after the first (the batch)."""

    def names(self) -> list[str]:
        return ["torch.cat"]

    def forward(self, node, inputs, ctx):
        args, kwargs = ctx.resolve(node)
        tensors = args[0] if args else kwargs.get("tensors")
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or not all(isinstance(v, Act) for v in tensors):
            raise ValueError(f"{node.describe()}: expected a list of tensors, got {type(tensors).__name__}")
        acts, constant = _aligned(list(tensors), ctx.steps)
        nd = acts[0].value.dim()
        d = dim % nd if isinstance(dim, int) else dim
        if not isinstance(d, int) or d == 0:
            raise ValueError(
                f"{node.describe()} concatenates along dim={dim}, the first axis (batch, and time in a spiking "
                "model); concatenate along a feature axis (dim >= 1, as for one step's batch)"
            )
        z = torch.cat([a.float(ctx.dtype) for a in acts], d)
        rec = CatRecord([a.value.shape[d] for a in acts], d, constant) if ctx.keep else None
        return Act(z, constant, all(a.binary for a in acts)), rec

    def reverse(self, node, rec: CatRecord, msg, ctx) -> Back:
        args, kwargs = ctx.resolve_refs(node)
        refs = args[0] if args else kwargs.get("tensors")
        parts = torch.split(msg.value, rec.sizes, rec.dim)
        acc: dict[int, Tensor] = {}
        for ref, part in zip(refs, parts):
            k = node.inputs.index(ref.index)
            if ctx.wants(node, k):
                acc[k] = part.clone() if k not in acc else acc[k] + part
        return Back(
            tuple(Reward(acc[k], rec.constant, True) if k in acc else None for k in range(len(node.inputs)))
        )


ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add, "add", "__add__")
