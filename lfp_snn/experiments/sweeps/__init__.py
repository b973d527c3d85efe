"""Grid sweeps over β × T × method × seed × learning rate (``lfp-snn sweep``).

One model per grid point (a *trial*) is trained with the :class:`~lfp_snn.training.Trainer`; every finished
trial is recorded in one HDF5 file keyed by the sha256 of its config, so a rerun skips what is done and a sweep
resumes after a crash (``docs/sweeps.md``).

- :mod:`.grid`: :class:`Trial`, :func:`trial_key`, :func:`make_grid`, :func:`normalize_config`;
- :mod:`.trial`: :func:`run_trial`, one trial from its config alone;
- :mod:`.store`: :class:`ResultsStore`, the crash-safe results file, and :func:`read_results`;
- :mod:`.executors`: in this process, a spawn process pool, or Ray; :mod:`.run`: :func:`run_sweep`;
- :mod:`.report`: tables and heatmaps (:func:`write_report`).
"""

from .executors import EXECUTORS
from .grid import FORMAT, VERSION, Trial, canonical_json, make_grid, normalize_config, trial_config, trial_key
from .report import summarize, write_report
from .run import SweepOutcome, run_sweep
from .store import ResultsStore, SweepFileError, read_results
from .trial import load_trial_data, run_trial

__all__ = [
    "EXECUTORS",
    "FORMAT",
    "VERSION",
    "ResultsStore",
    "SweepFileError",
    "SweepOutcome",
    "Trial",
    "canonical_json",
    "load_trial_data",
    "make_grid",
    "normalize_config",
    "read_results",
    "run_sweep",
    "run_trial",
    "summarize",
    "trial_config",
    "trial_key",
    "write_report",
]
