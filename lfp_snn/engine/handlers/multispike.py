"""Multi-spike LIF layers (:class:`lfp_snn.neurons.MultiSpikeLIF`): the membrane scan forward with
S_t = floor(Ũ_t/θ) spikes, the LIF's ε rule back (P_t = U_{t-1} = Ũ_{t-1} - θ S_{t-1}). Torch scans only.

The spike counts go up as real values: they are integers that uint8 holds exactly only with
``max_spikes <= 255``, and only then are they kept as uint8 for a Linear reader. Over stretches of time the
layer starts from the membrane the previous stretch left and hands the membrane's share C back, as the LIF.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels.multispike import multispike_feedback_scan, multispike_forward_scan, multispike_membrane
from ...neurons.lif import check_lif_shapes
from ...neurons.multispike import MultiSpikeLIF, check_multispike_parameters
from ..activations import Act
from .base import Back
from .neuron import NeuronHandler, NeuronSetup


@dataclass
class MultiSpikeRecord:
    beta: Tensor
    threshold: Tensor
    mem0: Tensor | None
    potential: Tensor  # V = Ũ, [T, B, ...]
    current: Tensor | None  # I, kept where the layer below gets a reward (not g)


class MultiSpikeLIFHandler(NeuronHandler):
    normalises = True

    def names(self) -> list[str]:
        return ["MultiSpikeLIF"]

    def check(self, m: MultiSpikeLIF) -> None:
        check_multispike_parameters(m.parameters_)

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m: MultiSpikeLIF = node.module
        s: NeuronSetup = self.torch_only(node, ctx.setup(node), "multi-spike")
        T, dt = ctx.steps, ctx.dtype
        check_lif_shapes(m.parameters_.lif(), a.value.shape[1:], node.describe())
        current = self.current(a, dt, T)
        beta, thr = m.beta.to(dt), m.threshold.to(dt)
        mem0 = None if ctx.state is None else ctx.state.get(node.name)
        if mem0 is None and ctx.state is not None and ctx.start > 0 and a.constant:
            _, v = multispike_forward_scan(current, beta, thr, m.max_spikes, None, ctx.start)
            mem0 = multispike_membrane(v[-1:], thr, m.max_spikes)[0]
        small = m.max_spikes is not None and m.max_spikes <= 255
        spikes, pot = multispike_forward_scan(
            current,
            beta,
            thr,
            m.max_spikes,
            mem0,
            T if a.constant else None,
            spike_dtype=torch.uint8 if ctx.keep and s.uint8_spikes and small else None,
        )
        if ctx.state is not None:
            ctx.state[node.name] = multispike_membrane(pot[-1:], thr, m.max_spikes)[0].clone()
        rec = None
        if ctx.keep:
            rec = MultiSpikeRecord(beta, thr, mem0, pot, None if s.g_below else current)
        del pot
        ctx.count_spikes(node.name, spikes)
        return Act(spikes.reshape(-1, *spikes.shape[2:]), False, small), rec

    def reverse(self, node, rec: MultiSpikeRecord, msg, ctx) -> Back:
        m: MultiSpikeLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        rt, owned = self.reward_steps(msg, ctx.steps)
        if ctx.carry is not None and node.name in ctx.carry:  # C from the later stretch joins the last step
            if not owned:
                rt, owned = rt.clone(), True
            rt[-1].add_(ctx.carry.pop(node.name))
        g = multispike_feedback_scan(
            rt,
            rec.potential,
            rec.beta,
            rec.threshold,
            m.max_spikes,
            rec.mem0,
            s.eps,
            out=rt if owned else None,
            norm=s.reward_norm,
        )
        rec.potential = None
        if ctx.carry is not None and rec.mem0 is not None:  # C_1 = β P_1 g_1, P_1 = U_0
            ctx.carry[node.name] = rec.mem0.clone().mul_(rec.beta).mul_(g[0])
        return self.down(node, g, rec.current, s, ctx)
