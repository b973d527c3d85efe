"""Multi-spike LIF neuron: several spikes per step, as sinabs (Speck) and rockpool (Xylo) run their neurons.

Discrete dynamics over t = 1..T, U_0 given (zero by default), input current I_t = W X_t + b:

    Ũ_t = β U_{t-1} + I_t;    S_t = n(Ũ_t);    U_t = Ũ_t - θ S_t
    n(v) = floor(v / θ) where v >= θ, else 0, at most ``max_spikes`` (None: no limit)

The reset is by subtraction and immediate (lfp-snn's ``reset="subtract", reset_delay=False`` with more than one
spike where Ũ_t >= 2θ); n fires at v = θ, where the single-spike LIF needs v > θ. The spike counts are what the
layer above receives. The LFP rule is the LIF's (docs/engine.md, "LIF layers") with P_t = U_{t-1}.

sinabs's ``LIF``/``LIFSqueeze`` (``spike_fn=MultiSpike``, ``MembraneSubtract``, ``norm_input=False``) and
rockpool's ``LIFTorch`` (``max_spikes_per_dt``) run these dynamics; ``lfp_snn.export.export_nir(...,
target="sinabs" | "rockpool")`` writes a model of these layers for them (docs/export.md, "Target presets").
The scans are torch only (:mod:`lfp_snn.kernels.multispike`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import all_finite
from ..kernels.multispike import multispike_forward_scan, multispike_membrane
from .lif import LIFParameters, PerNeuronBuffers, check_lif_parameters, check_lif_shapes


class MultiSpikeParameters(NamedTuple):
    beta: Tensor | float = 0.9
    threshold: Tensor | float = 1.0
    max_spikes: int | None = None

    def lif(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, "subtract", False)


class MultiSpikeState(NamedTuple):
    """The membrane U after the last step, [B, ...]."""

    mem: Tensor


def check_multispike_parameters(p: MultiSpikeParameters) -> None:
    check_lif_parameters(p.lif())
    m = p.max_spikes
    if m is not None and not (isinstance(m, int) and not isinstance(m, bool) and m >= 1):
        raise ValueError(f"max_spikes must be None (no limit) or an integer >= 1, got {m!r}")


def multispike_lif_scan(
    current: Tensor,
    p: MultiSpikeParameters = MultiSpikeParameters(),
    state: MultiSpikeState | None = None,
    *,
    steps: int | None = None,
) -> tuple[Tensor, Tensor, MultiSpikeState]:
    """(spike counts [T, B, ...], membrane U [T, B, ...], final state) for currents [T, B, ...] (or [B, ...]
    with ``steps=T``)."""
    check_multispike_parameters(p)
    if steps is None and current.dim() < 2:
        raise ValueError(f"expected currents of shape [T, B, ...], got {list(current.shape)}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps is None and current.shape[0] == 0:
        raise ValueError("expected at least one time step, got T = 0")
    if not all_finite(current):
        raise ValueError("the input current contains NaN or inf")
    check_lif_shapes(p.lif(), current.shape[1:] if steps is not None else current.shape[2:], "MultiSpikeLIF")
    beta, thr = _as(p.beta, current), _as(p.threshold, current)
    mem0 = None if state is None else state.mem
    spikes, pot = multispike_forward_scan(current, beta, thr, p.max_spikes, mem0, steps)
    mem = multispike_membrane(pot, thr, p.max_spikes)
    return spikes, mem, MultiSpikeState(mem[-1])


def _as(v, like: Tensor):
    return v.to(device=like.device, dtype=like.dtype) if isinstance(v, Tensor) else float(v)


class MultiSpikeLIF(PerNeuronBuffers, nn.Module):
    """Multi-spike LIF layer for time-first sequences: [T, B, ...] input currents -> [T, B, ...] spike counts.

    ``beta`` and ``threshold`` are buffers (scalars or per-neuron tensors), not trained by LFP; ``max_spikes``
    caps the spikes per step (None: no limit, as sinabs; rockpool's default is 2^16). ``reset`` and
    ``reset_delay`` are fixed (``"subtract"``, ``False``) and there for code that reads them off any neuron.
    """

    per_neuron = ("beta", "threshold")
    reset = "subtract"
    reset_delay = False

    def __init__(
        self, beta: float | Tensor = 0.9, threshold: float | Tensor = 1.0, max_spikes: int | None = None
    ) -> None:
        super().__init__()
        check_multispike_parameters(MultiSpikeParameters(beta, threshold, max_spikes))
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).clone())
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.max_spikes = max_spikes

    @property
    def parameters_(self) -> MultiSpikeParameters:
        return MultiSpikeParameters(self.beta, self.threshold, self.max_spikes)

    def scan(self, current: Tensor, state: MultiSpikeState | None = None, steps: int | None = None):
        """(spike counts, membrane, final state); see :func:`multispike_lif_scan`."""
        return multispike_lif_scan(current, self.parameters_, state, steps=steps)

    def forward(self, current: Tensor) -> Tensor:
        if current.dim() < 3:
            raise ValueError(
                f"expected currents of shape [T, B, ...] (time first, then batch), got {list(current.shape)}"
            )
        return self.scan(current)[0]

    def extra_repr(self) -> str:
        b = float(self.beta) if self.beta.numel() == 1 else f"tensor{list(self.beta.shape)}"
        t = float(self.threshold) if self.threshold.numel() == 1 else f"tensor{list(self.threshold.shape)}"
        return f"beta={b}, threshold={t}, max_spikes={self.max_spikes}"
