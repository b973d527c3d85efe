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

from torch import Tensor, nn

from ..neurons import LIF
from . import DEFAULT_SLOPE, StepNetwork, lif_constants, require


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


class SnnTorchNetwork(StepNetwork):
    """The lfp-snn model as an snntorch network: same layers (shared), ``snn.Leaky`` in place of each LIF.

    ``forward(x)`` takes the time-first input [T, B, ...] (as the Trainer's encoder makes it) and returns the
    output spikes [T, B, C].
    """

    library = "snntorch"

    def __init__(self, model: nn.Module, slope: float = DEFAULT_SLOPE) -> None:
        super().__init__(model, lambda lif: make_leaky(lif, slope))
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return self._unroll(x, [m.init_leaky() for m, is_lif in zip(self.layers, self.neuron) if is_lif])


def snntorch_loss():
    """``snntorch.functional.ce_count_loss()``: cross-entropy on the output spike counts."""
    sf = require("snntorch.functional", "bptt-snntorch")
    return sf.ce_count_loss()
