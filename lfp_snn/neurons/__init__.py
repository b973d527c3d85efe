"""Spiking neurons: pure scan functions over [T, B, ...] and thin modules around them."""

from .activations import Heaviside
from .lif import LIF, LIFParameters, LIFState, check_lif_parameters, lif_scan

__all__ = ["LIF", "Heaviside", "LIFParameters", "LIFState", "check_lif_parameters", "lif_scan"]
