"""Compare training methods (LFP rules, surrogate-gradient BPTT baselines) on the same data, model and seeds:
:func:`compare` (:mod:`.run`), tuning on a validation split (:mod:`.tuning`) and the report (:mod:`.report`)."""

from ..metrics import PRUNE_FRACTIONS
from . import run
from .report import REPORT_FILES, markdown, plot_results, write_report
from .run import check_out_dir, compare, run_one, step_peak_mib
from .tuning import TUNABLE, TuneSpec, tune_method

__all__ = [
    "PRUNE_FRACTIONS",
    "REPORT_FILES",
    "TUNABLE",
    "TuneSpec",
    "check_out_dir",
    "compare",
    "markdown",
    "plot_results",
    "run_one",
    "run",
    "step_peak_mib",
    "tune_method",
    "write_report",
]
