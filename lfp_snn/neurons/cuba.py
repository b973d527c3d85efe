"""Current-based (synaptic) LIF neuron, NIR's ``CubaLIF``: a synaptic current between the input and the
membrane.

Discrete dynamics over t = 1..T (I_0 = U_0 = 0 unless a state is given), input X_t = W x_t + b:

    I_t = α I_{t-1} + X_t                        (synaptic current)
    U_t = β U_{t-1} + I_t - θ reset_t;  S_t = H(U_t - θ)   (the LIF of lfp_snn.neurons.lif with current I_t,
                                                        every reset mode: subtract / zero, delay on / off)

α ∈ [0, 1), β ∈ (0, 1], θ > 0: scalars or per neuron. α = 0 is the LIF. LFP rule: docs/neurons.md.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import all_finite
from ..kernels import lif_forward
from ..kernels.synaptic import synaptic_forward_scan
from ..kernels.torch_scan import membrane
from ._checks import check_range
from .lif import LIFParameters, PerNeuronBuffers, check_lif_parameters, check_lif_shapes, validated_backend


class CubaLIFParameters(NamedTuple):
    """Parameters of a CubaLIF population (floats or tensors broadcastable to one sample's features)."""

    alpha: Tensor | float = 0.5
    beta: Tensor | float = 0.9
    threshold: Tensor | float = 1.0
    reset: str = "subtract"
    reset_delay: bool = True

    def lif(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)


class CubaLIFState(NamedTuple):
    """State between calls: synaptic current I and membrane U after the last step, [B, ...]."""

    syn: Tensor
    mem: Tensor


def check_cuba_parameters(p: CubaLIFParameters) -> None:
    check_range("alpha", p.alpha, 0.0, 1.0, False, True)
    check_lif_parameters(p.lif())


def cuba_lif_scan(
    current: Tensor,
    p: CubaLIFParameters = CubaLIFParameters(),
    state: CubaLIFState | None = None,
    *,
    steps: int | None = None,
    backend: str = "torch",
) -> tuple[Tensor, Tensor, Tensor, CubaLIFState]:
    """Run a CubaLIF population over a sequence.

    Args:
        current: X, [T, B, ...], or [B, ...] with ``steps=T`` for a constant input.
    Returns:
        (spikes [T, B, ...], membrane U [T, B, ...], synaptic current I [T, B, ...], final state).
    """
    check_cuba_parameters(p)
    if steps is None and current.dim() < 2:
        raise ValueError(f"expected currents of shape [T, B, ...], got {list(current.shape)}")
    if not all_finite(current):
        raise ValueError("the input current contains NaN or inf")
    check_lif_shapes(p.lif(), current.shape[1:] if steps is not None else current.shape[2:])
    check_lif_shapes(
        LIFParameters(p.alpha, 1.0), current.shape[1:] if steps is not None else current.shape[2:]
    )
    alpha = _as(p.alpha, current)
    beta, thr = _as(p.beta, current), _as(p.threshold, current)
    syn0 = None if state is None else state.syn
    mem0 = None if state is None else state.mem
    syn = synaptic_forward_scan(current, alpha, syn0, steps)
    spikes, pot = lif_forward(syn, beta, thr, p.reset, p.reset_delay, mem0, None, backend)
    mem = membrane(pot, spikes, thr, p.reset, p.reset_delay)
    return spikes, mem, syn, CubaLIFState(syn[-1], mem[-1])


def _as(v, like: Tensor):
    return v.to(device=like.device, dtype=like.dtype) if isinstance(v, Tensor) else float(v)


class CubaLIF(PerNeuronBuffers, nn.Module):
    """Current-based LIF layer for time-first sequences: [T, B, ...] input -> [T, B, ...] spikes.

    ``alpha`` (synaptic decay), ``beta`` (membrane decay) and ``threshold`` are buffers (scalars or per-neuron
    tensors), not trained by LFP. Each call starts from I_0 = U_0 = 0 unless :meth:`scan` gets a state.
    """

    per_neuron = ("alpha", "beta", "threshold")

    def __init__(
        self,
        alpha: float | Tensor = 0.5,
        beta: float | Tensor = 0.9,
        threshold: float | Tensor = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        check_cuba_parameters(CubaLIFParameters(alpha, beta, threshold, reset, reset_delay))
        self.backend = validated_backend(backend)
        for name, v in (("alpha", alpha), ("beta", beta), ("threshold", threshold)):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.float32).clone())
        self.reset = reset
        self.reset_delay = reset_delay

    @property
    def parameters_(self) -> CubaLIFParameters:
        return CubaLIFParameters(self.alpha, self.beta, self.threshold, self.reset, self.reset_delay)

    def scan(self, current: Tensor, state: CubaLIFState | None = None, steps: int | None = None):
        """(spikes, membrane, synaptic current, final state); see :func:`cuba_lif_scan`."""
        return cuba_lif_scan(current, self.parameters_, state, steps=steps, backend=self.backend)

    def forward(self, current: Tensor) -> Tensor:
        if current.dim() < 3:
            raise ValueError(
                f"expected currents of shape [T, B, ...] (time first, then batch), got {list(current.shape)}"
            )
        return self.scan(current)[0]

    def extra_repr(self) -> str:
        def f(t):
            return float(t) if t.numel() == 1 else f"tensor{list(t.shape)}"

        return (
            f"alpha={f(self.alpha)}, beta={f(self.beta)}, threshold={f(self.threshold)}, reset={self.reset!r}, "
            f"reset_delay={self.reset_delay}"
        )
