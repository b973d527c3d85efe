"""Spiking neurons: pure scan functions over [T, B, ...] with typed parameters and state, and thin modules
around them (the LIF; the current-based, adaptive, recurrent and multi-spike LIF; the Heaviside activation)."""

from .activations import Heaviside
from .adaptive import (
    AdaptiveLIF,
    AdaptiveLIFParameters,
    AdaptiveLIFState,
    adaptive_lif_scan,
    check_adaptive_parameters,
)
from .cuba import CubaLIF, CubaLIFParameters, CubaLIFState, check_cuba_parameters, cuba_lif_scan
from .lif import LIF, LIFParameters, LIFState, check_lif_parameters, check_lif_shapes, lif_scan
from .multispike import (
    MultiSpikeLIF,
    MultiSpikeParameters,
    MultiSpikeState,
    check_multispike_parameters,
    multispike_lif_scan,
)
from .recurrent import RecurrentLIF, RecurrentLIFState, recurrent_lif_scan

__all__ = [
    "LIF",
    "AdaptiveLIF",
    "AdaptiveLIFParameters",
    "AdaptiveLIFState",
    "CubaLIF",
    "CubaLIFParameters",
    "CubaLIFState",
    "Heaviside",
    "LIFParameters",
    "LIFState",
    "MultiSpikeLIF",
    "MultiSpikeParameters",
    "MultiSpikeState",
    "RecurrentLIF",
    "RecurrentLIFState",
    "adaptive_lif_scan",
    "check_adaptive_parameters",
    "check_cuba_parameters",
    "check_lif_parameters",
    "check_lif_shapes",
    "check_multispike_parameters",
    "cuba_lif_scan",
    "lif_scan",
    "multispike_lif_scan",
    "recurrent_lif_scan",
]
