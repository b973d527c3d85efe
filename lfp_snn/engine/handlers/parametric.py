"""Linear and Conv1d/Conv2d layers: z = f(x; W, b), feedback by the layer's rule from the composite.

Forward, the layer runs once over all rows (T·B, or B for a constant input). Its input is kept for the
feedback as the typed value the ops compute with (:mod:`lfp_snn.ops.values`): uint8 spikes, sparse rows for
a sparse uint8 model input into a Linear layer, or floats. Its output z is kept only where the rule needs
it: not under a LIF layer with the ε rule (the LIF's g is all the ε rule needs).

Reverse, with R the reward at z (or g from the LIF above):
ε: g = R / stabilize(z) (or the LIF's g), F_W = |W| ⊙ (∂z/∂W)ᵀ g, R_in = x ⊙ (∂z/∂x)ᵀ g; other rules
distribute R (from a LIF: R^I = z ⊙ g, the current's share of the membrane) by their own equations. The input
reward is made only when something below learns (or the caller asks for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels.layout import max_in_memory_order
from ...ops import PARAMETRIC, Dense, SparseRows, Spikes, Value, affine_op, check_conv
from ...rules import Rule, stabilize
from ..activations import Act, Normalized, Reward
from .base import Back, Handler


@dataclass(frozen=True)
class AffineSetup:
    rule: Rule
    g_from_above: bool  # the LIF that reads z (and nothing else does) hands g instead of R
    keep_output: bool  # z is kept for the rule
    sparse_input: bool  # reads the model's input (through shape-only nodes): may keep it as sparse rows
    lif_below: int | None  # membrane-aware ε: the LIF node whose spikes are x (through shape-only nodes)


@dataclass
class AffineRecord:
    op: object
    x: Value
    z: Tensor | None
    constant: bool


class AffineHandler(Handler):
    learns = True
    takes_normalized = True

    def names(self) -> list[str]:
        return [c.__name__ for c in PARAMETRIC]

    def setup(self, node, env) -> AffineSetup:
        m = node.module
        if not isinstance(m, torch.nn.Linear):
            check_conv(m)
        rule = env.rule_for(node)
        g_from_above = env.fused_above.get(node.index) is not None
        return AffineSetup(
            rule=rule,
            g_from_above=g_from_above,
            keep_output=not (g_from_above and rule.takes_normalized),
            sparse_input=isinstance(m, torch.nn.Linear) and env.reads_model_input(node),
            lif_below=env.membrane_source(node, rule),
        )

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m = node.module
        s: AffineSetup = ctx.setup(node)
        dt = ctx.dtype
        if ctx.compiled.fixed is not None:
            return self._forward_fixed(node, a, ctx, ctx.compiled.fixed)
        if ctx.noise > 0:  # the paper's input noise on every parametric layer
            x = a.float(dt)
            a = Act(
                x + ctx.noise * torch.randn(x.shape, generator=ctx.generator, dtype=dt, device=x.device),
                a.constant,
            )
        value, kept = self._input(node, a, s, ctx)
        w, b = m.weight.to(dt), None if m.bias is None else m.bias.to(dt)
        key = node.name
        if ctx.cache is not None and a.constant and key in ctx.cache:
            z = ctx.cache[key]  # a constant input's output, the same in every stretch of time
        else:
            z = self.op(node).forward(value, w, b)
            if ctx.cache is not None and a.constant:
                ctx.cache[key] = z
        rec = None
        if ctx.keep:
            rec = AffineRecord(self.op(node), kept, z if s.keep_output else None, a.constant)
        return Act(z, a.constant), rec

    def _forward_fixed(self, node, a: Act, ctx, fx):
        """The integer network's synapses (plan.fixed_point): I = sat_M(b_q + W_q x) on binary spikes or sum-
        pool counts x, exact in float64; the record keeps x and the op with W_q s for the ε rule."""
        m = node.module
        if node.index in fx.reads_input:
            check_binary(a.value, node)
        w, b = fx.integer_weights(node.index, m)
        v = a.value
        if isinstance(m, torch.nn.Linear):
            x = Spikes(v) if v.dtype == torch.uint8 else Dense(v.to(w.dtype))
            z = affine_op(m).forward(x, w, b)
        else:  # as a GEMM over the unfolded input: exact (no Winograd/FFT convolution algorithm)
            z = _integer_conv2d(v.to(w.dtype), w, b, m)
        z.clamp_(fx.fmt.mem_min, fx.fmt.mem_max)
        rec = None
        if ctx.keep:
            kept = Spikes(a.compact()) if (a.binary or v.dtype == torch.uint8) else Dense(a.float(ctx.dtype))
            rec = AffineRecord(fx.rule_op(node.index, m, ctx.dtype), kept, None, a.constant)
        return Act(z, a.constant), rec

    def op(self, node):
        return affine_op(node.module)

    def _input(self, node, a: Act, s: AffineSetup, ctx) -> tuple[Value, Value]:
        """(x for the forward, x as kept for the feedback)."""
        v = a.value
        if v.dtype == torch.uint8:
            if s.sparse_input and ctx.plan.sparse_input == "auto" and v.dim() == 2:
                key = ("sparse", node.name, ctx.start)
                if ctx.cache is not None and key in ctx.cache:  # made by this stretch's first pass
                    sp = ctx.cache.pop(key) if ctx.keep else ctx.cache[key]
                    return sp, sp
                if SparseRows.suits(v):
                    sp = SparseRows(v)
                    if ctx.cache is not None and not ctx.keep:
                        ctx.cache[key] = sp
                    return sp, sp
            # the Linear converts a block of rows at a time, a convolution all of x in its memory layout
            return Spikes(v), Spikes(v)
        x = Dense(a.float(ctx.dtype))
        return x, (Spikes(a.compact()) if a.binary and ctx.keep else x)

    def reverse(self, node, rec: AffineRecord, msg, ctx) -> Back:
        s: AffineSetup = ctx.setup(node)
        rule = s.rule
        need = ctx.wants(node, 0)
        gemm = ctx.plan.gemm_dtype
        into = ctx.take(node.param_key("weight"))
        if s.lif_below is not None:  # membrane-aware ε: S + λ a in place of the spikes S
            share = ctx.plan.membrane_share
            g = msg.g if isinstance(msg, Normalized) else msg.value / stabilize(rec.z, rule.eps)
            a = ctx.near_firing(s.lif_below).reshape(rec.x.shape)
            xs = rec.x.dense(g.dtype) if isinstance(rec.x, Spikes) else None
            xw = rec.x if share.weight == 0 else Dense(torch.add(_dense(rec.x, xs, g), a, alpha=share.weight))
            xi = rec.x  # the input reward keeps S unless λ > 0
            if need and share.input != 0:
                xi = Dense(torch.add(_dense(rec.x, xs, g), a, alpha=share.input))
            del a, xs
            lf = rule.normalized(rec.op, xw, g, need, gemm, x_input=xi, weight_into=into)
        elif isinstance(msg, Normalized) and rule.takes_normalized:
            lf = rule.normalized(rec.op, rec.x, msg.g, need, gemm, weight_into=into)
        else:
            r = msg.g * rec.z if isinstance(msg, Normalized) else msg.value  # R^I = I ⊙ g
            lf = rule(rec.op, rec.x, rec.z, r, need, gemm, weight_into=into)
        fb = {"weight": lf.weight}
        if lf.bias is not None:
            fb["bias"] = lf.bias
        up = Reward(lf.input_reward, rec.constant, True) if need else None
        return Back((up,), fb)


def _integer_conv2d(x: Tensor, w: Tensor, b: Tensor | None, m: torch.nn.Conv2d) -> Tensor:
    """conv2d of integer-valued float64 tensors as unfold + GEMM, a block of rows at a time: every partial
    sum is an integer below 2^53, so the result is exact whatever the device."""
    n, _, h, wd = x.shape
    kh, kw = m.kernel_size
    (sh, sw), (ph, pw) = m.stride, m.padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    w2 = w.reshape(w.shape[0], -1)
    out = x.new_empty((n, w.shape[0], oh, ow))
    step = max(1, (1 << 22) // max(w2.shape[1] * oh * ow, 1))
    for a in range(0, n, step):
        cols = torch.nn.functional.unfold(x[a : a + step], (kh, kw), padding=(ph, pw), stride=(sh, sw))
        z = torch.matmul(w2, cols)  # [rows, C_out, oh * ow]
        if b is not None:
            z += b[:, None]
        out[a : a + step] = z.reshape(-1, w.shape[0], oh, ow)
    return out


def check_binary(v: Tensor, node) -> None:
    """ValueError unless the model's input ``v`` holds 0/1 spikes (what the integer network and the FPGA
    bundle take)."""
    if not v.numel():
        return
    ok = int(max_in_memory_order(v)) <= 1 if v.dtype == torch.uint8 else bool(((v == 0) | (v == 1)).all())
    if not ok:
        raise ValueError(
            f"fixed_point: {node.describe()} reads the model's input, which must be binary spikes (0/1) per step, "
            "as the FPGA bundle takes them; encode analogue input as spikes (encoder 'rate' or 'latency')"
        )


def _dense(x: Value, converted: Tensor | None, g: Tensor) -> Tensor:
    return converted if converted is not None else x.dense(g.dtype)


__all__ = ["AffineHandler", "AffineRecord", "AffineSetup"]
