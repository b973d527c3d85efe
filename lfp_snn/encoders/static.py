"""Encoders for static inputs: [B, ...] values in [0, 1] -> time-first [T, B, ...] float tensors.

Small frozen dataclasses over pure functions. Random encoders take a ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import all_finite


def _check(x: Tensor, steps: int, bounded: bool) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point input, got dtype {x.dtype}")
    if not all_finite(x):
        raise ValueError("the input contains NaN or inf")
    if bounded and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"expected values in [0, 1], got min {float(x.min()):.4g} and max {float(x.max()):.4g}"
        )


def constant_encode(x: Tensor, steps: int) -> Tensor:
    """The same input at every step (the paper's encoding): x_t = x. Returns an expanded view [T, B, ...]
    (stride 0 in time, no copy), which the LFP engine recognises and runs on B rows instead of T·B."""
    _check(x, steps, bounded=False)
    return x.unsqueeze(0).expand(steps, *x.shape)


def rate_encode(x: Tensor, steps: int, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """Bernoulli spikes: s_t ~ Bernoulli(clamp(gain · x, 0, 1)) independently per step."""
    _check(x, steps, bounded=True)
    p = (x * gain).clamp(0, 1).unsqueeze(0).expand(steps, *x.shape)
    return torch.bernoulli(p, generator=generator)


def latency_encode(x: Tensor, steps: int, threshold: float = 0.01, linear: bool = True) -> Tensor:
    """One spike per input at a time that falls with intensity: t = round((1 - x) (T - 1)) (linear) or
    t = round((T - 1) · (1 - log(1 + 9 x) / log 10)) (log); inputs <= ``threshold`` never spike."""
    _check(x, steps, bounded=True)
    frac = (1 - x) if linear else 1 - torch.log1p(9 * x) / torch.log(torch.tensor(10.0, dtype=x.dtype))
    t = torch.round(frac * (steps - 1)).long()
    out = torch.zeros(steps, *x.shape, dtype=x.dtype, device=x.device)
    out.scatter_(0, t.unsqueeze(0), 1.0)
    return out * (x > threshold).to(x.dtype).unsqueeze(0)


@dataclass(frozen=True)
class ConstantEncoder:
    steps: int

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return constant_encode(x, self.steps)


@dataclass(frozen=True)
class RateEncoder:
    steps: int
    gain: float = 1.0

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return rate_encode(x, self.steps, self.gain, generator)


@dataclass(frozen=True)
class LatencyEncoder:
    steps: int
    threshold: float = 0.01
    linear: bool = True

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return latency_encode(x, self.steps, self.threshold, self.linear)


ENCODERS = {"constant": ConstantEncoder, "rate": RateEncoder, "latency": LatencyEncoder}


def get_encoder(name: str, steps: int):
    """An encoder by name (``constant``, ``rate``, ``latency``) for ``steps`` time steps."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; expected one of {sorted(ENCODERS)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return ENCODERS[name](steps)
