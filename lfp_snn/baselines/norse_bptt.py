"""The norse baseline: BPTT with norse's ``LIFBoxCell`` and its SuperSpike surrogate.

Each lfp-snn ``LIF`` becomes a :class:`NorseLIF`, a thin module around ``norse.torch.LIFBoxCell`` with
``LIFBoxParameters(method="super", ...)``, stepped in a time loop (``z, state = cell(current, state)``); the
Linear/Conv/pooling modules are the lfp-snn model's own (shared parameters). Loss: cross-entropy on Σ_t spikes.

How the parameters are chosen, and what differs from lfp-snn's LIF (U_t = β U_{t-1} + I_t - θ reset_t,
S_t = H(U_t - θ)):

1. Neuron model. ``LIFBoxCell`` is a leaky integrator without a synaptic current. (norse's ``LIFCell`` is
   current-based: the input first charges a synaptic current that reaches the membrane one step later, so it
   cannot match the reference at all.)
2. Leak. norse takes one Euler step v <- v + dt τ⁻¹ (v_leak - v + i). With v_leak = 0, dt = 1 and
   τ_mem⁻¹ = 1 - β this is v_t = β v_{t-1} + (1 - β) i_t: the input is scaled by (1 - β). We feed
   i = k I / (1 - β) and set v_th = k θ, so norse's membrane is k U (k: the surrogate slope, below) and the
   spikes are those of lfp-snn. β = 1 (a perfect integrator) cannot be expressed: an error.
3. Reset. norse resets in the same step as the spike (no delay).
   - zero reset (norse's ``reset_value`` with v_reset = 0): the same spike trains as lfp-snn's zero reset,
     with or without delay (with a delay lfp-snn's membrane keeps its value one step longer, but the next
     step is β·0 + I either way).
   - subtract without delay: norse's own ``reset_subtract``; identical.
   - subtract with delay (the reference): norse has no delayed reset. Subtracting θ/β immediately (a
     ``reset_method`` given to ``LIFBoxParameters``) yields β (Ũ_t - θ/β) + I = β Ũ_t + I - θ, the delayed
     reference's recursion, so the spike trains are again the same.
4. Rounding. norse computes v + a (i - v) in float32 rather than β U + I, so a membrane that lands within
   rounding of θ may spike in one and not the other: the spikes agree up to such rare ties (tested on
   random networks), not bit for bit as snntorch's do.
5. Surrogate. norse 1.1.0's SuperSpike uses ∂z/∂x = 1 / (1 + |x|)² and ignores its ``alpha`` (we pass
   alpha = 1, so a norse that honours alpha gives the same). With the membrane in units of 1/k (k = the
   ``slope``) the surrogate in lfp-snn's units is k / (1 + k |U - θ|)². The default k = 1 is norse's
   SuperSpike as shipped, on a membrane equal to lfp-snn's U. k = 25 gives snntorch's fast-sigmoid shape
   (times 25), but together with point 6 it trains badly: every pass through a reset multiplies the
   gradient by about -kθ/β ≈ -28 (digits, 600 samples, T = 10, 4 epochs: 47% test accuracy with k = 25,
   95% with k = 1; snntorch, which detaches the reset, reaches 94% with k = 25).
6. Reset gradient. norse lets the gradient flow through the reset (z is not detached); snntorch detaches it.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from ..neurons import LIF
from . import StepNetwork, lif_constants, require

NORSE_SLOPE = 1.0  # norse's SuperSpike as shipped, on lfp-snn's membrane scale


def _norse():
    return require("norse.torch", "bptt-norse")


def delayed_subtract_reset(z: Tensor, v: Tensor, reset: Tensor, th: Tensor, beta: Tensor) -> Tensor:
    """An immediate reset by θ/β: the same spike trains as lfp-snn's subtract reset with a one-step delay."""
    return v - z * (th / beta)


class NorseLIF(nn.Module):
    """A norse ``LIFBoxCell`` that stands in for one lfp-snn LIF layer (see the module docstring).

    ``forward(current, state)`` takes lfp-snn's input current I_t [B, ...] and norse's state (None at t = 1)
    and returns ``(spikes, state)``; the membrane in ``state.v`` is k·U.
    """

    def __init__(self, lif: LIF, slope: float = NORSE_SLOPE) -> None:
        super().__init__()
        beta, thr = lif_constants(lif)
        if (beta >= 1).any():
            raise ValueError(
                "the norse baseline cannot express beta = 1: norse's LIFBoxCell is a leaky integrator whose "
                "input enters scaled by dt/tau_mem = 1 - beta"
            )
        self.register_buffer("beta", beta)
        self.register_buffer("tau_mem_inv", 1 - beta)  # with dt = 1
        self.register_buffer("v_th", slope * thr)
        self.register_buffer("input_scale", slope / (1 - beta))
        self.reset = lif.reset
        self.reset_delay = lif.reset_delay
        self.slope = slope
        self.cell = _norse().LIFBoxCell(self.parameters_(), dt=1.0)

    def parameters_(self):
        """norse's ``LIFBoxParameters`` for this layer (on the buffers' device)."""
        norse = _norse()
        functional = require("norse.torch.functional.reset", "bptt-norse")
        if self.reset == "zero":
            reset_method = functional.reset_value
        elif not self.reset_delay:
            reset_method = functional.reset_subtract
        else:
            reset_method = functools.partial(delayed_subtract_reset, beta=self.beta)
        zero = torch.zeros((), dtype=self.v_th.dtype, device=self.v_th.device)
        return norse.LIFBoxParameters(
            tau_mem_inv=self.tau_mem_inv,
            v_leak=zero,
            v_th=self.v_th,
            v_reset=zero,
            method="super",
            alpha=torch.as_tensor(1.0),
            reset_method=reset_method,
        )

    def _apply(self, fn, recurse=True):  # keep norse's parameter tuple on the buffers' device and dtype
        super()._apply(fn, recurse)
        self.cell.p = self.parameters_()
        return self

    def forward(self, current: Tensor, state=None):
        return self.cell(current * self.input_scale, state)

    def extra_repr(self) -> str:
        return f"reset={self.reset!r}, reset_delay={self.reset_delay}, slope={self.slope}"


class NorseNetwork(StepNetwork):
    """The lfp-snn model as a norse network: same layers (shared), :class:`NorseLIF` in place of each LIF.

    ``forward(x)``: time-first input [T, B, ...] -> output spikes [T, B, C].
    """

    library = "norse"

    def __init__(self, model: nn.Module, slope: float = NORSE_SLOPE) -> None:
        super().__init__(model, lambda lif: NorseLIF(lif, slope))
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return self._unroll(x, [None] * sum(self.neuron))


def norse_network(model: nn.Module, slope: float = NORSE_SLOPE) -> nn.Module:
    """The norse network for ``model``: :class:`NorseNetwork` for a chain of layers, the layer-wise form
    (:class:`~lfp_snn.baselines.graph.LayerwiseNetwork`) for residual graphs and BatchNorm."""
    from .graph import LayerwiseNetwork, is_chain

    if is_chain(model):
        return NorseNetwork(model, slope=slope)
    net = LayerwiseNetwork(model, lambda lif: NorseLIF(lif, slope))
    net.library, net.slope = "norse", slope
    return net
