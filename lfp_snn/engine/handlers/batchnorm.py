"""BatchNorm1d / BatchNorm2d: normalisation over the batch and the time steps together, and the LFP-ε rule of
its affine map.

Forward, in training mode, the statistics are taken over all rows (T·B, and positions): in a spiking model
over the time and batch axes together, as the multi-step form computes it (tdBN does the same), and the
running averages are updated as torch does (the unbiased variance over the same T·B·positions values). In
eval mode the running averages are used. With x̂ = (x - μ) / √(σ² + ε_bn) the output is z = γ x̂ + β.

Reverse, the ε rule on the normalised pre-activation z (g = R / stabilize(z), or the LIF's g above):

    F_γ = |γ| ⊙ Σ (x̂ ⊙ g),    F_β = |β| ⊙ Σ g,    R_in = x ⊙ (γ / √(σ² + ε_bn)) ⊙ g

(the reward to x is that of the layer's affine map z = w x + c with w = γ / √(σ² + ε_bn); the statistics are
constants of the step, as the reference treats them). Only the ε rule is implemented: a composite that maps
a BatchNorm layer to another rule is an error that names it (the presets map BatchNorm to ε).
Statistics over the whole batch and all steps are not what micro-batches or stretches of time would see:
training-mode BatchNorm with ``micro_batch`` or ``time_chunk`` is an error (eval mode is fine).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...rules import Epsilon, stabilize
from ..activations import Act, Normalized, Reward
from .base import Back, Handler


@dataclass(frozen=True)
class BatchNormSetup:
    eps: float  # the rule's ε
    g_from_above: bool
    keep_output: bool


@dataclass
class BatchNormRecord:
    x: Tensor  # compact (uint8 for spikes)
    mean: Tensor  # [C]
    invstd: Tensor  # [C]
    z: Tensor | None
    constant: bool


def _channel_view(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(1, -1, *([1] * (like.dim() - 2)))


class BatchNormHandler(Handler):
    learns = True
    takes_normalized = True

    def names(self) -> list[str]:
        return ["BatchNorm1d", "BatchNorm2d"]

    def setup(self, node, env) -> BatchNormSetup:
        m = node.module
        rule = env.rule_for(node)
        if not isinstance(rule, Epsilon):
            raise ValueError(
                f"{node.describe()} gets rule {rule.name!r}; BatchNorm layers have the ε rule only: map them to "
                "lfp_snn.Epsilon in the composite (the presets do)"
            )
        if m.training or not m.track_running_stats:
            for opt in ("micro_batch", "time_chunk"):
                if getattr(env.plan, opt) is not None:
                    raise ValueError(
                        f"{opt}={getattr(env.plan, opt)} cannot be combined with {node.describe()} in training "
                        "mode: its statistics are over the whole batch and all steps, which a slice would not "
                        "see; call model.eval() for the BatchNorm layers or drop the option"
                    )
        g_from_above = env.fused_above.get(node.index) is not None
        return BatchNormSetup(float(rule.eps), g_from_above, keep_output=not g_from_above)

    def forward(self, node, inputs, ctx):
        (a,) = inputs
        m: nn.BatchNorm1d | nn.BatchNorm2d = node.module
        s: BatchNormSetup = ctx.setup(node)
        dt = ctx.dtype
        x = a.float(dt)
        if x.dim() < 2 or x.shape[1] != m.num_features:
            raise ValueError(
                f"{node.describe()} normalises {m.num_features} channels; expected rows of shape [N, "
                f"{m.num_features}, ...], got {list(x.shape)}"
            )
        dims = [0, *range(2, x.dim())]
        batch_stats = m.training or not m.track_running_stats
        if batch_stats:
            var, mean = torch.var_mean(x, dim=dims, unbiased=False)
            if m.training and m.track_running_stats:
                self._update_running(m, mean, var, x, a.constant, ctx.steps)
        else:
            mean, var = m.running_mean.to(dt), m.running_var.to(dt)
        invstd = torch.rsqrt(var + m.eps)
        xhat = (x - _channel_view(mean, x)) * _channel_view(invstd, x)
        gamma = None if m.weight is None else m.weight.to(dt)
        z = xhat if gamma is None else xhat * _channel_view(gamma, x)
        if m.bias is not None:
            z = z + _channel_view(m.bias.to(dt), x)
        rec = None
        if ctx.keep:
            rec = BatchNormRecord(a.compact(), mean, invstd, z if s.keep_output else None, a.constant)
        return Act(z, a.constant), rec

    @staticmethod
    def _update_running(m, mean: Tensor, var: Tensor, x: Tensor, constant: bool, steps: int | None) -> None:
        n = x.numel() // x.shape[1]
        if constant and steps is not None:
            n *= steps  # the same rows at every step: the statistics are over T·B of them
        unbiased = var * (n / max(n - 1, 1))
        with torch.no_grad():
            m.num_batches_tracked.add_(1)
            f = (1.0 / float(m.num_batches_tracked)) if m.momentum is None else m.momentum
            m.running_mean.mul_(1 - f).add_(mean.to(m.running_mean.dtype), alpha=f)
            m.running_var.mul_(1 - f).add_(unbiased.to(m.running_var.dtype), alpha=f)

    def reverse(self, node, rec: BatchNormRecord, msg, ctx) -> Back:
        m = node.module
        s: BatchNormSetup = ctx.setup(node)
        g = msg.g if isinstance(msg, Normalized) else msg.value / stabilize(rec.z, s.eps)
        dt = g.dtype
        x = rec.x.to(dt)
        dims = [0, *range(2, x.dim())]
        fb = {}
        gamma = None if m.weight is None else m.weight.to(dt)
        if gamma is not None:
            xhat = (x - _channel_view(rec.mean, x)) * _channel_view(rec.invstd, x)
            fb["weight"] = gamma.abs() * (xhat * g).sum(dims)
            del xhat
        if m.bias is not None:
            fb["bias"] = m.bias.to(dt).abs() * g.sum(dims)
        if not ctx.wants(node, 0):
            return Back((None,), fb)
        w = rec.invstd if gamma is None else gamma * rec.invstd
        r_in = g.mul(_channel_view(w, g)).mul_(x)
        return Back((Reward(r_in, rec.constant, True),), fb)
