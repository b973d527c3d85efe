"""The snntorch baseline: BPTT with a fast-sigmoid surrogate, built as snntorch's tutorials build networks.

Each lfp-snn ``LIF`` becomes ``snn.Leaky(beta, threshold, spike_grad=surrogate.fast_sigmoid(slope=25),
reset_mechanism=..., reset_delay=..., init_hidden=False)``; the time loop lives in ``forward`` with explicit
membranes (``mem = lif.init_leaky()``; ``spk, mem = lif(cur, mem)``), and the loss is
``snntorch.functional.ce_count_loss()`` (cross-entropy on Σ_t spikes). The Linear/Conv/pooling modules are the
lfp-snn model's own, so the two networks share their parameters.

Forward equivalence with lfp-snn's engine (``lfp_snn.run``), checked in ``tests/test_baselines.py``:

- reset_delay=True (the reference, subtract or zero): snntorch computes reset_t = H(U_{t-1} - θ) from the
  previous membrane and U_t = β U_{t-1} + I_t - θ reset_t (subtract) or β U_{t-1} (1 - reset_t) + I_t (zero),
  S_t = H(U_t - θ) with a strict inequality: the same operations in the same order, so the spikes are
  identical.
- reset_delay=False, zero: identical too (after a spike U = 0 < θ, so snntorch's extra reset_t never fires).
- reset_delay=False, subtract: snntorch still computes reset_t = H(U_{t-1} - θ) on the already-reset
  membrane and subtracts θ reset_t *before* deciding S_t, then undoes it (``do_reset = spk - reset``). When a
  membrane exceeds 2θ before its reset (so U_{t-1} > θ after subtracting θ once) snntorch decides the next
  spike on U - θ while lfp-snn decides on U: the spikes differ. They agree whenever Ũ_t <= 2θ at every step,
  e.g. for currents I <= (2 - β) θ.

Gradients: snntorch detaches the reset term (reset_t carries no gradient); ∂S/∂U = 1 / (1 + k |U - θ|)²
with k = 25 (the derivative of x / (1 + k |x|)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..neurons import LIF, AdaptiveLIF, CubaLIF, RecurrentLIF
from . import DEFAULT_SLOPE, StepNetwork, lif_constants, require

NEURONS = (LIF, CubaLIF, AdaptiveLIF, RecurrentLIF)  # what the snntorch network replaces


def _snntorch():
    snn = require("snntorch", "bptt-snntorch")
    surrogate = require("snntorch.surrogate", "bptt-snntorch")
    return snn, surrogate


def make_leaky(lif: LIF, slope: float = DEFAULT_SLOPE) -> nn.Module:
    """An ``snn.Leaky`` with the LIF layer's β, θ, reset and reset delay and the fast-sigmoid surrogate."""
    snn, surrogate = _snntorch()
    beta, thr = lif_constants(lif)
    leaky = snn.Leaky(
        beta=beta,
        threshold=thr,
        spike_grad=surrogate.fast_sigmoid(slope=slope),
        reset_mechanism=lif.reset,
        reset_delay=lif.reset_delay,
        init_hidden=False,
    )
    # snntorch keeps every neuron in a class-wide list for its init_hidden helpers (reset_hidden,
    # detach_hidden); with explicit membranes nothing uses it, and it would keep every network alive.
    instances = snn.SpikingNeuron.instances
    if instances and instances[-1] is leaky:
        instances.pop()
    return leaky


def _forget(neuron) -> None:
    """Drop ``neuron`` from snntorch's class-wide instance list (see :func:`make_leaky`)."""
    snn, _ = _snntorch()
    instances = snn.SpikingNeuron.instances
    if instances and instances[-1] is neuron:
        instances.pop()


class LeakyStep(nn.Module):
    """``snn.Leaky`` called as ``(current, mem) -> (spikes, mem)``."""

    def __init__(self, lif: LIF, slope: float) -> None:
        super().__init__()
        self.neuron = make_leaky(lif, slope)

    def init_state(self):
        return self.neuron.init_leaky()

    def forward(self, cur, state):
        return self.neuron(cur, state)


class SynapticStep(nn.Module):
    """``snn.Synaptic`` (α, β, θ, reset, delay of the lfp-snn ``CubaLIF``): state (syn, mem)."""

    def __init__(self, m: CubaLIF, slope: float) -> None:
        super().__init__()
        snn, surrogate = _snntorch()
        self.neuron = snn.Synaptic(
            alpha=m.alpha.detach().clone(),
            beta=m.beta.detach().clone(),
            threshold=m.threshold.detach().clone(),
            spike_grad=surrogate.fast_sigmoid(slope=slope),
            reset_mechanism=m.reset,
            reset_delay=m.reset_delay,
            init_hidden=False,
        )
        _forget(self.neuron)

    def init_state(self):
        return self.neuron.init_synaptic()

    def forward(self, cur, state):
        spk, syn, mem = self.neuron(cur, *state)
        return spk, (syn, mem)


class _SharedRecurrent(nn.Module):
    """V S (times the mask) with the lfp-snn layer's own V: the two networks share the recurrent weights."""

    def __init__(self, m: RecurrentLIF) -> None:
        super().__init__()
        self.m = [m]  # a list: not a submodule, so V is not registered twice

    def forward(self, spk):
        return F.linear(spk, self.m[0].effective_weight())


class RLeakyStep(nn.Module):
    """``snn.RLeaky`` (all-to-all) whose recurrent product uses the lfp-snn ``RecurrentLIF``'s V (and mask):
    state (spikes, mem)."""

    def __init__(self, m: RecurrentLIF, slope: float) -> None:
        super().__init__()
        snn, surrogate = _snntorch()
        self.neuron = snn.RLeaky(
            beta=m.beta.detach().clone(),
            linear_features=m.features,
            threshold=m.threshold.detach().clone(),
            spike_grad=surrogate.fast_sigmoid(slope=slope),
            reset_mechanism=m.reset,
            reset_delay=m.reset_delay,
            init_hidden=False,
        )
        _forget(self.neuron)
        self.neuron.recurrent = _SharedRecurrent(m)

    def init_state(self):
        return self.neuron.init_rleaky()

    def forward(self, cur, state):
        spk, mem = self.neuron(cur, *state)
        return spk, (spk, mem)


class AdaptiveStep(nn.Module):
    """The lfp-snn ``AdaptiveLIF``'s dynamics written step by step in torch with snntorch's fast-sigmoid
    surrogate for ∂S/∂(U - θ_t) (snntorch has no adaptive neuron); the adaptation a_t = ρ a_{t-1} + κ S_{t-1}
    carries the gradient as in e-prop-style ALIF BPTT. State (U, a, S)."""

    def __init__(self, m: AdaptiveLIF, slope: float) -> None:
        super().__init__()
        _, surrogate = _snntorch()
        self.spike = surrogate.fast_sigmoid(slope=slope)
        for name in ("beta", "threshold", "rho", "adaptation"):
            self.register_buffer(name, getattr(m, name).detach().clone())
        self.reset, self.reset_delay = m.reset, m.reset_delay

    def init_state(self):
        return None

    def forward(self, cur, state):
        if state is None:
            z = torch.zeros_like(cur)
            state = (z, z, z)
        u, a_prev, s_prev = state
        a = self.rho * a_prev + self.adaptation * s_prev
        thr = self.threshold + a
        if self.reset_delay:
            if self.reset == "subtract":
                u = self.beta * u + cur - (self.threshold + a_prev) * s_prev.detach()
            else:
                u = self.beta * u * (1 - s_prev.detach()) + cur
            s = self.spike(u - thr)
        else:
            pre = self.beta * u + cur
            s = self.spike(pre - thr)
            u = pre - thr * s.detach() if self.reset == "subtract" else pre * (1 - s.detach())
        return s, (u, a, s)


def make_step(m: nn.Module, slope: float = DEFAULT_SLOPE) -> nn.Module:
    """The snntorch-side neuron for an lfp-snn neuron module."""
    if isinstance(m, (CubaLIF, RecurrentLIF)) and m.reset == "zero" and m.reset_delay:
        raise ValueError(
            f"snntorch's {'Synaptic' if isinstance(m, CubaLIF) else 'RLeaky'} resets to zero by removing the whole "
            "new membrane (the step's input included) where lfp-snn's neuron, like snntorch's Leaky, zeroes only "
            "the decayed part: the two networks would spike differently; use reset='subtract' or "
            "reset_delay=False for the BPTT baseline"
        )
    if isinstance(m, CubaLIF):
        return SynapticStep(m, slope)
    if isinstance(m, RecurrentLIF):
        return RLeakyStep(m, slope)
    if isinstance(m, AdaptiveLIF):
        return AdaptiveStep(m, slope)
    return LeakyStep(m, slope)


class SnnTorchNetwork(StepNetwork):
    """The lfp-snn model as an snntorch network: same layers (shared), ``snn.Leaky`` in place of each LIF.

    ``forward(x)`` takes the time-first input [T, B, ...] (as the Trainer's encoder makes it) and returns the
    output spikes [T, B, C].
    """

    library = "snntorch"

    def __init__(self, model: nn.Module, slope: float = DEFAULT_SLOPE) -> None:
        super().__init__(model, lambda m: make_step(m, slope), NEURONS)
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return self._unroll(
            x, [m.init_state() for m, is_neuron in zip(self.layers, self.neuron) if is_neuron]
        )


def snntorch_network(model: nn.Module, slope: float = DEFAULT_SLOPE) -> nn.Module:
    """The snntorch network for ``model``: the tutorials' step-by-step loop (:class:`SnnTorchNetwork`) for a
    chain of layers, the layer-wise form (:class:`~lfp_snn.baselines.graph.LayerwiseNetwork`: the same
    BPTT) for residual graphs and BatchNorm."""
    from .graph import LayerwiseNetwork, is_chain

    if is_chain(model, NEURONS):
        return SnnTorchNetwork(model, slope=slope)
    net = LayerwiseNetwork(model, lambda m: make_step(m, slope), NEURONS)
    net.library, net.slope = "snntorch", slope
    return net


def snntorch_loss():
    """``snntorch.functional.ce_count_loss()``: cross-entropy on the output spike counts."""
    sf = require("snntorch.functional", "bptt-snntorch")
    return sf.ce_count_loss()
