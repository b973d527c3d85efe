"""The values that flow between the nodes of a model in the engine, and the messages that flow back.

Forward, every tensor is kept as rows ([N, ...], the layout spikingjelly calls multi-step): N = B for an ANN,
N = T·B (step-major) for a time-resolved activation of a spiking model, and N = B for an activation of a
spiking model that is the same at every step (``constant``: a constant-encoded image and every stateless
layer on it; the first LIF layer turns it into a sequence).

Backward, a node receives one message for its output:

- :class:`Reward`: the reward R at the output, in the output's rows; ``summed`` when it is summed over time
  (the output is constant: every rule is linear in R, so one pass over B rows serves all T steps).
- :class:`Normalized`: g = R / (D + ε) from the neuron above, at its input current I (the reference's
  LIF rule hands g, not R, to the Linear/Conv layer below it; other rules take R^I = I ⊙ g).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..kernels.layout import sum_leading


@dataclass
class Act:
    """A node's output: ``value`` [N, ...] (float, or uint8 for integer data), ``constant`` over time (N = B
    in a spiking model), ``binary``: integer values (0/1 spikes, spike sums) that uint8 holds exactly."""

    value: Tensor
    constant: bool = False
    binary: bool = False

    def float(self, dtype: torch.dtype) -> Tensor:
        return self.value if self.value.dtype == dtype else self.value.to(dtype)

    def compact(self) -> Tensor:
        """The value as it is best kept for the feedback: uint8 for integer data, else as it is."""
        return self.value.to(torch.uint8) if self.binary and self.value.dtype != torch.uint8 else self.value

    def per_step(self, steps: int) -> Act:
        """The same values with one row block per step (a constant activation repeated over T)."""
        if not self.constant:
            return self
        v = self.value.unsqueeze(0).expand(steps, *self.value.shape).reshape(-1, *self.value.shape[1:])
        return Act(v, False, self.binary)


@dataclass
class Reward:
    """The reward R at a node's output, [N, ...]; ``summed`` over time for a constant output; ``owned``: a
    buffer of the engine's that the receiver may overwrite."""

    value: Tensor
    summed: bool = False
    owned: bool = False


@dataclass
class Normalized:
    """g = R / (D + ε) at a neuron's input current, [T·B, ...] (or summed over time, [B, ...])."""

    g: Tensor
    summed: bool = False

    @property
    def value(self) -> Tensor:
        return self.g


Message = Reward | Normalized


def summed_over_time(msg: Message, steps: int) -> Message:
    """The message for a constant output: its T row blocks summed into one."""
    if msg.summed:
        return msg
    v = msg.value
    s = sum_leading(v.reshape(steps, -1, *v.shape[1:]))
    return Reward(s, True, True) if isinstance(msg, Reward) else Normalized(s, True)


def add_messages(a: Message | None, b: Message) -> Message:
    """The reward at a tensor read by several nodes (a fork): the sum of what comes back from each."""
    if a is None:
        return b
    if isinstance(a, Normalized) or isinstance(b, Normalized):
        raise TypeError("normalised messages go to a single reader only; the engine's plan is inconsistent")
    if a.summed != b.summed:
        raise ValueError("cannot add a reward summed over time to a time-resolved one")
    if a.owned:
        return Reward(a.value.add_(b.value), a.summed, True)
    return Reward(a.value + b.value, a.summed, True)
