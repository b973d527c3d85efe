"""Compare training methods (LFP rules, surrogate-gradient BPTT baselines) on the same data, model and seeds:
:func:`compare` (:mod:`.run`) and its report (:mod:`.report`)."""

from ..metrics import PRUNE_FRACTIONS
from .report import REPORT_FILES, markdown, plot_results, write_report
from .run import check_out_dir, compare, run_one, step_peak_mib

__all__ = [
    "PRUNE_FRACTIONS",
    "REPORT_FILES",
    "check_out_dir",
    "compare",
    "markdown",
    "plot_results",
    "run_one",
    "step_peak_mib",
    "write_report",
]
