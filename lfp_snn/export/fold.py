"""Folding eval-mode BatchNorm into the layer before it, for export: hardware runs one affine map per layer.

With BatchNorm z = γ (y - μ) / √(σ² + ε) + β after y = W x + b (Linear or Conv, per output channel c):

    W'_c = W_c · γ_c / √(σ²_c + ε),     b'_c = (b_c - μ_c) · γ_c / √(σ²_c + ε) + β_c

The folded model computes the same currents up to float rounding, so its spikes are the same (tested).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (an ``nn.Sequential``, nested allowed) with every BatchNorm that follows a
    Linear/Conv layer folded into it and replaced by ``nn.Identity``. BatchNorm layers must be in eval mode
    (their running statistics are what is folded); one that follows anything else is an error naming it."""
    out = copy.deepcopy(model)
    _fold(out, "")
    return out


def _fold(seq: nn.Module, prefix: str) -> None:
    if not isinstance(seq, nn.Sequential):
        return
    names = list(seq._modules)
    for i, name in enumerate(names):
        m = seq._modules[name]
        path = f"{prefix}{name}"
        if isinstance(m, nn.Sequential):
            _fold(m, f"{path}.")
            continue
        if not isinstance(m, _NORM):
            continue
        if m.training:
            raise ValueError(
                f"layer {path!r} ({type(m).__name__}) is in training mode; call model.eval() first"
            )
        prev = seq._modules[names[i - 1]] if i > 0 else None
        if not isinstance(prev, _AFFINE):
            raise ValueError(
                f"layer {path!r} ({type(m).__name__}) follows {type(prev).__name__ if prev is not None else 'nothing'}"
                "; only a BatchNorm right after a Linear/Conv layer can be folded into it"
            )
        with torch.no_grad():
            scale = torch.rsqrt(m.running_var + m.eps)
            if m.weight is not None:
                scale = scale * m.weight
            shift = -m.running_mean * scale
            if m.bias is not None:
                shift = shift + m.bias
            w = prev.weight
            prev.weight.copy_(w * scale.reshape(-1, *([1] * (w.dim() - 1))).to(w.dtype))
            b = prev.bias if prev.bias is not None else torch.zeros_like(shift)
            new_b = (b * scale + shift).to(w.dtype)
            if prev.bias is None:
                prev.bias = nn.Parameter(new_b)
            else:
                prev.bias.copy_(new_b)
        seq._modules[name] = nn.Identity()
