"""Adaptive LIF neuron (ALIF): the threshold rises after each spike and decays back.

Discrete dynamics over t = 1..T (a_0 = S_0 = U_0 = 0 unless a state is given), input current I_t:

    a_t = ρ a_{t-1} + κ S_{t-1};   θ_t = θ_0 + a_t                       (κ: ``adaptation``)
    delayed reset:   U_t = β U_{t-1} + I_t - θ_{t-1} S_{t-1}  (subtract)  or  β U_{t-1} (1 - S_{t-1}) + I_t  (zero)
                     S_t = H(U_t - θ_t)
    immediate reset: Ũ_t = β U_{t-1} + I_t;  S_t = H(Ũ_t - θ_t);  U_t = Ũ_t - θ_t S_t  or  Ũ_t (1 - S_t)

The subtract reset takes away the threshold that was crossed. ρ ∈ [0, 1), κ >= 0, β ∈ (0, 1], θ_0 > 0;
κ = 0 is the LIF. LFP rule: docs/neurons.md.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import all_finite
from ..kernels.adaptive import adaptive_forward_scan, adaptive_state
from ._checks import check_range
from .lif import LIFParameters, PerNeuronBuffers, check_lif_parameters, check_lif_shapes, validated_backend


class AdaptiveLIFParameters(NamedTuple):
    beta: Tensor | float = 0.9
    threshold: Tensor | float = 1.0
    rho: Tensor | float = 0.95
    adaptation: Tensor | float = 0.2
    reset: str = "subtract"
    reset_delay: bool = True

    def lif(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)


class AdaptiveLIFState(NamedTuple):
    """State between calls, [B, ...]: membrane U, adaptation a and spikes S of the last step."""

    mem: Tensor
    adapt: Tensor
    spikes: Tensor


def check_adaptive_parameters(p: AdaptiveLIFParameters) -> None:
    check_lif_parameters(p.lif())
    check_range("rho", p.rho, 0.0, 1.0, False, True)
    check_range("adaptation", p.adaptation, 0.0, float("inf"), False, False)


def adaptive_lif_scan(
    current: Tensor,
    p: AdaptiveLIFParameters = AdaptiveLIFParameters(),
    state: AdaptiveLIFState | None = None,
    *,
    steps: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, AdaptiveLIFState]:
    """Run an ALIF population over a sequence.

    Returns:
        (spikes [T, B, ...], firing potential V [T, B, ...] (U with a delayed reset, Ũ with an immediate one),
        adaptation a [T, B, ...], final state).
    """
    check_adaptive_parameters(p)
    if steps is None and current.dim() < 2:
        raise ValueError(f"expected currents of shape [T, B, ...], got {list(current.shape)}")
    if not all_finite(current):
        raise ValueError("the input current contains NaN or inf")
    sample = current.shape[1:] if steps is not None else current.shape[2:]
    check_lif_shapes(p.lif(), sample)
    check_lif_shapes(LIFParameters(p.rho, p.adaptation), sample)
    s0 = (None, None, None) if state is None else (state.mem, state.adapt, state.spikes)
    spikes, pot, adapt = adaptive_forward_scan(
        current,
        *(_as(v, current) for v in (p.beta, p.threshold, p.rho, p.adaptation)),
        p.reset,
        p.reset_delay,
        *s0,
        steps,
    )
    return (
        spikes,
        pot,
        adapt,
        AdaptiveLIFState(
            *adaptive_state(pot, adapt, spikes, _as(p.threshold, current), p.reset, p.reset_delay)
        ),
    )


def _as(v, like: Tensor):
    return v.to(device=like.device, dtype=like.dtype) if isinstance(v, Tensor) else float(v)


class AdaptiveLIF(PerNeuronBuffers, nn.Module):
    """ALIF layer for time-first sequences: [T, B, ...] input currents -> [T, B, ...] spikes.

    ``beta``, ``threshold`` (θ_0), ``rho`` and ``adaptation`` (κ) are buffers, not trained by LFP.
    """

    per_neuron = ("beta", "threshold", "rho", "adaptation")

    def __init__(
        self,
        beta: float | Tensor = 0.9,
        threshold: float | Tensor = 1.0,
        rho: float | Tensor = 0.95,
        adaptation: float | Tensor = 0.2,
        reset: str = "subtract",
        reset_delay: bool = True,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        check_adaptive_parameters(AdaptiveLIFParameters(beta, threshold, rho, adaptation, reset, reset_delay))
        self.backend = validated_backend(backend)
        for name, v in (("beta", beta), ("threshold", threshold), ("rho", rho), ("adaptation", adaptation)):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.float32).clone())
        self.reset = reset
        self.reset_delay = reset_delay

    @property
    def parameters_(self) -> AdaptiveLIFParameters:
        return AdaptiveLIFParameters(
            self.beta, self.threshold, self.rho, self.adaptation, self.reset, self.reset_delay
        )

    def scan(self, current: Tensor, state: AdaptiveLIFState | None = None, steps: int | None = None):
        """(spikes, firing potential, adaptation, final state); see :func:`adaptive_lif_scan`."""
        return adaptive_lif_scan(current, self.parameters_, state, steps=steps)

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
            f"beta={f(self.beta)}, threshold={f(self.threshold)}, rho={f(self.rho)}, "
            f"adaptation={f(self.adaptation)}, reset={self.reset!r}, reset_delay={self.reset_delay}"
        )
