"""Input checks shared by the engine, the neurons and the encoders."""

from __future__ import annotations

import torch
from torch import Tensor


def all_finite(t: Tensor) -> bool:
    """True when ``t`` holds no NaN or inf. One reduction and no temporary of t's size: a sum over finite
    values is finite unless it overflows (|values| near the dtype's maximum), and only then is the exact
    element-wise test run."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    if torch.isfinite(t.sum()):
        return True
    return bool(torch.isfinite(t).all())


def check_finite(t: Tensor, what: str) -> None:
    """Raise ValueError naming ``what`` and the number of bad values when ``t`` holds NaN or inf."""
    if not all_finite(t):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{what} contains {bad} NaN or inf value(s)")
