"""Compare training methods (LFP rules, surrogate-gradient BPTT baselines) on the same data, model and seeds:
:func:`compare` (:mod:`.run`) and its report (:mod:`.report`)."""

from ..metrics import PRUNE_FRACTIONS
from .report import markdown, plot_results, write_report
from .run import compare, run_one, warm_up

__all__ = ["PRUNE_FRACTIONS", "compare", "markdown", "plot_results", "run_one", "warm_up", "write_report"]
