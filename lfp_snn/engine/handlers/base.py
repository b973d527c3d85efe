"""The handler interface: how the engine runs one kind of node forward and back.

A handler is registered for a module type (``nn.Linear``, ``lfp_snn.LIF``, your own layer) or for a graph
function or method (``operator.add``, ``torch.cat``, ``"flatten"``). The engine calls

- ``setup(node, env)`` once per model and plan, before any compute: choices that depend only on the model and
  the plan (which rule, what to keep); refuse here, with an error that names the node and the option, what
  the handler does not implement;
- ``forward(node, inputs, ctx) -> (Act, record)`` for every batch: ``inputs`` are the :class:`Act` outputs of
  ``node.inputs``; the record is a typed dataclass holding what ``reverse`` needs (``None`` when
  ``ctx.keep`` is false: inference);
- ``reverse(node, record, message, ctx) -> Back``: ``message`` is the :class:`Reward` (or, from a neuron,
  :class:`Normalized`) at the node's output; the result holds one message per input (``None`` where
  ``ctx.wants(node, k)`` is false: nothing below learns) and the feedback of the node's parameters by their
  names in the module (``{"weight": F_W, "bias": F_b}``).

See docs/handlers.md for a worked example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from ..activations import Act, Message


@dataclass
class Back:
    """What a node's reverse step returns: messages for its inputs, feedback for its parameters."""

    inputs: tuple[Message | None, ...]
    feedback: dict[str, Tensor] = field(default_factory=dict)


class Handler:
    """Base class. ``learns``: the node has parameters that get feedback; ``temporal``: it carries state
    over time (a neuron; a model with one is spiking, and its input needs a time axis)."""

    learns: ClassVar[bool] = False
    temporal: ClassVar[bool] = False
    # a neuron that can hand g = R / (D + ε) to a parametric layer below it, and a layer that can take it
    emits_normalized: ClassVar[bool] = False
    takes_normalized: ClassVar[bool] = False
    # passes the reward through unchanged and keeps the layout (used to find the neuron below a layer)
    shape_only: ClassVar[bool] = False

    def setup(self, node, env) -> Any:
        return None

    def forward(self, node, inputs: list[Act], ctx) -> tuple[Act, Any]:
        raise NotImplementedError

    def reverse(self, node, record: Any, message: Message, ctx) -> Back:
        raise NotImplementedError

    def names(self) -> list[str]:
        """What the handler covers, for the list of supported layers (default: the class name)."""
        return [type(self).__name__]
