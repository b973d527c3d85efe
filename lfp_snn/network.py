"""SpikingSequential: an ``nn.Sequential`` whose forward runs time-first [T, B, ...] sequences."""

from __future__ import annotations

from torch import Tensor, nn

from .engine import run


class SpikingSequential(nn.Sequential):
    """Layers applied to all T steps at once: stateless layers (Linear, Conv, pooling, Flatten) see the
    T·B rows as one batch, LIF layers scan over time. ``model(x_seq)`` maps [T, B, ...] to the output
    [T, B, ...] (spikes when the last layer is a LIF); ``model(x, steps=T)`` feeds a static [B, ...] input at
    every step. Without LIF layers it behaves as an ordinary ``nn.Sequential`` of the same layers.
    """

    def forward(self, inputs: Tensor, steps: int | None = None) -> Tensor:  # type: ignore[override]
        return run(self, inputs, steps)
