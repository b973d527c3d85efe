"""RecurrentLIF layers: X_t = I_t + V S_{t-1} and the LIF update, one step at a time (the recurrent product
waits for the last step's spikes); back, the LIF rule with the reward each step's spikes earn through V at
the next step, and F_V = |V| ⊙ Σ_t g_tᵀ S_{t-1} (lfp_snn.kernels.recurrent, docs/neurons.md). The layer
below gets g. State over stretches of time: U and the last spikes; carry: the reward for the previous
stretch's last step (membrane share plus what its spikes earn through V)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels.recurrent import recurrent_feedback_scan, recurrent_forward_scan
from ...kernels.torch_scan import membrane
from ...neurons.lif import check_lif_parameters, check_lif_shapes
from ...neurons.recurrent import RecurrentLIF, check_recurrent_weight
from ..activations import Act
from .base import Back
from .neuron import NeuronHandler, NeuronSetup


@dataclass
class RecurrentRecord:
    beta: Tensor
    threshold: Tensor
    state0: tuple  # (U, S) this stretch started from (Nones: zero)
    potential: Tensor
    spikes: Tensor
    current: Tensor | None


class RecurrentLIFHandler(NeuronHandler):
    learns = True

    def names(self) -> list[str]:
        return ["RecurrentLIF"]

    def check(self, m: RecurrentLIF) -> None:
        check_lif_parameters(m.parameters_)
        check_recurrent_weight(m.weight, m.features)

    def setup(self, node, env) -> NeuronSetup:
        return self.torch_only(node, super().setup(node, env), "recurrent LIF's")

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m: RecurrentLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        T, dt = ctx.steps, ctx.dtype
        if a.value.dim() != 2 or a.value.shape[1] != m.features:
            raise ValueError(
                f"{node.describe()} has {m.features} neurons; expected input rows of shape [N, {m.features}], got "
                f"{list(a.value.shape)}"
            )
        check_lif_shapes(m.parameters_, a.value.shape[1:], node.describe())
        x = self.current(a, dt, T)
        beta, thr = m.beta.to(dt), m.threshold.to(dt)
        st = ctx.state if ctx.state is not None else {}
        state0 = (st.get(f"{node.name}.mem"), st.get(f"{node.name}.spikes"))
        w = m.effective_weight().detach().to(dt)
        spikes, pot = recurrent_forward_scan(
            x, w, beta, thr, m.reset, m.reset_delay, *state0, T if a.constant else None
        )
        if ctx.state is not None:
            ctx.state[f"{node.name}.mem"] = membrane(pot[-1:], spikes[-1:], thr, m.reset, m.reset_delay)[
                0
            ].clone()
            ctx.state[f"{node.name}.spikes"] = spikes[-1].clone()
        rec = None
        if ctx.keep:
            rec = RecurrentRecord(beta, thr, state0, pot, spikes.to(torch.uint8), None if s.g_below else x)
        ctx.count_spikes(node.name, spikes)
        return Act(spikes.reshape(-1, *spikes.shape[2:]), False, True), rec

    def reverse(self, node, rec: RecurrentRecord, msg, ctx) -> Back:
        m: RecurrentLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        rt, _ = self.reward_steps(msg, ctx.steps)
        carry = ctx.carry
        c_in = None if carry is None else carry.pop(f"{node.name}.reward", None)
        w = m.effective_weight().detach().to(rt.dtype)
        g, fv, c = recurrent_feedback_scan(
            rt,
            rec.potential,
            rec.spikes,
            w,
            rec.beta,
            rec.threshold,
            m.reset,
            m.reset_delay,
            *rec.state0,
            s.eps,
            c_in,
        )
        rec.potential = None
        if carry is not None and rec.state0[0] is not None:
            carry[f"{node.name}.reward"] = c
        fv = fv.mul_(w.abs())
        if m.recurrent_mask is not None:
            fv.mul_(m.recurrent_mask.to(fv.dtype))
        back = self.down(node, g, rec.current, s, ctx)
        back.feedback["weight"] = fv
        return back
