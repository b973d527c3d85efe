"""The forward pass: run the graph node by node over all time steps at once, keeping typed records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .activations import Act
from .context import ForwardContext
from .plan import CompiledPlan


@dataclass
class Trace:
    """What the forward pass kept for the feedback pass.

    ``records`` and ``layouts`` are per node (``layouts[i]``: whether node i's output is the same at every
    step, None for shape queries); ``output`` is ANN [B, C] or SNN [T, B, C].
    """

    plan: CompiledPlan
    records: list
    layouts: list
    steps: int | None
    batch: int
    input_constant: bool
    output: Tensor
    output_constant: bool
    spike_counts: dict[str, Tensor] = field(default_factory=dict)
    spike_rate: dict[str, float] = field(default_factory=dict)

    def record(self, name: str):
        """The record the node ``name`` (e.g. a module path such as ``"0"`` or ``"block.fc"``) kept."""
        return self.records[self.plan.graph.node(name).index]


def input_act(cp: CompiledPlan, inputs: Tensor, steps: int | None) -> tuple[Act, int | None]:
    """The model input as rows, and T."""
    binary = inputs.dtype == torch.uint8 or inputs.dtype == torch.bool
    x = inputs.to(torch.uint8) if inputs.dtype == torch.bool else inputs
    if not cp.spiking:
        return Act(x, False, binary), None
    if steps is not None:
        return Act(x, True, binary), steps
    if x.shape[0] > 1 and x.stride(0) == 0:  # one sample expanded over T (constant_encode): read it once
        return Act(x[0], True, binary), x.shape[0]
    return Act(x.reshape(-1, *x.shape[2:]), False, binary), x.shape[0]


@torch.no_grad()
def run_forward(
    cp: CompiledPlan,
    inputs: Tensor,
    steps: int | None = None,
    *,
    keep: bool = True,
    generator: torch.Generator | None = None,
    noise: float = 0.0,
    state: dict[str, Tensor] | None = None,
    start: int = 0,
    cache: dict | None = None,
    observe: Callable | None = None,
) -> Trace:
    """Run the model of ``cp`` on ``inputs`` and keep what the feedback needs (nothing with ``keep=False``);
    ``observe(node, inputs, output)``, when given, is called after every node (see
    :func:`lfp_snn.engine.forward_trace`)."""
    nodes = cp.graph.nodes
    act, T = input_act(cp, inputs, steps)
    batch = act.value.shape[0] if (T is None or act.constant) else act.value.shape[0] // T
    values: list = [None] * len(nodes)
    values[0] = act
    records: list = [None] * len(nodes)
    layouts: list = [None] * len(nodes)
    layouts[0] = act.constant
    remaining = [len(n.users) for n in nodes]
    ctx = ForwardContext(cp, T, cp.dtype, keep, values, generator, noise, state, start, cache, observe)
    for node in nodes[1:]:
        ins = [values[i] for i in node.inputs if isinstance(values[i], Act)]
        try:
            out, rec = node.handler.forward(node, ins, ctx)
        except RuntimeError as e:  # torch's message names neither the layer nor the shapes in our terms
            shapes = [list(a.value.shape) for a in ins]
            raise ValueError(
                f"{node.describe()} cannot take its input of shape {shapes[0] if len(shapes) == 1 else shapes}"
                f"{' (rows = T·B)' if T is not None else ''}: {e}"
            ) from e
        if observe is not None:
            observe(node, ins, out)
        values[node.index], records[node.index] = out, rec
        layouts[node.index] = out.constant if isinstance(out, Act) else None
        for i in node.inputs:  # free what no later node reads
            remaining[i] -= 1
            if remaining[i] == 0 and i != cp.graph.output:
                values[i] = None
    out_act = values[cp.graph.output]
    out = out_act.float(cp.dtype)
    if T is not None:
        out = (
            out.unsqueeze(0).expand(T, *out.shape) if out_act.constant else out.reshape(T, -1, *out.shape[1:])
        )
    rates = {k: float(c.sum()) / max(ctx.spike_slots[k], 1) for k, c in ctx.spike_counts.items()}
    return Trace(
        cp,
        records,
        layouts,
        T,
        batch,
        act.constant,
        out,
        bool(out_act.constant and T is not None),
        ctx.spike_counts,
        rates,
    )
