"""Spiking neurons: pure scan functions over [T, B, ...] and thin modules around them."""

from .activations import Heaviside
from .lif import LIF, LIFParameters, LIFState, check_lif_parameters, check_lif_shapes, lif_scan

__all__ = [
    "LIF",
    "Heaviside",
    "LIFParameters",
    "LIFState",
    "check_lif_parameters",
    "check_lif_shapes",
    "lif_scan",
]
