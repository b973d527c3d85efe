"""Schedules over a run: the learning rate (OneCycle) and the scale of the training input noise."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("none", "onecycle")
NOISE_SCHEDULES = ("constant", "linear", "cosine")


def lr_scheduler(
    optimizer: torch.optim.Optimizer, name: str, lr: float, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule stepped after every optimiser step: None for ``"none"``, else
    ``OneCycleLR`` peaking at ``lr`` over ``steps_per_epoch · epochs`` steps."""
    if name == "none" or epochs == 0:
        return None
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(steps_per_epoch * epochs, 1)
        )
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def noise_scale(name: str, epoch: int, epochs: int) -> float:
    """Factor on the input noise's std in epoch ``epoch`` (0-based) of ``epochs``: 1 (``constant``), or a
    linear / cosine decay from 1 towards 0 (``1 - e/E``, ``(1 + cos(π e/E)) / 2``)."""
    if name == "constant":
        return 1.0
    frac = epoch / max(epochs, 1)
    if name == "linear":
        return 1.0 - frac
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * frac))
    raise ValueError(f"unknown noise schedule {name!r}; expected one of {NOISE_SCHEDULES}")
