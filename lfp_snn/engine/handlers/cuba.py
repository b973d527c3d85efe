"""CubaLIF layers: the synaptic scan, then the LIF membrane scan on the synaptic current; back, the LIF's
reverse scan gives g^U (the reward per unit of synaptic current), and the synaptic reverse scan turns it into
g^I for the layer below (docs/neurons.md):

    g^I_t = g^U_t + C^I_{t+1} / stabilize(I_t);   C^I_t = α I_{t-1} g^I_t

State over stretches of time: the membrane U and the current I at the boundary; carries: the membrane's
share C^U (into the last step's reward, as for the LIF) and the synaptic carry C^I.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels import lif_feedback, lif_forward
from ...kernels.synaptic import synaptic_feedback_scan, synaptic_forward_scan
from ...neurons.cuba import CubaLIF, CubaLIFParameters, check_cuba_parameters
from ...neurons.lif import LIFParameters, check_lif_shapes
from ..activations import Act
from .base import Back
from .lif import _last_membrane, _previous_membrane
from .neuron import NeuronHandler, NeuronSetup


@dataclass
class CubaRecord:
    alpha: Tensor
    beta: Tensor
    threshold: Tensor
    mem0: Tensor | None
    syn0: Tensor | None
    potential: Tensor  # V of the membrane, [T, B, ...]
    syn: Tensor  # I, [T, B, ...]
    current: Tensor | None  # X (kept where the layer below gets a reward, not g)


class CubaLIFHandler(NeuronHandler):
    def names(self) -> list[str]:
        return ["CubaLIF"]

    def check(self, m: CubaLIF) -> None:
        check_cuba_parameters(m.parameters_)

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m: CubaLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        T, dt = ctx.steps, ctx.dtype
        p: CubaLIFParameters = m.parameters_
        check_lif_shapes(p.lif(), a.value.shape[1:], node.describe())
        check_lif_shapes(LIFParameters(p.alpha, 1.0), a.value.shape[1:], node.describe())
        x = self.current(a, dt, T)
        alpha, beta, thr = m.alpha.to(dt), m.beta.to(dt), m.threshold.to(dt)
        st = ctx.state if ctx.state is not None else {}
        mem0, syn0 = st.get(f"{node.name}.mem"), st.get(f"{node.name}.syn")
        # the synaptic current may overwrite X when nothing else holds it (a fresh GEMM output)
        in_place = not a.constant and s.g_below and not ctx.keeps_output(node.inputs[0])
        syn = synaptic_forward_scan(x, alpha, syn0, T if a.constant else None, out=x if in_place else None)
        spikes, pot = lif_forward(
            syn,
            beta,
            thr,
            m.reset,
            m.reset_delay,
            mem0,
            None,
            s.backend,
            spike_dtype=torch.uint8 if ctx.keep and s.uint8_spikes else None,
        )
        if ctx.state is not None:
            ctx.state[f"{node.name}.mem"] = _last_membrane(m, pot, spikes, thr)
            ctx.state[f"{node.name}.syn"] = syn[-1].clone()
        rec = None
        if ctx.keep:
            rec = CubaRecord(alpha, beta, thr, mem0, syn0, pot, syn, None if s.g_below else x)
        ctx.count_spikes(node.name, spikes)
        return Act(spikes.reshape(-1, *spikes.shape[2:]), False, True), rec

    def reverse(self, node, rec: CubaRecord, msg, ctx) -> Back:
        m: CubaLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        rt, owned = self.reward_steps(msg, ctx.steps)
        carry = ctx.carry
        if carry is not None and f"{node.name}.mem" in carry:
            if not owned:
                rt, owned = rt.clone(), True
            rt[-1].add_(carry.pop(f"{node.name}.mem"))
        g = lif_feedback(
            rt,
            rec.potential,
            rec.beta,
            rec.threshold,
            m.reset,
            m.reset_delay,
            rec.mem0,
            s.eps,
            out=rt if owned else None,
            backend=s.backend,
        )
        rec.potential = None
        if carry is not None and rec.mem0 is not None:
            carry[f"{node.name}.mem"] = (
                _previous_membrane(rec.mem0, rec.threshold, m).mul_(rec.beta).mul_(g[0])
            )
        g, c_syn = synaptic_feedback_scan(
            g,
            rec.syn,
            rec.alpha,
            rec.syn0,
            s.eps,
            None if carry is None else carry.pop(f"{node.name}.syn", None),
            out=g,
        )
        if carry is not None and c_syn is not None:
            carry[f"{node.name}.syn"] = c_syn
        return self.down(node, g, rec.current, s, ctx)
