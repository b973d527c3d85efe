"""Range checks shared by the neurons' parameters: one message form for every neuron."""

from __future__ import annotations

import torch


def show(v) -> str:
    t = torch.as_tensor(v)
    if t.numel() == 1:
        return repr(float(t))
    return f"a tensor with min {float(t.min()):.4g} and max {float(t.max()):.4g}"


def check_range(name: str, v, low: float, high: float, low_open: bool, high_open: bool) -> None:
    """Raise ValueError naming ``name`` unless every value lies in the interval (finite)."""
    t = torch.as_tensor(v, dtype=torch.float64)
    bad = ~torch.isfinite(t)
    bad |= (t <= low) if low_open else (t < low)
    if high != float("inf"):
        bad |= (t >= high) if high_open else (t > high)
    if bool(bad.any()):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        if high == float("inf"):
            interval = f"{'>' if low_open else '>='} {low:g} and finite"
            raise ValueError(f"{name} must be {interval}, got {show(v)}")
        raise ValueError(f"{name} must lie in {interval}, got {show(v)}")
