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
CLIPS = ("none", "norm", "agc", "agc-unit")


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
    bias), ``||g|| <= λ max(||w||, eps)`` with ``λ = value``. ``mode="agc-unit"``: the authors' unit-wise
    form (:func:`clip_unitwise`). ``mode="none"`` leaves the updates as they are.
    """
    if mode not in CLIPS:
        raise ValueError(f"clip must be one of {CLIPS}, got {mode!r}")
    params = [p for p in model.parameters() if p.grad is not None]
    if mode == "none" or not params:
        return
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)
        return
    if mode == "agc-unit":
        clip_unitwise(model, value)
        return
    for p in params:
        dims = tuple(range(1, p.dim())) if p.dim() > 1 else None
        w_norm = torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True) if dims else p.detach().abs()
        g_norm = torch.linalg.vector_norm(p.grad, dim=dims, keepdim=True) if dims else p.grad.abs()
        limit = value * w_norm.clamp(min=eps)
        p.grad.mul_(torch.where(g_norm > limit, limit / g_norm.clamp(min=1e-12), torch.ones_like(g_norm)))


UNIT_FLOOR = 1e-6
"""The floor on a unit's parameter norm in :func:`clip_unitwise` (the reference's)."""


def clip_unitwise(model: nn.Module, value: float) -> None:
    """The authors' unit-wise update clipping (``--clip agc-unit``), layer by layer.

    For every module with parameters of its own, unit i (row i of every parameter whose first dimension is
    the layer's output size: the weight's row and the bias's element together) has the parameter norm
    n_i = max(||(w_i, b_i)||, 1e-6), taken over all those parameters jointly. Each parameter's update row
    g_i is rescaled to λ n_i / ||g_i|| where ||g_i|| / n_i > λ (λ = ``value``), else kept. It differs from
    ``agc`` in the joint norm of weight and bias (``agc`` bounds a bias element by |b_i| alone) and the floor
    (1e-6 here, 1e-3 there). A parameter whose first dimension differs from the layer's (a scalar β, say) is
    left unclipped.
    """
    for m in model.modules():
        own = [p for p in m.parameters(recurse=False) if p.dim() >= 1]
        with_grad = [p for p in own if p.grad is not None]
        if not with_grad:
            continue
        units = own[0].shape[0]
        group = [p for p in own if p.shape[0] == units]
        sq = sum(p.detach().reshape(units, -1).square().sum(1) for p in group)
        n = sq.sqrt().clamp(min=UNIT_FLOOR)
        for p in with_grad:
            if p.shape[0] != units:
                continue
            g_norm = torch.linalg.vector_norm(p.grad.reshape(units, -1), dim=1)
            safe = torch.where(g_norm == 0, torch.full_like(g_norm, 1e-6), g_norm)
            scale = torch.where(g_norm / n > value, value * n / safe, torch.ones_like(g_norm))
            p.grad.mul_(scale.view(units, *[1] * (p.dim() - 1)))
