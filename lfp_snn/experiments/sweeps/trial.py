"""Running one trial from its config alone (in this process, a pool worker or a Ray task)."""

from __future__ import annotations

import math
import platform
import socket
import time
import traceback

import torch

from ... import __version__
from ...data import is_event_spec, load_data
from ...models import ModelConfig
from ...training import TrainConfig, Trainer
from .grid import canonical_json, trial_key

_DATA_CACHE: dict[tuple, tuple] = {}


def load_trial_data(data: dict, steps: int, download: bool = False):
    """``(train, test)`` for a trial's data config (cached per process: the grid shares its data); with
    ``validation`` in the config ``(fit, validation)``, a stratified split of the training set."""
    event = is_event_spec(data["spec"])
    key = (canonical_json(data), steps if event else None)
    if key not in _DATA_CACHE:
        train, test = load_data(data["spec"], steps, download, data.get("limit"))
        seed = int(data.get("subset_seed", 0))
        if data.get("subset"):
            train = train.subset(int(data["subset"]), seed=seed)
        if data.get("test_subset"):
            test = test.subset(int(data["test_subset"]), seed=seed)
        if data.get("validation"):
            train, test = train.holdout(float(data["validation"]), seed=seed)
        _DATA_CACHE.clear()  # keep one data set: a sweep has one, event data one per T
        _DATA_CACHE[key] = (train, test)
    return _DATA_CACHE[key]


def run_trial(config: dict, device: str = "cpu", threads: int | None = 1) -> dict:
    """Train the trial ``config`` describes and return its record: ``key``, ``config``, ``history`` (the
    Trainer's per-epoch dicts) and ``info`` (final accuracy on the test or validation split, wall time,
    device, threads, versions)."""
    if threads:
        torch.set_num_threads(threads)
    train, test = load_trial_data(config["data"], int(config["train"]["steps"]))
    mc = ModelConfig.from_dict(config["model"])
    tc = TrainConfig(**{**config["train"], "progress": False})
    t0 = time.perf_counter()
    trainer = Trainer(mc, tc, device=device)
    history = trainer.fit(train, test)
    final = history[-1]["test_accuracy"] if history else trainer.evaluate(test)["accuracy"]
    info = {
        "final_test_accuracy": float(final),
        "scored_on": "validation" if config["data"].get("validation") else "test",
        "final_train_accuracy": float(history[-1]["train_accuracy"]) if history else math.nan,
        "epochs": len(history),
        "wall_s": time.perf_counter() - t0,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "torch_version": torch.__version__,
        "lfp_snn_version": __version__,
        "python_version": platform.python_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return {"key": trial_key(config), "config": config, "history": history, "info": info}


def run_trial_safe(config: dict, device: str, threads: int | None, retain_memory: bool = False) -> dict:
    """:func:`run_trial` that returns ``{"key", "error"}`` instead of raising (for pools and Ray)."""
    if retain_memory:
        from ...allocator import retain_freed_memory

        retain_freed_memory()
    try:
        return run_trial(config, device, threads)
    except Exception as e:  # noqa: BLE001 (a failed trial must not end the sweep)
        return {
            "key": trial_key(config),
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
