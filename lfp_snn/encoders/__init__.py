"""Encoders: static inputs -> [T, B, ...] (constant, rate, latency); events -> frames (see ``events``)."""

from .static import (
    ENCODERS,
    ConstantEncoder,
    LatencyEncoder,
    RateEncoder,
    constant_encode,
    get_encoder,
    latency_encode,
    rate_encode,
)

__all__ = [
    "ENCODERS",
    "ConstantEncoder",
    "LatencyEncoder",
    "RateEncoder",
    "constant_encode",
    "get_encoder",
    "latency_encode",
    "rate_encode",
]
