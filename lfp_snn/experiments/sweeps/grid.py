"""Trials of a sweep and their keys: a trial is one grid point, described by a JSON config; its key is the
sha256 of that config's canonical JSON, so the same trial always gets the same key."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...models import ModelConfig
from ...training import TrainConfig, check_methods

FORMAT = "lfp-snn-sweep"
"""The ``format`` attribute of a results file."""
VERSION = 1
"""The version of the trial config (its ``format`` entry) and of the results file."""
PRESENTATION_FIELDS = ("progress", "metrics_format")
"""TrainConfig fields that change how a run is shown, not what it computes: left out of the trial config."""


def canonical_json(obj) -> str:
    """JSON with sorted keys, no whitespace and ASCII only: equal configs give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def trial_key(config: dict) -> str:
    """sha256 (hex) of the canonical JSON of a trial's full config."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Trial:
    """One grid point: ``config`` has ``format``, ``method`` (the name asked for, such as ``lfp-epsilon``),
    ``data`` (spec, subset, test_subset, subset_seed), ``model`` (ModelConfig.to_dict()) and ``train``
    (the TrainConfig fields but ``progress`` and ``metrics_format``)."""

    config: dict
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", trial_key(self.config))

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def beta(self) -> float:
        return float(self.config["model"]["beta"])

    @property
    def steps(self) -> int:
        return int(self.config["train"]["steps"])

    @property
    def seed(self) -> int:
        return int(self.config["train"]["seed"])

    @property
    def lr(self) -> float:
        return float(self.config["train"]["lr"])


def trial_config(name: str, data: dict, model_config, train_config) -> dict:
    """The config dict of a trial (see :class:`Trial`)."""
    train = dataclasses.asdict(train_config)
    for k in PRESENTATION_FIELDS:
        train.pop(k, None)
    return {
        "format": VERSION,
        "method": name,
        "data": dict(data),
        "model": model_config.to_dict(),
        "train": train,
    }


def normalize_config(config: dict) -> dict:
    """``config`` with the model and train fields it lacks filled in with today's defaults.

    A results file written before a field was added to ``TrainConfig`` or ``ModelConfig`` holds configs
    without it; their keys hash what was stored. Matching a requested trial against them goes through this
    function, so such trials still count as done, on the (kept) convention that a new field's default
    reproduces the old behaviour. A stored field that no longer exists keeps the trial from matching."""
    train = dataclasses.asdict(TrainConfig())
    for k in PRESENTATION_FIELDS:
        train.pop(k, None)
    out = dict(config)
    out["train"] = {**json.loads(canonical_json(train)), **config.get("train", {})}
    out["model"] = {**ModelConfig().to_dict(), **config.get("model", {})}
    return out


ConfigMaker = Callable[[str, str, str, float, int, int, float], tuple]


def make_grid(
    methods: Sequence[str],
    betas: Sequence[float],
    steps_list: Sequence[int],
    seeds: Sequence[int],
    lrs: Sequence[float],
    make_configs: ConfigMaker,
    data: dict,
) -> list[Trial]:
    """All trials of the grid methods × betas × steps_list × seeds × lrs (duplicates dropped, order kept).

    ``make_configs(name, method, rule, beta, steps, seed, lr) -> (ModelConfig, TrainConfig)`` builds each
    trial's configs; ``data`` is ``{"spec", "subset", "test_subset", "subset_seed"}``.
    """
    resolved = check_methods(methods)
    for what, values in (("betas", betas), ("steps", steps_list), ("seeds", seeds), ("lrs", lrs)):
        if not values:
            raise ValueError(f"no {what} given")
    bad = [b for b in betas if not 0 < b <= 1]
    if bad:
        raise ValueError(f"β must lie in (0, 1], got {bad}")
    bad = [t for t in steps_list if t < 1]
    if bad:
        raise ValueError(f"time steps T must be >= 1, got {bad}")
    bad = [lr for lr in lrs if not (lr > 0 and math.isfinite(lr))]
    if bad:
        raise ValueError(f"learning rates must be > 0, got {bad}")
    trials: dict[str, Trial] = {}
    for (name, method, rule), beta, steps, seed, lr in itertools.product(
        resolved, betas, steps_list, seeds, lrs
    ):
        mc, tc = make_configs(name, method, rule, float(beta), int(steps), int(seed), float(lr))
        tc.validate()
        t = Trial(trial_config(name, data, mc, tc))
        trials.setdefault(t.key, t)
    return list(trials.values())
