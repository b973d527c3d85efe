"""Training: LFP steps (feedback -> ``p.grad = -F`` -> any torch optimiser), the gradient baseline for ANNs,
the surrogate-gradient baselines and the gradient-free R-STDP baseline for SNNs, behind one :class:`Trainer`.

- :mod:`.config`: :class:`TrainConfig`, every option of a run and its default;
- :mod:`.methods`: :data:`METHODS`, the table of training methods (``lfp``, ``gradient``, ``bptt-snntorch``,
  ``bptt-norse``, ``rstdp``), and the command line's method names (``lfp-<rule>``);
- :mod:`.trainer`: :class:`Trainer`, the loop, metrics and checkpoints;
- :mod:`.step`: :class:`StepOutput`, what one step returns, and :func:`predictions`;
- :mod:`.updates`: the optimiser and update clipping; :mod:`.schedules`: learning-rate and noise schedules.
"""

from .config import TrainConfig
from .methods import METHODS, check_methods, known_methods, resolve_method
from .schedules import noise_scale
from .step import StepOutput, predictions
from .trainer import Trainer, sign_changed
from .updates import clip_updates, make_optimizer

__all__ = [
    "METHODS",
    "StepOutput",
    "TrainConfig",
    "Trainer",
    "check_methods",
    "clip_updates",
    "known_methods",
    "make_optimizer",
    "noise_scale",
    "predictions",
    "resolve_method",
    "sign_changed",
]
