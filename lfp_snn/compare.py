""":func:`tensor_peak_mib` for the engine tests and the step benchmark, which import it from here; the function
lives in :mod:`lfp_snn.experiments.memory` and the method comparison in :mod:`lfp_snn.experiments.compare`."""

from .experiments.memory import tensor_peak_mib

__all__ = ["tensor_peak_mib"]
