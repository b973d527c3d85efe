"""Leaky integrate-and-fire neuron with Heaviside spikes and no surrogate gradient (Eq. A.14-A.15).

Discrete dynamics over t = 1..T, U_0 given (zero by default), input current I_t = W X_t + b:

    reference (reset="subtract", reset_delay=True):
        reset_t = H(U_{t-1} - θ);   U_t = β U_{t-1} + I_t - θ reset_t;   S_t = H(U_t - θ)
    reset="zero", reset_delay=True:
        U_t = β U_{t-1} (1 - reset_t) + I_t                              (snntorch's zero reset)
    reset_delay=False (hardware style: reset right after the spike, before the next decay):
        Ũ_t = β U_{t-1} + I_t;  S_t = H(Ũ_t - θ);  U_t = Ũ_t - θ S_t  or  Ũ_t (1 - S_t)

H(x) = 1 if x > 0 else 0 (strict). β ∈ (0, 1] and θ > 0, scalars or per neuron.
The functional core is :func:`lif_scan`; :class:`LIF` is a thin module that holds the parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import all_finite
from ..kernels import CHOICES, lif_forward
from ..kernels.torch_scan import RESETS, membrane


class LIFParameters(NamedTuple):
    """Parameters of a LIF population. ``beta``/``threshold``: floats or tensors broadcastable to [B, ...]."""

    beta: Tensor | float = 0.9
    threshold: Tensor | float = 1.0
    reset: str = "subtract"
    reset_delay: bool = True


class LIFState(NamedTuple):
    """State between calls: the membrane U after the last step, [B, ...]."""

    mem: Tensor


def check_lif_parameters(p: LIFParameters) -> None:
    """Raise ValueError naming the bad value when a parameter is outside its range."""
    beta = torch.as_tensor(p.beta)
    thr = torch.as_tensor(p.threshold)
    if not torch.isfinite(beta).all() or (beta <= 0).any() or (beta > 1).any():
        raise ValueError(f"beta must lie in (0, 1], got {_show(p.beta)}")
    if not torch.isfinite(thr).all() or (thr <= 0).any():
        raise ValueError(f"threshold must be > 0 and finite, got {_show(p.threshold)}")
    if p.reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {p.reset!r}")
    if not isinstance(p.reset_delay, bool):
        raise ValueError(f"reset_delay must be True or False, got {p.reset_delay!r}")


def check_lif_shapes(p: LIFParameters, sample_shape, where: str = "LIF") -> None:
    """Raise ValueError naming ``where`` unless β and θ are numbers or per-neuron tensors that broadcast to
    one sample's features ``sample_shape`` (no time or batch axis)."""
    sample_shape = torch.Size(sample_shape)
    for name, v in (("beta", p.beta), ("threshold", p.threshold)):
        if not isinstance(v, Tensor) or v.numel() == 1:
            continue
        ok = v.dim() <= len(sample_shape)
        if ok:
            try:
                ok = torch.broadcast_shapes(v.shape, sample_shape) == sample_shape
            except RuntimeError:
                ok = False
        if not ok:
            raise ValueError(
                f"{where}: {name} has shape {list(v.shape)}; expected a number or a per-neuron tensor that "
                f"broadcasts to one sample's features {list(sample_shape)} (no time or batch axis)"
            )


def _show(v) -> str:
    t = torch.as_tensor(v)
    if t.numel() == 1:
        return repr(float(t))
    return f"a tensor with min {float(t.min()):.4g} and max {float(t.max()):.4g}"


def validated_backend(backend: str) -> str:
    if backend not in CHOICES:
        raise ValueError(f"unknown backend {backend!r}; expected one of {CHOICES}")
    return backend


class PerNeuronBuffers:
    """Loading of neuron buffers (β, θ, ...) that may be scalars or per-neuron tensors: a checkpoint's shape
    wins (e.g. after threshold homeostasis moved thresholds per neuron)."""

    per_neuron: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.per_neuron:
            key = prefix + name
            if key in state_dict and state_dict[key].shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(state_dict[key], dtype=getattr(self, name).dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def lif_scan(
    current: Tensor,
    p: LIFParameters = LIFParameters(),
    state: LIFState | None = None,
    *,
    steps: int | None = None,
    backend: str = "torch",
) -> tuple[Tensor, Tensor, LIFState]:
    """Run a LIF population over a whole sequence.

    Args:
        current: [T, B, ...] input currents, or [B, ...] with ``steps=T`` for a constant current.
        p: the neuron parameters.
        state: the membrane to start from (U_0); zero when None.
    Returns:
        (spikes [T, B, ...], membrane [T, B, ...], final state).
    """
    check_lif_parameters(p)
    if steps is None and current.dim() < 2:
        raise ValueError(f"expected currents of shape [T, B, ...], got {list(current.shape)}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps is None and current.shape[0] == 0:
        raise ValueError("expected at least one time step, got T = 0")
    if not all_finite(current):
        raise ValueError("the input current contains NaN or inf")
    check_lif_shapes(p, current.shape[1:] if steps is not None else current.shape[2:])
    beta, thr = _as(p.beta, current), _as(p.threshold, current)
    mem0 = None if state is None else state.mem
    spikes, pot = lif_forward(current, beta, thr, p.reset, p.reset_delay, mem0, steps, backend)
    mem = membrane(pot, spikes, thr, p.reset, p.reset_delay)
    return spikes, mem, LIFState(mem[-1])


def _as(v, like: Tensor):
    return v.to(device=like.device, dtype=like.dtype) if isinstance(v, Tensor) else float(v)


class LIF(PerNeuronBuffers, nn.Module):
    """LIF layer for time-first sequences: [T, B, ...] input currents -> [T, B, ...] spikes.

    Put it after a Linear or Conv layer in an :class:`lfp_snn.SpikingSequential` (or a plain
    ``nn.Sequential`` for dense layers). No state survives between calls: each call starts from U_0 = 0
    unless you use :meth:`scan` with an explicit state. ``beta`` and ``threshold`` are buffers
    (scalars or per-neuron tensors shaped like one sample's features), not trained by LFP.
    """

    per_neuron = ("beta", "threshold")

    def __init__(
        self,
        beta: float | Tensor = 0.9,
        threshold: float | Tensor = 1.0,
        reset: str = "subtract",
        reset_delay: bool = True,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        check_lif_parameters(LIFParameters(beta, threshold, reset, reset_delay))
        validated_backend(backend)
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).clone())
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.reset = reset
        self.reset_delay = reset_delay
        self.backend = backend

    @property
    def parameters_(self) -> LIFParameters:
        return LIFParameters(self.beta, self.threshold, self.reset, self.reset_delay)

    def scan(self, current: Tensor, state: LIFState | None = None, steps: int | None = None):
        """(spikes, membrane, final state) for [T, B, ...] currents; see :func:`lif_scan`."""
        return lif_scan(current, self.parameters_, state, steps=steps, backend=self.backend)

    def forward(self, current: Tensor) -> Tensor:
        if current.dim() < 3:
            raise ValueError(
                f"expected currents of shape [T, B, ...] (time first, then batch), got {list(current.shape)}; "
                "use scan() for a single unbatched population [T, N]"
            )
        return self.scan(current)[0]

    def extra_repr(self) -> str:
        b = float(self.beta) if self.beta.numel() == 1 else f"tensor{list(self.beta.shape)}"
        t = float(self.threshold) if self.threshold.numel() == 1 else f"tensor{list(self.threshold.shape)}"
        return f"beta={b}, threshold={t}, reset={self.reset!r}, reset_delay={self.reset_delay}"
