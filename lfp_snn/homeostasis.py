"""Homeostatic adaptation: a local, gradient-free rule that wakes up neurons that stay silent.

Why. LFP gives a hidden neuron feedback only through its spikes (R_in = S ⊙ (g W)): one that never fires
never learns (:mod:`lfp_snn.rules.membrane_share`). Intrinsic plasticity, as found in cortex and in on-chip learning
rules, keeps every neuron's firing rate near a target by adjusting its excitability from its own activity
alone — no reward, no gradient, no information from other neurons, so it runs next to LFP (or any other
training) on a neuromorphic chip.

The rule, after every training step, for each LIF layer and each neuron j:

    r_j   = spikes of j in the batch / (T · B)                       (firing rate per step)
    r̄_j  ← m r̄_j + (1 - m) r_j                                      (running average; r̄ = r at the first step)
    d_j   = clamp((r* - r̄_j) / r*, 0, 1)                             (relative deficit: 0 at or above r*)

    mode "threshold":  θ_j ← max(θ_j (1 - η d_j), θ_min · θ⁰_j)        (θ⁰ the threshold before training)
    mode "bias":       b_j ← b_j + η θ_j d_j                          (b the bias of the layer feeding the LIF)

Only neurons below the target rate r* change; a neuron at or above it keeps its threshold (and bias). In
"threshold" mode θ only goes down and never below θ_min θ⁰; it stays where it stopped once the neuron fires
often enough (the thresholds become a per-neuron buffer of shape [features]; they are part of the model and
of its state dict). In "bias" mode the bias moves by at most η θ per step; the optimiser keeps training it.
For a convolution the bias is per channel: d is averaged over the channel's positions.

θ_j (1 - η d_j) is the issue's θ ← θ (1 - η' (r* - r)) with η' = η / r*: η is the largest relative change
per step, whatever the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .neurons import LIF
from .ops import PARAMETRIC

MODES = ("threshold", "bias")


@dataclass
class Homeostasis:
    """Per-neuron firing-rate homeostasis for the LIF layers of a model (see the module docstring).

    Call :meth:`update` after each optimiser step with the step's spike counts per LIF layer (Σ over time and
    batch, shaped like one sample's features: what :class:`lfp_snn.training.StepOutput` carries).
    """

    rate: float = 0.1  # η
    target: float = 0.005  # r*, spikes per neuron per step
    momentum: float = 0.9  # m of the running rate
    min_threshold: float = 0.1  # θ_min, as a fraction of each neuron's initial θ ("threshold" mode)
    mode: str = "threshold"
    running: dict[str, Tensor] = field(default_factory=dict)
    initial: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            (0 < self.rate <= 1, f"homeostasis rate η must lie in (0, 1], got {self.rate!r}"),
            (0 < self.target <= 1, f"homeostasis target rate r* must lie in (0, 1], got {self.target!r}"),
            (0 <= self.momentum < 1, f"homeostasis momentum must lie in [0, 1), got {self.momentum!r}"),
            (
                0 < self.min_threshold <= 1,
                f"homeostasis min_threshold must lie in (0, 1], got {self.min_threshold!r}",
            ),
            (self.mode in MODES, f"homeostasis mode must be one of {MODES}, got {self.mode!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def deficit(self, name: str, counts: Tensor, samples: int, steps: int) -> Tensor:
        """Update the running rate of layer ``name`` from one step's counts; return d (counts' shape)."""
        r = counts.detach().to(torch.float32) / float(max(samples * steps, 1))
        if name in self.running:
            self.running[name].mul_(self.momentum).add_(r, alpha=1 - self.momentum)
        else:
            self.running[name] = r.clone()
        return ((self.target - self.running[name]) / self.target).clamp_(0, 1)

    @torch.no_grad()
    def update(self, model: nn.Module, spike_counts: dict[str, Tensor], samples: int, steps: int) -> None:
        """One homeostatic step for every LIF layer of ``model`` named in ``spike_counts``."""
        layers = dict(model.named_modules())
        for name, counts in spike_counts.items():
            lif = layers.get(name)
            if not isinstance(lif, LIF):
                continue
            d = self.deficit(name, counts, samples, steps).to(lif.threshold.device)
            if self.mode == "threshold":
                self._threshold_step(name, lif, d)
            else:
                self._bias_step(name, lif, _feeding_layer(model, name), d)

    def _threshold_step(self, name: str, lif: LIF, d: Tensor) -> None:
        thr = lif.threshold
        if thr.shape != d.shape:  # a scalar (or per-channel) θ becomes per neuron
            thr = thr.expand(d.shape).clone()
        if name not in self.initial:
            self.initial[name] = thr.clone()
        new = torch.maximum(thr * (1 - self.rate * d.to(thr.dtype)), self.initial[name] * self.min_threshold)
        lif.threshold = new  # a registered buffer: assignment replaces it (shape may change)

    def _bias_step(self, name: str, lif: LIF, layer: nn.Module | None, d: Tensor) -> None:
        if layer is None or getattr(layer, "bias", None) is None:
            raise ValueError(
                f"homeostasis mode 'bias' needs a Linear/Conv layer with a bias right below LIF layer {name!r}"
            )
        b = layer.bias
        step = d * lif.threshold.to(d.dtype).expand(d.shape)
        if step.dim() > 1:  # convolution: per channel, averaged over positions
            step = step.flatten(1).mean(1)
        b.add_(step.to(b.dtype), alpha=self.rate)


def _feeding_layer(model: nn.Module, lif_name: str) -> nn.Module | None:
    """The parametric layer right before LIF ``lif_name`` in the model's order of modules, if any."""
    prev = None
    for n, m in model.named_modules():
        if n == lif_name:
            return prev if isinstance(prev, tuple(PARAMETRIC)) else None
        if isinstance(m, (*PARAMETRIC, LIF)) or len(list(m.children())) == 0:
            prev = m
    return None
