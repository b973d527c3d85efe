"""From ``p.grad`` to new weights: the torch optimiser and update clipping.

LFP maximises a reward; torch optimisers minimise. The methods therefore leave ``p.grad = -F`` (LFP) or the
gradient of a loss (baselines) in the parameters, the update is clipped here, and any ``torch.optim``
optimiser takes the step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = ("adam", "sgd")
CLIPS = ("none", "norm", "agc")


def make_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``name="adam"``) or ``torch.optim.SGD`` with ``momentum`` (``name="sgd"``)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def clip_updates(model: nn.Module, mode: str, value: float, eps: float = 1e-3) -> None:
    """Clip the update in ``p.grad``.

    ``mode="norm"``: rescale all updates together so that their global L2 norm is at most ``value``.
    ``mode="agc"`` (adaptive clipping, Brock et al. 2021): per output unit (row of a weight, element of a
    bias), ``||g|| <= λ max(||w||, eps)`` with ``λ = value``. ``mode="none"`` leaves the updates as they are.
    """
    if mode not in CLIPS:
        raise ValueError(f"clip must be one of {CLIPS}, got {mode!r}")
    params = [p for p in model.parameters() if p.grad is not None]
    if mode == "none" or not params:
        return
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)
        return
    for p in params:
        dims = tuple(range(1, p.dim())) if p.dim() > 1 else None
        w_norm = torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True) if dims else p.detach().abs()
        g_norm = torch.linalg.vector_norm(p.grad, dim=dims, keepdim=True) if dims else p.grad.abs()
        limit = value * w_norm.clamp(min=eps)
        p.grad.mul_(torch.where(g_norm > limit, limit / g_norm.clamp(min=1e-12), torch.ones_like(g_norm)))
