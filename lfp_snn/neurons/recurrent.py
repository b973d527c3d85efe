"""Recurrent LIF neuron: a LIF whose input current adds a learned, all-to-all recurrent term.

Discrete dynamics over t = 1..T (S_0 = U_0 = 0 unless a state is given), feed-forward current I_t = W x_t + b
(from the layer below):

    X_t = I_t + V S_{t-1}            (V [N, N]: ``weight``, row j the weights into neuron j; times
                                      ``recurrent_mask`` where one is given)
    then the LIF update of lfp_snn.neurons.lif with current X_t (every reset mode)

V is a parameter and learns by LFP (docs/neurons.md); β, θ are buffers as in the LIF. V = 0 is the LIF.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import all_finite
from ..kernels.recurrent import recurrent_forward_scan
from ..kernels.torch_scan import membrane
from .lif import LIFParameters, PerNeuronBuffers, check_lif_parameters, check_lif_shapes, validated_backend


class RecurrentLIFState(NamedTuple):
    """State between calls, [B, N]: membrane U and spikes S of the last step."""

    mem: Tensor
    spikes: Tensor


def check_recurrent_weight(weight: Tensor, features: int, what: str = "weight") -> None:
    if tuple(weight.shape) != (features, features):
        raise ValueError(
            f"the recurrent {what} must have shape [{features}, {features}] (features x features), got "
            f"{list(weight.shape)}"
        )


def recurrent_lif_scan(
    current: Tensor,
    weight: Tensor,
    p: LIFParameters = LIFParameters(),
    state: RecurrentLIFState | None = None,
    *,
    steps: int | None = None,
) -> tuple[Tensor, Tensor, RecurrentLIFState]:
    """Run a recurrent LIF population over a sequence: ``current`` [T, B, N] (or [B, N] with ``steps=T``),
    ``weight`` V [N, N]. Returns (spikes [T, B, N], membrane U [T, B, N], final state)."""
    check_lif_parameters(p)
    if current.dim() < (2 if steps is not None else 3):
        raise ValueError(f"expected currents of shape [T, B, N], got {list(current.shape)}")
    if not all_finite(current):
        raise ValueError("the input current contains NaN or inf")
    n = current.shape[-1]
    check_recurrent_weight(weight, n)
    check_lif_shapes(p, current.shape[1:] if steps is not None else current.shape[2:])
    beta, thr = _as(p.beta, current), _as(p.threshold, current)
    mem0, s0 = (None, None) if state is None else (state.mem, state.spikes)
    spikes, pot = recurrent_forward_scan(current, weight, beta, thr, p.reset, p.reset_delay, mem0, s0, steps)
    mem = membrane(pot, spikes, thr, p.reset, p.reset_delay)
    return spikes, mem, RecurrentLIFState(mem[-1], spikes[-1])


def _as(v, like: Tensor):
    return v.to(device=like.device, dtype=like.dtype) if isinstance(v, Tensor) else float(v)


class RecurrentLIF(PerNeuronBuffers, nn.Module):
    """Recurrent LIF layer over ``features`` neurons: [T, B, N] feed-forward currents -> [T, B, N] spikes.

    ``weight`` (V, [N, N]) is initialised like ``nn.Linear``'s, U(-1/√N, 1/√N); ``recurrent_mask`` (0/1,
    [N, N]) keeps only some connections (e.g. no self-connections: ``1 - torch.eye(N)``); masked weights get
    no feedback.
    """

    per_neuron = ("beta", "threshold")

    def __init__(
        self,
        features: int,
        beta: float | Tensor = 0.9,
        threshold: float | Tensor = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        recurrent_mask: Tensor | None = None,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an integer >= 1, got {features!r}")
        check_lif_parameters(LIFParameters(beta, threshold, reset, reset_delay))
        self.backend = validated_backend(backend)
        self.features = features
        bound = 1.0 / math.sqrt(features)
        self.weight = nn.Parameter(torch.empty(features, features).uniform_(-bound, bound))
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).clone())
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        if recurrent_mask is not None:
            check_recurrent_weight(recurrent_mask, features, "mask")
            recurrent_mask = torch.as_tensor(recurrent_mask, dtype=torch.float32)
            if not bool(((recurrent_mask == 0) | (recurrent_mask == 1)).all()):
                raise ValueError("recurrent_mask must hold 0s and 1s")
        self.register_buffer("recurrent_mask", recurrent_mask)
        self.reset = reset
        self.reset_delay = reset_delay

    @property
    def parameters_(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)

    def effective_weight(self) -> Tensor:
        """V ⊙ mask (V where there is no mask)."""
        return self.weight if self.recurrent_mask is None else self.weight * self.recurrent_mask

    def scan(self, current: Tensor, state: RecurrentLIFState | None = None, steps: int | None = None):
        """(spikes, membrane, final state); see :func:`recurrent_lif_scan`."""
        with torch.no_grad():
            return recurrent_lif_scan(current, self.effective_weight(), self.parameters_, state, steps=steps)

    def forward(self, current: Tensor) -> Tensor:
        if current.dim() < 3:
            raise ValueError(
                f"expected currents of shape [T, B, N] (time first, then batch), got {list(current.shape)}"
            )
        return self.scan(current)[0]

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, beta={float(self.beta) if self.beta.numel() == 1 else 'tensor'}, "
            f"threshold={float(self.threshold) if self.threshold.numel() == 1 else 'tensor'}, "
            f"reset={self.reset!r}, reset_delay={self.reset_delay}, masked={self.recurrent_mask is not None}"
        )
