"""Tuning each method's settings on a validation split carved from the training set, never on the test set.

:class:`TuneSpec` names the settings to tune (config fields such as ``lr``, ``beta``, ``clip_value``) and
their candidate values. :func:`tune_method` trains one method once per combination of candidates on the
*fit* part of the training set (the rest after :meth:`~lfp_snn.data.ArrayDataset.holdout`) and scores it by
its final accuracy on the *validation* part; the best combination (the first one on ties, in the grid's
order) is the method's setting for the comparison's runs, which then train on the whole training set and
report test accuracy. The test set is not passed to anything here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch

from ...models import ModelConfig, is_spiking_arch
from ...training import TrainConfig, Trainer
from ..metrics import evaluate

TUNABLE = {
    "lr": "learning rate",
    "beta": "membrane decay β",
    "clip_value": "update clipping threshold",
    "weight_decay": "weight decay",
}
"""The settings a comparison can tune: config field -> what it is."""


@dataclass(frozen=True)
class TuneSpec:
    """What to tune and how.

    Attributes:
        grid: config field (one of :data:`TUNABLE`) -> candidate values, tried in every combination.
        fraction: share of the training set held out as the validation split (stratified).
        epochs: epochs of each tuning run; None: the comparison's own.
        seed: seed of the split and of the tuning runs; None: the comparison's first seed.
    """

    grid: Mapping[str, Sequence[float]]
    fraction: float = 0.2
    epochs: int | None = None
    seed: int | None = None
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.grid:
            raise ValueError(f"nothing to tune: give candidates for some of {sorted(TUNABLE)}")
        for k, vs in self.grid.items():
            if k not in TUNABLE:
                raise ValueError(f"cannot tune {k!r}; tunable settings are {sorted(TUNABLE)}")
            vs = list(vs)
            if not vs:
                raise ValueError(f"no candidates given for {k!r}")
            if len(set(vs)) != len(vs):
                raise ValueError(f"{k} candidates {vs} list a value twice")
            if any(
                not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in vs
            ):
                raise ValueError(f"{k} candidates must be finite numbers, got {vs}")
        if isinstance(self.fraction, bool) or not 0 < self.fraction < 1:
            raise ValueError(f"validation fraction must lie in (0, 1), got {self.fraction!r}")
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1
        ):
            raise ValueError(f"tuning epochs must be an integer >= 1, got {self.epochs!r}")
        object.__setattr__(self, "_keys", tuple(self.grid))

    def candidates(self) -> list[dict[str, float]]:
        """Every combination of the candidates, in the grid's order."""
        return [dict(zip(self._keys, vs)) for vs in itertools.product(*(self.grid[k] for k in self._keys))]

    def describe(self, train_size: int, epochs: int, seed: int) -> str:
        grid = "; ".join(f"{k} ∈ {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in self.grid.items())
        n_val = max(1, round(self.fraction * train_size))
        return (
            f"{grid}, per method, by the final accuracy on a validation split ({n_val} of the {train_size} "
            f"training samples, stratified, seed {seed}) after {self.epochs or epochs} epochs of training on "
            "the rest; the chosen setting then trains on the whole training set; the test set is used only "
            "for the reported accuracies"
        )


ConfigFor = Callable[[dict], tuple[ModelConfig, TrainConfig]]


def tune_method(
    name: str,
    config_for: ConfigFor,
    train,
    spec: TuneSpec,
    seed: int,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = print,
) -> dict:
    """Tune one method: ``config_for(overrides) -> (ModelConfig, TrainConfig)`` gives the method's configs with
    the candidate's fields set; every candidate trains on the fit part of ``train`` and is scored on the
    validation part. Returns ``{"best": overrides, "validation_accuracy": score, "trials": [{"setting":
    overrides, "validation_accuracy": a}, ...], "fit_size", "validation_size"}``."""
    fit, val = train.holdout(spec.fraction, seed=seed)
    trials = []
    for cand in spec.candidates():
        mc, tc = config_for(cand)
        tc = replace(tc, seed=seed, progress=False, epochs=spec.epochs or tc.epochs)
        trainer = Trainer(mc, tc, device=device)
        trainer.fit(fit, None)
        score = evaluate(
            trainer.model, val, trainer.encoder, is_spiking_arch(mc.arch), tc.eval_batch_size, seed
        )["accuracy"]
        trials.append({"setting": cand, "validation_accuracy": score})
        if log is not None:
            shown = ", ".join(f"{k}={v:g}" for k, v in cand.items())
            log(f"[{name} tuning] {shown}: validation accuracy {score:.4f}")
    best = max(trials, key=lambda t: t["validation_accuracy"])  # the first of equal scores
    return {
        "best": best["setting"],
        "validation_accuracy": best["validation_accuracy"],
        "trials": trials,
        "fit_size": len(fit),
        "validation_size": len(val),
    }
