"""What one training step returns, and how a class is read from a model's outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class StepOutput:
    """The result of one training step on a batch of B samples.

    Attributes:
        output: ANN logits [B, C]; SNN output spikes [T, B, C].
        objective: mean reward (LFP) or loss (gradient methods) over the batch.
        spike_counts: per LIF layer (keyed by its module path), Σ over time and batch of the spikes of each
            neuron, shaped like one sample's features.
    """

    output: Tensor
    objective: float
    spike_counts: dict[str, Tensor] = field(default_factory=dict)


Step = Callable[[Tensor, Tensor], StepOutput]
"""A training step ``step(x, y) -> StepOutput``: it leaves the update in ``p.grad`` for the optimiser."""


def predictions(output: Tensor, spiking: bool) -> Tensor:
    """Class per sample: most output spikes (SNN [T, B, C]) or largest logit (ANN [B, C])."""
    return output.sum(0).argmax(-1) if spiking else output.argmax(-1)
