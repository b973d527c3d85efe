"""The surrogate-gradient baselines for models that are not a plain chain of layers: residual and merged
branches (``torch.max``, sums, concatenation), BatchNorm, any graph lfp-snn's engine runs.

:class:`LayerwiseNetwork` runs the lfp-snn model's own graph (:func:`lfp_snn.engine.build_graph`) node by
node on all T steps at once, as lfp-snn's engine and spikingjelly's multi-step mode do: every layer that is
not a neuron (Linear, Conv, pooling, BatchNorm, shape and element-wise ops, merges) is applied to the
[T·B, ...] rows of all steps together, and every neuron is replaced by the library's cell (snntorch's
``Leaky``, norse's LIF), stepped through t = 1..T. In a feed-forward graph a layer at step t reads only
layers below it at steps ≤ t, so this computes the same activations as the step-by-step loop, and
``loss.backward()`` through it is the same backpropagation through time. BatchNorm normalises over the T·B
rows in training, as lfp-snn's (tdBN) handler does, so the two networks spike alike there too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..engine.graph import Ref, build_graph
from ..neurons import LIF
from . import STEP_LAYERS

GRAPH_LAYERS = (*STEP_LAYERS, nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity)
"""Modules a layer-wise network applies to the rows of all steps as they are."""


def is_chain(model: nn.Module, neurons: tuple[type, ...] = (LIF,)) -> bool:
    """Whether ``model`` is a (nested) ``nn.Sequential`` of layers the step-by-step networks run (no
    BatchNorm: in a step loop it would normalise over one step's batch only)."""
    if not isinstance(model, nn.Sequential):
        return False
    stack = list(model.children())
    while stack:
        m = stack.pop()
        if isinstance(m, nn.Sequential):
            stack.extend(m.children())
        elif not isinstance(m, (*neurons, *STEP_LAYERS)):
            return False
    return True


def _substitute(x, values: dict):
    if isinstance(x, Ref):
        return values[x.index]
    if isinstance(x, (tuple, list)):
        return type(x)(_substitute(v, values) for v in x)
    if isinstance(x, dict):
        return {k: _substitute(v, values) for k, v in x.items()}
    return x


class LayerwiseNetwork(nn.Module):
    """The model's graph with the library's neuron cell in place of each neuron (see the module docstring).

    ``make_neuron(module) -> cell`` builds the cell, called ``cell(current, state) -> (spikes, state)`` from
    ``cell.init_state()`` (or None). ``forward(x)`` takes [T, B, ...] and returns the output [T, B, C];
    ``spike_counts`` holds Σ_{t,b} spikes per neuron of each neuron layer, keyed by its module path.
    """

    library = "?"

    def __init__(
        self,
        model: nn.Module,
        make_neuron: Callable[[nn.Module], nn.Module],
        neurons: tuple[type, ...] = (LIF,),
    ) -> None:
        super().__init__()
        graph = build_graph(model)
        self._graph = graph
        self._model = [model]  # a list: the layers stay the model's own (shared), registered once
        cells, self._cell_index = [], {}
        for n in graph.nodes[1:]:
            if n.kind != "module":
                continue
            m = n.module
            if isinstance(m, neurons):
                self._cell_index[n.index] = len(cells)
                cells.append(make_neuron(m))
            elif not isinstance(m, GRAPH_LAYERS):
                raise ValueError(
                    f"{n.describe()} is not supported by the BPTT baselines; they run "
                    f"{', '.join(sorted({t.__name__ for t in (*neurons, *GRAPH_LAYERS)}))} and merges of them"
                )
        if not cells:
            raise ValueError("the BPTT baselines train spiking models (with LIF layers); this model has none")
        self.cells = nn.ModuleList(cells)
        self.spike_counts: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[0] < 1:
            raise ValueError(f"expected a time-first input [T, B, ...], got shape {list(x.shape)}")
        T = x.shape[0]
        values: dict[int, object] = {0: x.reshape(-1, *x.shape[2:])}
        counts = {}
        for n in self._graph.nodes[1:]:
            if n.kind == "module":
                h = values[n.inputs[0]]
                k = self._cell_index.get(n.index)
                if k is None:
                    values[n.index] = n.module(h)
                    continue
                cell = self.cells[k]
                cur = h.reshape(T, -1, *h.shape[1:])
                state = cell.init_state() if hasattr(cell, "init_state") else None
                out = []
                for t in range(T):
                    s, state = cell(cur[t], state)
                    out.append(s)
                spikes = torch.stack(out)
                counts[n.name] = spikes.detach().sum((0, 1))
                values[n.index] = spikes.reshape(-1, *spikes.shape[2:])
            else:
                args, kwargs = _substitute(n.args, values), _substitute(n.kwargs, values)
                if n.kind == "method":
                    values[n.index] = getattr(args[0], n.target)(*args[1:], **kwargs)
                else:
                    values[n.index] = n.target(*args, **kwargs)
        self.spike_counts = counts
        y = values[self._graph.output]
        return y.reshape(T, -1, *y.shape[1:])
