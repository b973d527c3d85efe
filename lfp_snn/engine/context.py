"""What a handler sees of the pass it runs in: the compiled plan, the step count and dtype, and the other
nodes' outputs (forward) or records (reverse)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..kernels import native_scan, resolve_backend
from .activations import Act
from .graph import Node, Ref
from .handlers.lif import spike_counts
from .plan import CompiledPlan


def _substitute(obj, values: list):
    if isinstance(obj, Ref):
        return values[obj.index]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_substitute(o, values) for o in obj)
    if isinstance(obj, dict):
        return {k: _substitute(v, values) for k, v in obj.items()}
    return obj


def _raw(obj):
    """Acts as their tensors (for functions that only reshape or query shapes)."""
    if isinstance(obj, Act):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return type(obj)(_raw(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _raw(v) for k, v in obj.items()}
    return obj


@dataclass
class ForwardContext:
    """State of one forward pass.

    ``steps``: T (None for an ANN); ``dtype``: the computation's; ``keep``: keep records for the feedback;
    ``state`` / ``start`` / ``cache``: for stretches of time (neuron states at the stretch's start, its first
    step, and outputs that are the same in every stretch); ``observe``: None, or a callable the pass calls
    after every node as ``observe(node, inputs, output)`` (see :func:`lfp_snn.engine.forward_trace`).
    """

    compiled: CompiledPlan
    steps: int | None
    dtype: torch.dtype
    keep: bool
    values: list
    generator: torch.Generator | None = None
    noise: float = 0.0
    state: dict[str, Tensor] | None = None
    start: int = 0
    cache: dict | None = None
    observe: Callable | None = None
    spike_counts: dict[str, Tensor] = field(default_factory=dict)
    spike_slots: dict[str, int] = field(default_factory=dict)

    @property
    def plan(self):
        """The :class:`~lfp_snn.engine.FeedbackPlan` of this pass."""
        return self.compiled.plan

    def setup(self, node: Node) -> Any:
        return self.compiled.setups[node.index]

    def keeps_output(self, index: int) -> bool:
        """Whether node ``index`` keeps its output for the feedback (so nothing may write over it)."""
        return bool(getattr(self.compiled.setups[index], "keep_output", True))

    def resolve(self, node: Node, raw: bool = False) -> tuple[tuple, dict]:
        """The node's arguments with the outputs of the nodes they name (as tensors with ``raw``)."""
        args, kwargs = _substitute(node.args, self.values), _substitute(node.kwargs, self.values)
        return (_raw(args), _raw(kwargs)) if raw else (args, kwargs)

    def count_spikes(self, name: str, spikes: Tensor) -> None:
        """Add the spikes per neuron of ``spikes`` [T, B, ...] to the pass's counts (the C kernel where the
        plan's backend resolves to native)."""
        c = native_scan.spike_count(spikes) if self._native_counts(spikes) else spike_counts(spikes)
        if name in self.spike_counts:
            self.spike_counts[name] = self.spike_counts[name] + c
            self.spike_slots[name] += spikes.numel()
        else:
            self.spike_counts[name] = c
            self.spike_slots[name] = spikes.numel()

    def _native_counts(self, spikes: Tensor) -> bool:
        if spikes.dtype != torch.uint8 or spikes.device.type != "cpu":
            return False
        return resolve_backend(self.plan.backend or "auto", spikes.device, self.dtype) == "native"


@dataclass
class ReverseContext:
    """State of one reverse pass: the records of all nodes, the feedback summed so far, and (for stretches
    of time) the carries that cross stretch boundaries."""

    compiled: CompiledPlan
    steps: int | None
    records: list
    feedback: dict[str, Tensor]
    carry: dict[str, Tensor] | None = None

    @property
    def eps(self) -> float:
        return self.compiled.eps

    @property
    def plan(self):
        """The :class:`~lfp_snn.engine.FeedbackPlan` of this pass."""
        return self.compiled.plan

    def setup(self, node: Node) -> Any:
        return self.compiled.setups[node.index]

    def wants(self, node: Node, k: int) -> bool:
        """Whether input ``k`` of ``node`` wants a reward (something below learns, or the caller asked)."""
        return self.compiled.wants[node.index][k]

    def take(self, key: str) -> Tensor | None:
        """The running feedback sum of parameter ``key`` (removed: the handler adds to it and returns it)."""
        return self.feedback.pop(key, None)

    def resolve_refs(self, node: Node) -> tuple[tuple, dict]:
        return node.args, node.kwargs

    def record(self, index: int):
        return self.records[index]

    def near_firing(self, lif_index: int) -> Tensor:
        """a = (1 - S) f(V) of the LIF node ``lif_index`` (its potential is kept for its own feedback)."""
        node = self.compiled.graph.nodes[lif_index]
        rec = self.records[lif_index]
        pot = node.handler.potential(node, rec, self)
        return self.compiled.plan.membrane_share.near_firing(pot, rec.threshold)

    def recompute_output(self, index: int) -> tuple[Tensor, bool]:
        """The output z of the Linear/Conv node ``index``: kept, or made again from its kept input; and
        whether it is a new tensor (which the caller may write over)."""
        rec = self.records[index]
        if rec.z is not None:
            return rec.z, False
        m = self.compiled.graph.nodes[index].module
        dt = self.compiled.dtype
        return rec.op.forward(rec.x, m.weight.to(dt), None if m.bias is None else m.bias.to(dt)), True
