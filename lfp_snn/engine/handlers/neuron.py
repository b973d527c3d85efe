"""What the neuron handlers share: the choices made once per model (hand g to the layer below or a reward,
uint8 spikes for Linear readers, the backend, ε), the current in the engine's layout, and the message the
neuron sends down."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels.layout import dense_in_layout
from ..activations import Normalized, Reward
from .base import Back, Handler

# readers that take uint8 spikes as they are: Linear converts a block of rows at a time, MaxPool2d pools them
# as 0/1 (lfp_snn.engine.handlers.pooling)
_READS_UINT8 = (torch.nn.Linear, torch.nn.MaxPool2d)


@dataclass(frozen=True)
class NeuronSetup:
    g_below: bool  # the input is a Linear/Conv output read only here: hand it g
    recompute: bool  # keep no potential: make the current again from the layer below in the feedback
    uint8_spikes: bool  # every reader takes uint8 spikes (Linear, MaxPool2d)
    backend: str
    eps: float
    reward_norm: bool = False  # divide the membrane's reward by its max |.| at every step (plan.reward_norm)


_NORM_WARNED: set[str] = set()


class NeuronHandler(Handler):
    """Base of the neuron handlers (LIF, CubaLIF, AdaptiveLIF, RecurrentLIF)."""

    temporal = True
    emits_normalized = True
    recomputes = False  # whether storage="recompute" applies (the LIF recomputes its potential)
    advances_constant = False  # a stretch of time on a constant current can recompute its start state
    normalises = False  # implements plan.reward_norm (LIF)

    def setup(self, node, env) -> NeuronSetup:
        m = node.module
        self.check(m)
        below = env.fused_below.get(node.index)
        users = [env.graph.nodes[u] for u in node.users]
        backend = env.backend_for(m)
        norm = env.plan.reward_norm is not None
        if norm:
            backend = self._norm_backend(node, backend, env.plan.reward_norm)
        return NeuronSetup(
            g_below=below is not None,
            recompute=self.recomputes and env.plan.storage == "recompute" and below is not None,
            uint8_spikes=bool(users) and all(type(u.target) in _READS_UINT8 for u in users),
            backend=backend,
            eps=env.eps,
            reward_norm=norm,
        )

    def _norm_backend(self, node, backend: str, norm: str) -> str:
        """The torch scans for ``reward_norm`` (a maximum over the batch at every step, which the per-row
        native and Triton scans cannot take): an error where another backend was asked for, torch with a
        warning (once) for ``auto``."""
        if not self.normalises:
            raise ValueError(
                f"reward_norm={norm!r} is implemented for LIF layers; {node.describe()} is not one: turn "
                "reward_norm off for this model"
            )
        if backend == "auto":
            if "auto" not in _NORM_WARNED:
                _NORM_WARNED.add("auto")
                warnings.warn(
                    f"reward_norm={norm!r}: the LIF feedback runs in the torch scans (backend 'auto' would pick "
                    "native or Triton ones, which scan every neuron on its own and cannot take the maximum "
                    "over the batch): slower on large layers",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return "torch"
        if backend != "torch":
            raise ValueError(
                f"reward_norm={norm!r} needs the torch scans (a maximum over the batch at every step); "
                f"{node.describe()} has backend {backend!r}: use backend='torch' or 'auto'"
            )
        return backend

    def check(self, m) -> None:
        """Raise for parameters out of range (the module's own check)."""

    @staticmethod
    def torch_only(node, setup: NeuronSetup, what: str) -> NeuronSetup:
        """``setup``, or an error naming the node where a backend other than torch/auto was asked for."""
        if setup.backend not in ("auto", "torch"):
            raise ValueError(
                f"{node.describe()} has backend {setup.backend!r}; the {what} scans exist for the torch backend "
                "only: use backend='torch' (or 'auto')"
            )
        return setup

    @staticmethod
    def current(a, dt: torch.dtype, steps: int) -> Tensor:
        """The input current: [T, B, ...] rows in time, or the constant [B, ...]."""
        x = a.float(dt)
        return x if a.constant else x.reshape(steps, -1, *x.shape[1:])

    @staticmethod
    def reward_steps(msg, steps: int) -> tuple[Tensor, bool]:
        """The reward at the spikes as [T, B, ...], and whether the buffer is the engine's own."""
        r = msg.value
        if msg.summed:
            return dense_in_layout(r.unsqueeze(0).expand(steps, *r.shape)), True
        return dense_in_layout(r.reshape(steps, -1, *r.shape[1:])), msg.owned

    @staticmethod
    def down(node, g: Tensor, current: Tensor | None, setup: NeuronSetup, ctx) -> Back:
        """The message for the layer below: g itself (a Linear/Conv read only here), else the current's share
        of the membrane as a reward, R^I = I ⊙ g (written over g)."""
        if not ctx.wants(node, 0):
            return Back((None,))
        if setup.g_below:
            return Back((Normalized(g.reshape(-1, *g.shape[2:])),))
        r_in = g.mul_(current if current.dim() == g.dim() else current.unsqueeze(0))
        return Back((Reward(r_in.reshape(-1, *g.shape[2:]), False, True),))
