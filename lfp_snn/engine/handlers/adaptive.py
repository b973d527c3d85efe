"""AdaptiveLIF layers: the ALIF scans of lfp_snn.kernels.adaptive (torch reference) forward and back; the
layer below gets g (docs/neurons.md). State over stretches of time: U, a and the last spikes; carries: the
reward handed to the previous stretch's last step (membrane share and the adaptation's share of its spikes)
and the adaptation's carry."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ...kernels.adaptive import adaptive_feedback_scan, adaptive_forward_scan, adaptive_state
from ...neurons.adaptive import AdaptiveLIF, check_adaptive_parameters
from ...neurons.lif import LIFParameters, check_lif_shapes
from ..activations import Act
from .base import Back
from .neuron import NeuronHandler, NeuronSetup

_STATE = ("mem", "adapt", "spikes")


@dataclass
class AdaptiveRecord:
    params: tuple  # β, θ_0, ρ, κ in the computation's dtype
    state0: tuple  # (U, a, S) this stretch started from (Nones: zero)
    potential: Tensor
    adapt: Tensor
    current: Tensor | None


class AdaptiveLIFHandler(NeuronHandler):
    def names(self) -> list[str]:
        return ["AdaptiveLIF"]

    def check(self, m: AdaptiveLIF) -> None:
        check_adaptive_parameters(m.parameters_)

    def setup(self, node, env) -> NeuronSetup:
        return self.torch_only(node, super().setup(node, env), "adaptive LIF's")

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m: AdaptiveLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        T, dt = ctx.steps, ctx.dtype
        p = m.parameters_
        check_lif_shapes(p.lif(), a.value.shape[1:], node.describe())
        check_lif_shapes(LIFParameters(p.rho, p.adaptation), a.value.shape[1:], node.describe())
        x = self.current(a, dt, T)
        params = tuple(v.to(dt) for v in (m.beta, m.threshold, m.rho, m.adaptation))
        st = ctx.state if ctx.state is not None else {}
        state0 = tuple(st.get(f"{node.name}.{k}") for k in _STATE)
        spikes, pot, adapt = adaptive_forward_scan(
            x, *params, m.reset, m.reset_delay, *state0, T if a.constant else None
        )
        if ctx.state is not None:
            for k, v in zip(_STATE, adaptive_state(pot, adapt, spikes, params[1], m.reset, m.reset_delay)):
                ctx.state[f"{node.name}.{k}"] = v
        rec = None
        if ctx.keep:
            rec = AdaptiveRecord(params, state0, pot, adapt, None if s.g_below else x)
        ctx.count_spikes(node.name, spikes)
        return Act(spikes.reshape(-1, *spikes.shape[2:]), False, True), rec

    def reverse(self, node, rec: AdaptiveRecord, msg, ctx) -> Back:
        m: AdaptiveLIF = node.module
        s: NeuronSetup = ctx.setup(node)
        rt, _ = self.reward_steps(msg, ctx.steps)
        carry = ctx.carry
        c_in = ca_in = None
        if carry is not None:
            c_in, ca_in = carry.pop(f"{node.name}.reward", None), carry.pop(f"{node.name}.adapt", None)
        g, c, ca = adaptive_feedback_scan(
            rt, rec.potential, rec.adapt, *rec.params, m.reset, m.reset_delay, *rec.state0, s.eps, c_in, ca_in
        )
        rec.potential = rec.adapt = None
        if carry is not None and rec.state0[0] is not None:
            carry[f"{node.name}.reward"], carry[f"{node.name}.adapt"] = c, ca
        return self.down(node, g, rec.current, s, ctx)
