"""Surrogate-gradient baselines: the same spiking networks trained by backpropagation through time (BPTT).

Two baselines, each in the real library; :data:`lfp_snn.training.METHODS` names them (its factories build the
networks here and wrap them in a training step):

- ``bptt-snntorch`` (:mod:`.snntorch_bptt`): ``snn.Leaky`` with the fast-sigmoid surrogate
  ∂S/∂U = 1 / (1 + 25 |U - θ|)² (the derivative of x / (1 + 25 |x|)); same β, θ, reset and reset delay, so
  the forward pass is spike-for-spike identical to lfp-snn's engine. ``CubaLIF`` becomes ``snn.Synaptic``,
  ``RecurrentLIF`` ``snn.RLeaky`` (all-to-all, its recurrent product on the lfp-snn layer's own V and mask),
  ``AdaptiveLIF`` the same dynamics written in torch with snntorch's surrogate (snntorch has no adaptive
  neuron); their spikes equal lfp-snn's (tested), except snntorch's zero reset with delay in ``Synaptic`` and
  ``RLeaky``, which is refused.
- ``bptt-norse`` (:mod:`.norse_bptt`): norse's ``LIFBoxCell`` (a leaky integrator without synaptic current)
  with norse's SuperSpike surrogate, ∂S/∂U = 1 / (1 + |U - θ|)² as norse ships it; matched to β, θ and the
  reset as closely as norse allows (the spikes agree with lfp-snn's; differences listed in that module). LIF
  layers only: a model with other neurons is refused.

Options (``TrainConfig.extra``): ``surrogate_slope`` (snntorch's k, default 25) and ``norse_slope`` (the k of
norse's surrogate in lfp-snn's membrane units, default 1).

Both build a step-by-step network around the lfp-snn model's own ``Linear``/``Conv``/pooling modules (for a
model that is not a chain of layers, a residual graph or one with BatchNorm, the layer-wise form of
:mod:`.graph`: the model's own graph on all steps at once, the library's neuron cells stepped through time,
the same BPTT), so the parameters are *shared*: the :class:`~lfp_snn.training.Trainer`'s optimiser (built on ``trainer.model``)
updates them and evaluation runs through lfp-snn's engine (:func:`lfp_snn.run`) on the very same weights.
The loss is cross-entropy on the output spike counts Σ_t S_t (snntorch's ``ce_count_loss``).

snntorch and norse are imported only when a baseline is built; without them the error says what to install.

A third baseline needs no library and no gradient: ``rstdp`` (:mod:`.rstdp`), reward-modulated STDP, a local
three-factor rule that writes ``p.grad = −ΔW`` on the model's own weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine import ELEMENTWISE, SHAPE_ONLY, leaves
from ..neurons import LIF
from ..ops import PARAMETRIC

# stateless layers a step-by-step network applies to one time step [B, ...] as they are
STEP_LAYERS = (*PARAMETRIC, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.Dropout, *SHAPE_ONLY)
STEP_LAYERS = (*STEP_LAYERS, *ELEMENTWISE)

DEFAULT_SLOPE = 25.0  # the paper's surrogate x / (1 + 25 |x|)

BASELINES = ("bptt-snntorch", "bptt-norse")


def step_layers(model: nn.Module, neurons: tuple[type, ...] = (LIF,)) -> list[tuple[str, nn.Module]]:
    """The layers of an lfp-snn spiking model in order (names as in ``named_modules``), checked for a
    step-by-step network: parametric, pooling, shape and element-wise layers run per step, neurons (of the
    types ``neurons`` the library can stand in for) are replaced by the library's neuron."""
    layers = leaves(model)
    if not any(isinstance(m, neurons) for _, m in layers):
        raise ValueError("the BPTT baselines train spiking models (with LIF layers); this model has none")
    for name, m in layers:
        if not isinstance(m, (*neurons, *STEP_LAYERS)):
            raise TypeError(f"layer {name!r} ({type(m).__name__}) is not supported by the BPTT baselines")
    return layers


def lif_constants(lif: LIF) -> tuple[Tensor, Tensor]:
    """β and θ of an lfp-snn LIF layer as float32 tensors (copies)."""
    return lif.beta.detach().clone(), lif.threshold.detach().clone()


def ce_count_loss(spikes: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy with the output spike counts Σ_t S_t as logits (same as ``snntorch.functional.ce_count_loss``).

    Args:
        spikes: output spikes [T, B, C].
        labels: class indices [B].
    """
    return F.cross_entropy(spikes.sum(0), labels)


class StepNetwork(nn.Module):
    """Base of the baselines' networks: holds the lfp-snn model's stateless layers (shared, not copied) and one
    library neuron per LIF layer; ``spike_counts`` holds Σ_{t,b} spikes per neuron of each LIF layer (keyed by
    the lfp-snn layer name) after every forward."""

    library = "?"

    def __init__(
        self,
        model: nn.Module,
        make_neuron: Callable[[nn.Module], nn.Module],
        neurons: tuple[type, ...] = (LIF,),
    ) -> None:
        super().__init__()
        self.names: list[str] = []
        self.neuron: list[bool] = []
        layers = []
        for name, m in step_layers(model, neurons):
            self.names.append(name)
            self.neuron.append(isinstance(m, neurons))
            layers.append(make_neuron(m) if isinstance(m, neurons) else m)
        self.layers = nn.ModuleList(layers)
        self.spike_counts: dict[str, Tensor] = {}

    def _check(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(f"expected a time-first input [T, B, ...], got shape {list(x.shape)}")

    def _unroll(self, x: Tensor, states: list) -> Tensor:
        """The time loop as the libraries' tutorials write it: every layer inside the loop, each library
        neuron called as ``neuron(current, state) -> (spikes, state)`` from ``states`` (one per neuron).
        Returns the output [T, B, C] and fills :attr:`spike_counts`."""
        self._check(x)
        counts = [0] * len(states)
        out = []
        for step in range(x.shape[0]):
            h = x[step]
            k = 0
            for layer, is_neuron in zip(self.layers, self.neuron):
                if is_neuron:
                    h, states[k] = layer(h, states[k])
                    counts[k] = counts[k] + h.detach().sum(0)
                    k += 1
                else:
                    h = layer(h)
            out.append(h)
        names = [n for n, is_lif in zip(self.names, self.neuron) if is_lif]
        self.spike_counts = dict(zip(names, counts))
        return torch.stack(out)


def require(module: str, baseline: str):
    """Import ``module`` (snntorch or norse) or raise an ImportError that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        raise ImportError(
            f"the {baseline} baseline needs the {root!r} package, which is not importable here ({e}); install "
            f"it next to your torch without letting pip replace torch, e.g. `pip install --no-deps {root}` "
            f"(snntorch also comes with `pip install 'lfp-snn[baselines]'`)"
        ) from e


__all__ = [
    "BASELINES",
    "DEFAULT_SLOPE",
    "StepNetwork",
    "ce_count_loss",
    "lif_constants",
    "require",
    "step_layers",
]
