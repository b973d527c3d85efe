"""What the comparison measures on a trained model: accuracy and spike rate through lfp-snn's engine,
accuracy under magnitude pruning, the share of weights whose sign changed, spike rates per layer."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..engine import forward_trace
from ..ops import PARAMETRIC
from ..training import predictions

PRUNE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95)
"""The default fractions of weights removed per layer for the pruning curve."""


def evaluate(
    model: nn.Module, data, encoder, spiking: bool, batch_size: int = 512, seed: int = 0
) -> dict[str, float]:
    """Accuracy and mean spike rate of ``model`` on ``data`` (static images through ``encoder``, or event
    frames) with lfp-snn's engine.

    Random encoders draw from a fresh generator seeded with ``seed``, so two calls (e.g. before and after
    pruning) see the same input spikes. The spike rate is spikes / (neurons · steps · samples) over all LIF
    layers together (NaN for ANNs).
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = n = 0
    spikes = slots = 0.0
    with torch.no_grad():
        for x, y in data.batches(batch_size, shuffle=False):
            x = x.to(device)
            if spiking:
                xs = model_input(model, x, data, encoder, gen)
                trace = forward_trace(model, xs, keep=False)
                out = trace.output
                for c in trace.spike_counts.values():
                    spikes += float(c.sum())
                    slots += c.numel() * trace.steps * len(y)
            else:
                out = model(x)
            correct += int((predictions(out, spiking).cpu() == y).sum())
            n += len(y)
    model.train(was_training)
    return {"accuracy": correct / max(n, 1), "spike_rate": spikes / slots if slots else math.nan}


def model_input(model: nn.Module, x: Tensor, data, encoder, generator: torch.Generator) -> Tensor:
    """A batch ``x`` of ``data`` as a spiking model's input [T, B, ...]: event frames ([B, T, ...],
    ``data.temporal``) time-first, static images through ``encoder``; in the model's dtype."""
    dtype = next(model.parameters()).dtype
    if getattr(data, "temporal", False):
        return x.transpose(0, 1).to(dtype)
    return encoder(x.to(dtype), generator)


def prune_by_magnitude(model: nn.Module, fraction: float) -> nn.Module:
    """A copy of ``model`` with, in every Linear/Conv layer, the ``round(fraction · n)`` weights of smallest
    |w| set to zero (per layer; biases kept). ``fraction`` = 0 returns an unchanged copy."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"pruning fraction must lie in [0, 1], got {fraction}")
    pruned = copy.deepcopy(model)
    if fraction == 0:
        return pruned
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, tuple(PARAMETRIC)):
                w = m.weight
                k = round(fraction * w.numel())
                if k:
                    idx = torch.argsort(w.abs().flatten(), stable=True)[:k]
                    w.view(-1)[idx] = 0
    return pruned


def pruning_curve(
    model: nn.Module,
    data,
    encoder,
    spiking: bool,
    fractions: Sequence[float] = PRUNE_FRACTIONS,
    batch_size: int = 512,
    seed: int = 0,
) -> dict[float, float]:
    """Test accuracy after magnitude pruning, for each fraction of weights removed per layer."""
    return {
        f: evaluate(prune_by_magnitude(model, f), data, encoder, spiking, batch_size, seed)["accuracy"]
        for f in fractions
    }


def train_rate(record: dict, sizes: dict[str, int]) -> float:
    """Spike rate over all LIF layers in a training epoch's record: the per-layer rates weighted by the
    layers' neuron counts ``sizes``; NaN when the record has none."""
    layers = [k.split("/", 1)[1] for k in record if k.startswith("spike_rate/")]
    total = sum(sizes.get(k, 0) for k in layers)
    if not layers or not total:
        return math.nan
    return sum(record[f"spike_rate/{k}"] * sizes.get(k, 0) for k in layers) / total


def lif_sizes(model: nn.Module, data, encoder) -> dict[str, int]:
    """Neurons per LIF layer (from one test sample through lfp-snn's engine); empty for ANNs."""
    if (encoder is None and not getattr(data, "temporal", False)) or len(data) == 0:
        return {}
    device = next(model.parameters()).device
    x = next(iter(data.batches(1, shuffle=False)))[0].to(device)
    with torch.no_grad():
        xs = model_input(model, x, data, encoder, torch.Generator(device=device).manual_seed(0))
        trace = forward_trace(model, xs, keep=False)
    return {k: c.numel() for k, c in trace.spike_counts.items()}
