"""Encoders: static inputs -> [T, B, ...] (constant, rate, latency); events -> frames (see ``events``)."""

from .events import ToFrames, ToSpikeTrains, events_to_frames, time_bin_index
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
    "ToFrames",
    "ToSpikeTrains",
    "events_to_frames",
    "time_bin_index",
    "ENCODERS",
    "ConstantEncoder",
    "LatencyEncoder",
    "RateEncoder",
    "constant_encode",
    "get_encoder",
    "latency_encode",
    "rate_encode",
]
