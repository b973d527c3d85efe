"""LIF layers: the membrane scan forward, the reference's time-unrolled ε rule back (docs/engine.md).

Forward (one scan over t for all T·B rows' neurons; kernels in :mod:`lfp_snn.kernels`):
reset_t = H(U_{t-1} - θ); U_t = β U_{t-1} + I_t - θ reset_t; S_t = H(U_t - θ) (and the other reset modes).
The layer keeps its firing potential V (the value compared with θ): the reverse scan recovers everything else
from it. Over a Linear/Conv output read by nothing else, V overwrites the current's buffer, and with
``storage="recompute"`` nothing is kept: the current is made again from the layer below's kept input. A
current that is the same at every step (a layer over the image) keeps only that [B, ...] current: the forward
writes no V, and the feedback scan makes V again block by block inside it (native backend; the others scan
forward again first).

Reverse, t = T..1: R_t = (reward at S_t) + C_{t+1}; D_t = |P_t| + |Ũ_t - P_t|; g_t = R_t / (D_t + ε);
C_t = β P_t g_t (with ``reward_norm="maxabs"``, R_t ← R_t / max|R_t| over the batch and neurons first). The layer below gets g itself (:class:`Normalized`) when it is a Linear/Conv layer read only
here, else the current's share of the membrane as a reward, R^I_t = I_t ⊙ g_t.

Over stretches of time (``time_chunk``) the layer starts from the membrane the previous stretch left
(``ctx.state``) and hands the membrane's share C_{t0} back across the boundary (``ctx.carry``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels import lif_feedback, lif_feedback_constant, lif_forward
from ...kernels.layout import channels_back, channels_innermost, channels_last
from ...kernels.torch_scan import membrane
from ...neurons.lif import LIF, check_lif_parameters, check_lif_shapes
from ...ops import row_slices
from ...quantization import fixed_lif_scan
from ..activations import Act, Normalized
from .base import Back
from .neuron import NeuronHandler, NeuronSetup


@dataclass
class LIFRecord:
    beta: Tensor
    threshold: Tensor
    mem0: Tensor | None  # the membrane this stretch started from (None: U_0 = 0)
    potential: Tensor | None  # V [T, B, ...]
    current: Tensor | None  # I: [B, ...] when constant (V is recomputed from it), else [T, B, ...] or None
    constant: bool  # the current is the same at every step


class LIFHandler(NeuronHandler):
    recomputes = True
    advances_constant = True
    normalises = True

    def names(self) -> list[str]:
        return ["LIF"]

    def check(self, m: LIF) -> None:
        check_lif_parameters(m.parameters_)

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m: LIF = node.module
        s: NeuronSetup = ctx.setup(node)
        T, dt = ctx.steps, ctx.dtype
        check_lif_shapes(m.parameters_, a.value.shape[1:], node.describe())
        if ctx.compiled.fixed is not None:
            return self._forward_fixed(node, a, ctx, ctx.compiled.fixed)
        current = self.current(a, dt, T)
        beta, thr = m.beta.to(dt), m.threshold.to(dt)
        mem0 = None
        if ctx.state is not None:
            mem0 = ctx.state.get(node.name)
            if mem0 is None and ctx.start > 0 and a.constant:
                mem0 = _advance(m, s.backend, current, beta, thr, ctx.start, T)
        # V is written only where something reads it: the record (a constant current's V is made again in the
        # feedback, in recompute mode from the layer below) or the membrane handed to the next stretch
        keep_pot = ctx.keep and not a.constant and not s.recompute
        need_pot = keep_pot or ctx.state is not None
        # the potential may overwrite the current when nothing else holds it (a fresh GEMM output)
        in_place = (
            need_pot and ctx.keep and not a.constant and s.g_below and not ctx.keeps_output(node.inputs[0])
        )
        spikes, pot = lif_forward(
            current,
            beta,
            thr,
            m.reset,
            m.reset_delay,
            mem0,
            T if a.constant else None,
            s.backend,
            out=current if in_place else None,
            spike_dtype=torch.uint8 if ctx.keep and s.uint8_spikes else None,
            potential=need_pot,
        )
        if ctx.state is not None:
            ctx.state[node.name] = _last_membrane(m, pot, spikes, thr)
        rec = None
        if ctx.keep:
            rec = LIFRecord(
                beta,
                thr,
                mem0,
                pot if keep_pot else None,
                current if (a.constant or not s.g_below) else None,
                a.constant,
            )
        del pot, current
        ctx.count_spikes(node.name, spikes)
        return Act(spikes.reshape(-1, *spikes.shape[2:]), False, True), rec

    def _forward_fixed(self, node, a: Act, ctx, fx):
        """The integer LIF (plan.fixed_point) on the integer current I of the layer below: the bundle's
        dynamics step by step (:func:`lfp_snn.quantization.fixed_lif_scan`). The record holds what the ε rule's
        reverse scan reads: the firing potential in real units (V_q s, exact for mem_bits <= 24 in float32),
        θ_q s and the effective β of the integer decay."""
        m: LIF = node.module
        q = fx.layer(node.index)
        T, dt = ctx.steps, ctx.dtype
        cur = a.value.to(torch.int64)
        cur = cur.expand(T, *cur.shape) if a.constant else cur.reshape(T, -1, *cur.shape[1:])
        spikes, pot = fixed_lif_scan(cur, q.threshold, q.beta, fx.fmt, m.reset, m.reset_delay)
        rec = None
        if ctx.keep:
            rec = LIFRecord(
                q.beta_effective.to(dt),
                (q.threshold.to(torch.float64) * q.scale).to(dt),
                None,
                (pot.to(torch.float64) * q.scale).to(dt),
                None,
                False,
            )
        del pot
        ctx.count_spikes(node.name, spikes)
        return Act(spikes.reshape(-1, *spikes.shape[2:]), False, True), rec

    def potential(self, node, rec: LIFRecord, ctx) -> Tensor:
        """The firing potential V [T, B, ...]: kept, or recomputed from what was kept (and then kept)."""
        if rec.potential is not None:
            return rec.potential
        m: LIF = node.module
        s: NeuronSetup = ctx.setup(node)
        T = ctx.steps
        if rec.constant:  # constant current: run the forward scan again from the [B, ...] current
            cur, steps, out = rec.current, T, None
        else:  # recompute mode: the current from the layer below's kept input, then the scan
            cur, fresh = ctx.recompute_output(node.inputs[0])
            cur = cur.reshape(T, -1, *cur.shape[1:])
            steps, out = None, cur if fresh else None
        rec.potential = lif_forward(
            cur,
            rec.beta,
            rec.threshold,
            m.reset,
            m.reset_delay,
            rec.mem0,
            steps,
            s.backend,
            out=out,
            spike_dtype=torch.uint8,
        )[1]
        return rec.potential

    def reverse(self, node, rec: LIFRecord, msg, ctx) -> Back:
        m: LIF = node.module
        s: NeuronSetup = ctx.setup(node)
        T = ctx.steps
        # a constant current's V is not kept: the native feedback scan makes it again inside (never written)
        fused = rec.constant and rec.potential is None
        pot = None if fused else self.potential(node, rec, ctx)
        rec.potential = None
        rt, owned = self.reward_steps(msg, T)
        if ctx.carry is not None and node.name in ctx.carry:  # C from the later stretch joins the last step
            if not owned:
                rt, owned = rt.clone(), True
            rt[-1].add_(ctx.carry.pop(node.name))
        # a conv layer with a constant input (an image) takes g summed over time: summed inside the scan, the
        # [T, B, C, H, W] g is never written. Not over stretches of time (their boundary needs g_1), and not
        # for a Linear layer's neurons: there g is small and summing after the scan keeps those models'
        # results bit for bit as they were
        summed = rec.constant and s.g_below and rt.dim() >= 5 and ctx.carry is None and ctx.wants(node, 0)
        g = (lif_feedback_constant if fused else lif_feedback)(
            rt,
            rec.current if fused else pot,
            rec.beta,
            rec.threshold,
            m.reset,
            m.reset_delay,
            rec.mem0,
            s.eps,
            out=rt if owned and not summed else None,
            backend=s.backend,
            norm=s.reward_norm,
            summed=summed,
        )
        del pot, rt
        if summed:
            return Back((Normalized(g, True),))
        if ctx.carry is not None and rec.mem0 is not None:  # C_1 = β P_1 g_1, handed to the earlier stretch
            ctx.carry[node.name] = _previous_membrane(rec.mem0, rec.threshold, m).mul_(rec.beta).mul_(g[0])
        return self.down(node, g, rec.current, s, ctx)


def spike_counts(spikes: Tensor) -> Tensor:
    """Spikes per neuron, summed over time and batch; a few steps at a time, since summing uint8 spikes
    makes torch convert its input to int64 first (8x the spikes' memory at once otherwise). Channels-last
    spikes are summed in memory order (a reduction across their strides is ~10x slower)."""
    if channels_last(spikes):
        return channels_back(spike_counts(channels_innermost(spikes)))
    parts = (spikes[sl].sum(dim=(0, 1)) for sl in row_slices(spikes.shape[0], spikes[0].numel()))
    total = next(parts)
    for p in parts:
        total += p
    return total


def _advance(
    m: LIF, backend: str, current: Tensor, beta: Tensor, thr: Tensor, steps: int, piece: int
) -> Tensor:
    """The membrane U of LIF ``m`` after ``steps`` steps of the constant [B, ...] ``current`` from U_0 = 0,
    scanned ``piece`` steps at a time (so no [steps, B, ...] buffer)."""
    mem = None
    for t0 in range(0, steps, piece):
        n = min(piece, steps - t0)
        s, v = lif_forward(
            current, beta, thr, m.reset, m.reset_delay, mem, n, backend, spike_dtype=torch.uint8
        )
        mem = _last_membrane(m, v, s, thr)
    return mem


def _last_membrane(m: LIF, pot: Tensor, spikes: Tensor, thr: Tensor) -> Tensor:
    """U after the last step of a scan (a copy: the potential may be written over later)."""
    return membrane(pot[-1:], spikes[-1:].to(pot.dtype), thr, m.reset, m.reset_delay)[0].clone()


def _previous_membrane(mem0: Tensor, thr: Tensor, m: LIF) -> Tensor:
    """P of a stretch's first step from the membrane U it starts from, as the feedback scan forms it: U, or
    U (1 - H(U - θ)) for a delayed reset to zero (a new tensor)."""
    if m.reset == "zero" and m.reset_delay:
        return mem0.addcmul(mem0, torch.gt(mem0, thr).to(mem0.dtype), value=-1)
    return mem0.clone()
