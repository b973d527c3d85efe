"""Grid sweeps over β × T × method × seed × learning rate: ``lfp-snn sweep``.

``lfp-snn sweep --betas 0.3 0.6 0.9 --steps-list 5 15 25 --methods lfp-epsilon lfp-zplus-zminus bptt-snntorch
--data fashion-mnist --subset 3000 --epochs 3 --workers 2 --out DIR`` trains one model per grid point
(a *trial*) with the :class:`~lfp_snn.training.Trainer` and writes to DIR:

- ``sweep.h5`` (or ``--results PATH``): one HDF5 file, one group per trial ``/trials/<key>`` where ``key`` is the
  sha256 of the trial's canonical JSON config (:func:`trial_key`); the per-epoch metrics are datasets under
  ``/trials/<key>/metrics/`` (``test_accuracy``, ``train_accuracy``, ``spike_rate/<layer>``, ...), the config is
  the attribute ``config`` (JSON) and the key fields (method, beta, steps, seed, lr, final accuracy, ...) are
  attributes too;
- ``heatmap.png``: final test accuracy over (β, T), one panel per method (and learning rate), shared colour
  scale, annotated cells (mean over seeds);
- ``results.md`` and ``results.csv``: the same as tables (β × T per method; one CSV row per trial).

Every trial is independent and reproducible from its config alone (data spec and subset seed, model config,
train config; the device and thread count are recorded but are not part of the key). A rerun of the same
command skips the trials already in the results file, so a sweep resumes after a crash or Ctrl-C.

Crash safety: a finished trial is first written to its own small file ``<results>.parts/<key>.h5`` (written
under a temporary name, fsynced, then renamed, so it exists whole or not at all); the parts are then merged
into the results file by writing a *copy* of it and renaming the copy over it (again fsynced). The results
file is therefore always either the old or the new complete version, never half-written, and a part whose
merge was interrupted is merged on the next run. A results file that cannot be read, is not an lfp-snn sweep
file, or holds a malformed trial is reported (file, group and what is wrong) and left untouched: pass
``--results NEW.h5`` to start another file.

Executors: ``--workers 1`` (default) runs the trials in this process; ``--workers N`` uses a
``ProcessPoolExecutor`` with the spawn start method (each worker sets ``torch.set_num_threads`` to
``--threads-per-trial``); ``--executor ray`` (also accepted as ``--backend ray``) runs one Ray task per trial,
on a local Ray instance or on ``--ray-address`` (``num_gpus=1`` per task with ``--device cuda``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .kernels import CHOICES as BACKENDS

FORMAT = "lfp-snn-sweep"
VERSION = 1
DEFAULT_METHODS = ("lfp-epsilon", "lfp-zplus-zminus", "bptt-snntorch")
DEFAULT_BETAS = (0.3, 0.6, 0.9)
DEFAULT_STEPS = (5, 15, 25)
EXECUTORS = ("local", "ray")
# TrainConfig fields that change how a run is shown, not what it computes: left out of the trial config
PRESENTATION_FIELDS = ("progress", "metrics_format")

__all__ = [
    "DEFAULT_METHODS",
    "ResultsStore",
    "SweepFileError",
    "Trial",
    "add_commands",
    "canonical_json",
    "make_grid",
    "normalize_config",
    "read_results",
    "run_sweep",
    "run_trial",
    "summarize",
    "trial_key",
    "write_report",
]


class SweepFileError(ValueError):
    """A results file (or a part file) is unreadable, not a sweep file, or holds a malformed trial."""


# --------------------------------------------------------------------------------------------------------
# trials and their keys
# --------------------------------------------------------------------------------------------------------


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
    from .models import ModelConfig
    from .training import TrainConfig

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
    from .compare import check_methods

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


# --------------------------------------------------------------------------------------------------------
# running one trial
# --------------------------------------------------------------------------------------------------------

_DATA_CACHE: dict[tuple, tuple] = {}


def load_trial_data(data: dict, steps: int, download: bool = False):
    """``(train, test)`` for a trial's data config (cached per process: the grid shares its data)."""
    from .cli import load_any
    from .events import training_data

    event = training_data.is_event_spec(data["spec"])
    key = (canonical_json(data), steps if event else None)
    if key not in _DATA_CACHE:
        train, test = load_any(data["spec"], steps, download)
        seed = int(data.get("subset_seed", 0))
        if data.get("subset"):
            train = train.subset(int(data["subset"]), seed=seed)
        if data.get("test_subset"):
            test = test.subset(int(data["test_subset"]), seed=seed)
        _DATA_CACHE.clear()  # keep one data set: a sweep has one, event data one per T
        _DATA_CACHE[key] = (train, test)
    return _DATA_CACHE[key]


def run_trial(config: dict, device: str = "cpu", threads: int | None = 1) -> dict:
    """Train the trial ``config`` describes and return its record: ``key``, ``config``, ``history`` (the
    Trainer's per-epoch dicts) and ``info`` (final/best accuracy, wall time, device, threads, versions)."""
    from .models import ModelConfig
    from .training import TrainConfig, Trainer

    if threads:
        torch.set_num_threads(threads)
    train, test = load_trial_data(config["data"], int(config["train"]["steps"]))
    mc = ModelConfig.from_dict(config["model"])
    tc = TrainConfig(**{**config["train"], "progress": False})
    t0 = time.perf_counter()
    trainer = Trainer(mc, tc, device=device)
    history = trainer.fit(train, test)
    final = history[-1]["test_accuracy"] if history else trainer.evaluate(test)["accuracy"]
    import lfp_snn

    info = {
        "final_test_accuracy": float(final),
        "best_test_accuracy": float(max((r["test_accuracy"] for r in history), default=final)),
        "final_train_accuracy": float(history[-1]["train_accuracy"]) if history else math.nan,
        "epochs": len(history),
        "wall_s": time.perf_counter() - t0,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "torch_version": torch.__version__,
        "lfp_snn_version": getattr(lfp_snn, "__version__", "?"),
        "python_version": platform.python_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return {"key": trial_key(config), "config": config, "history": history, "info": info}


def _run_trial_safe(config: dict, device: str, threads: int | None) -> dict:
    """:func:`run_trial` that returns ``{"key", "error"}`` instead of raising (for pools and Ray)."""
    try:
        return run_trial(config, device, threads)
    except Exception as e:  # noqa: BLE001 (a failed trial must not end the sweep)
        return {
            "key": trial_key(config),
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }


# --------------------------------------------------------------------------------------------------------
# the results file
# --------------------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _columns(history: list[dict]) -> dict[str, np.ndarray]:
    names: list[str] = []
    for r in history:
        names += [k for k in r if k not in names]
    out = {}
    for name in names:
        values = [r.get(name, math.nan) for r in history]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        if all(isinstance(v, int) for v in values):
            out[name] = np.asarray(values, dtype=np.int64)
        else:
            out[name] = np.asarray(values, dtype=np.float64)
    return out


def _write_trial(trials, record: dict) -> None:
    """Write ``record`` as the group ``trials/<key>`` (an h5py group ``trials``)."""
    cfg = record["config"]
    g = trials.create_group(record["key"])
    g.attrs["key"] = record["key"]
    g.attrs["config"] = canonical_json(cfg)
    g.attrs["method"] = cfg["method"]
    g.attrs["rule"] = cfg["train"].get("rule", "")
    g.attrs["arch"] = cfg["model"].get("arch", "")
    g.attrs["data"] = cfg["data"].get("spec", "")
    g.attrs["beta"] = float(cfg["model"]["beta"])
    g.attrs["steps"] = int(cfg["train"]["steps"])
    g.attrs["seed"] = int(cfg["train"]["seed"])
    g.attrs["lr"] = float(cfg["train"]["lr"])
    for k, v in record["info"].items():
        g.attrs[k] = str(v) if isinstance(v, str) else v  # a str subclass (torch.__version__) -> plain str
    m = g.create_group("metrics")
    for name, values in _columns(record["history"]).items():
        m.create_dataset(name, data=values)


def _read_trial(g, where: str) -> dict:
    """A record from a trial group; SweepFileError (naming ``where``) if anything is missing or wrong."""
    import h5py

    def bad(what: str) -> SweepFileError:
        return SweepFileError(f"{where}: {what}")

    if "config" not in g.attrs:
        raise bad("no 'config' attribute")
    try:
        cfg = json.loads(g.attrs["config"])
    except (TypeError, ValueError) as e:
        raise bad(f"the 'config' attribute is not valid JSON ({e})") from None
    key = trial_key(cfg)
    if g.name.rsplit("/", 1)[-1] != key or g.attrs.get("key") != key:
        raise bad(f"the group name / 'key' attribute does not match the sha256 of its config ({key[:12]}…)")
    if "metrics" not in g or not isinstance(g["metrics"], h5py.Group):
        raise bad("no 'metrics' group")
    columns: dict[str, np.ndarray] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            columns[name] = obj[()]

    try:
        g["metrics"].visititems(visit)
    except (OSError, RuntimeError, KeyError) as e:
        raise bad(f"its metrics cannot be read ({e})") from None
    epochs = {len(v) if np.ndim(v) == 1 else -1 for v in columns.values()}
    if len(epochs) > 1 or -1 in epochs:
        raise bad(f"its metrics are not 1-D arrays of one length (lengths {sorted(epochs)})")
    n = epochs.pop() if epochs else 0
    if n and "test_accuracy" not in columns:
        raise bad("metrics without 'test_accuracy'")
    if "final_test_accuracy" not in g.attrs:
        raise bad("no 'final_test_accuracy' attribute")
    info = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}
    for k in ("config", "key"):
        info.pop(k)
    history = [{name: values[i].item() for name, values in columns.items()} for i in range(n)]
    return {"key": key, "config": cfg, "history": history, "info": info}


def _open_checked(path: Path):
    """Open a sweep file for reading, or raise SweepFileError saying what is wrong with it."""
    import h5py

    hint = "it was left untouched; pass --results NEW.h5 to write to another file, or move it away"
    if path.stat().st_size == 0:
        raise SweepFileError(f"{path}: the file is empty (0 bytes), not an lfp-snn sweep file; {hint}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SweepFileError(
            f"{path}: cannot be read as HDF5 ({e}); it may be truncated or corrupted; {hint}"
        ) from None
    if f.attrs.get("format") != FORMAT or "trials" not in f:
        f.close()
        raise SweepFileError(
            f"{path}: an HDF5 file but not an lfp-snn sweep results file (no format={FORMAT!r} attribute "
            f"or no /trials group); {hint}"
        )
    version = int(f.attrs.get("version", 0))
    if version > VERSION:
        f.close()
        raise SweepFileError(f"{path}: written by a newer lfp-snn (format version {version} > {VERSION})")
    return f


def read_results(path: str | os.PathLike) -> dict[str, dict]:
    """All trial records of a results file, ``{key: record}`` (records as :func:`run_trial` returns them).
    Raises SweepFileError for a corrupted or foreign file, naming the file, the group and the problem."""
    path = Path(path)
    hint = "the file was left untouched; pass --results NEW.h5 to write to another file"
    with _open_checked(path) as f:
        out = {}
        for name in f["trials"]:
            try:
                out[name] = _read_trial(f["trials"][name], f"{path}: trial group /trials/{name}")
            except SweepFileError as e:
                raise SweepFileError(f"{e}; {hint}") from None
            except (OSError, RuntimeError, KeyError) as e:
                raise SweepFileError(
                    f"{path}: trial group /trials/{name} cannot be read ({e}); {hint}"
                ) from None
    return out


def _new_file(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.create_group("trials")


class ResultsStore:
    """The results file, its parts folder and a lock held while a sweep writes them.

    ``with ResultsStore(path) as store:`` checks the file (SweepFileError if it is damaged), removes temporary
    files left by a killed run and merges parts left unmerged; ``store.done`` holds the finished keys;
    ``store.add(record)`` makes one trial durable (part file) and merges it into the results file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.parts = Path(str(self.path) + ".parts")
        self.records: dict[str, dict] = {}  # by the key stored in the file
        self.current: dict[str, str] = {}  # key of the config normalised to today's fields -> stored key
        self._lock = None

    @property
    def done(self) -> set[str]:
        """Keys of the finished trials, as today's code computes them (see :func:`normalize_config`)."""
        return set(self.current)

    def record(self, key: str) -> dict:
        """The record of a finished trial, by today's key."""
        return self.records[self.current[key]]

    def _index(self, records: dict[str, dict]) -> None:
        self.records.update(records)
        for k, r in records.items():
            self.current[trial_key(normalize_config(r["config"]))] = k

    def __enter__(self) -> ResultsStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._index(read_results(self.path))  # checked before anything is written
        self.parts.mkdir(exist_ok=True)
        self._lock = open(self.parts / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise SweepFileError(
                f"{self.path}: another sweep is writing this results file (lock {self.parts / 'lock'} is held); "
                "wait for it or pass --results NEW.h5"
            ) from None
        for tmp in [*self.parts.glob("*.tmp-*"), *self.path.parent.glob(f".{self.path.name}.tmp-*")]:
            tmp.unlink(missing_ok=True)  # left by a killed run: never renamed, so never part of the results
        self.merge()
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            try:
                if not any(self.parts.glob("*.h5")):
                    (self.parts / "lock").unlink(missing_ok=True)
                    self.parts.rmdir()
            except OSError:
                pass
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _tmp(self, final: Path) -> Path:
        return final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")

    def write_part(self, record: dict) -> Path:
        """Write one record to ``<results>.parts/<key>.h5``: under a temporary name, fsynced, then renamed."""
        import h5py

        final = self.parts / f"{record['key']}.h5"
        tmp = self.parts / f"{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            _write_trial(f.create_group("trials"), record)
        _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(self.parts)
        return final

    def _read_part(self, part: Path) -> dict:
        try:
            records = read_results(part)
        except SweepFileError as e:
            raise SweepFileError(
                f"part file of {self.path} is damaged: {e}. Delete {part} to rerun that trial"
            ) from None
        if len(records) != 1 or part.stem not in records:
            raise SweepFileError(
                f"{part}: expected exactly the trial {part.stem[:12]}…; delete it to rerun it"
            )
        return records[part.stem]

    def merge(self) -> int:
        """Merge every part into the results file (a copy written and renamed over it); returns how many
        trials were added."""
        import shutil

        import h5py

        parts = sorted(self.parts.glob("*.h5"))
        if not parts:
            return 0
        new = {}
        for part in parts:
            record = self._read_part(part)
            if record["key"] not in self.records:
                new[record["key"]] = record
        if new or not self.path.exists():
            tmp = self._tmp(self.path)
            try:
                if self.path.exists():
                    shutil.copyfile(self.path, tmp)
                else:
                    _new_file(tmp)
                with h5py.File(tmp, "a") as f:
                    for record in new.values():
                        _write_trial(f["trials"], record)
                _fsync_file(tmp)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)
            self._index(new)
        for part in parts:
            part.unlink()
        return len(new)

    def add(self, record: dict) -> None:
        """Make a finished trial durable and merge it into the results file."""
        self.write_part(record)
        self.merge()


# --------------------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------------------


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    torch.set_num_threads(threads)


def _inline(trials: list[Trial], device: str, threads: int) -> Iterator[tuple[Trial, dict]]:
    for t in trials:
        yield t, _run_trial_safe(t.config, device, threads)


def _pool(trials: list[Trial], workers: int, device: str, threads: int) -> Iterator[tuple[Trial, dict]]:
    ctx = multiprocessing.get_context("spawn")
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    clean = False
    try:
        pending = {ex.submit(_run_trial_safe, t.config, device, threads): t for t in trials}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                t = pending.pop(fut)
                try:
                    yield t, fut.result()
                except BrokenProcessPool as e:
                    yield t, {"key": t.key, "error": f"worker process died ({e})"}
        clean = True
    finally:
        if clean:
            ex.shutdown(wait=True)
        else:  # interrupted: running trials are abandoned (their parts are never renamed into place)
            procs = list((getattr(ex, "_processes", None) or {}).values())
            ex.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(5)


def _ray(
    trials: list[Trial], workers: int, device: str, threads: int, address: str | None
) -> Iterator[tuple[Trial, dict]]:
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "--executor ray needs Ray, which is not installed; install it with "
            "`pip install -c scripts/constraints.txt 'ray[default]'` (or the extra: pip install 'lfp-snn[ray]'), "
            "or use the local process pool (--executor local --workers N)"
        ) from e
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:  # a private local instance on the loopback interface
            ray.init(
                num_cpus=max(workers, 1) * threads,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
            )
        started = True
    remote = ray.remote(num_cpus=threads, num_gpus=1 if device.startswith("cuda") else 0, max_retries=0)(
        _run_trial_safe
    )
    refs = {remote.remote(t.config, device, threads): t for t in trials}
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield refs[ref], ray.get(ref)
                except Exception as e:  # noqa: BLE001 (a lost worker, a task error)
                    yield refs[ref], {"key": refs[ref].key, "error": f"ray task failed: {e}"}
    finally:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 (finished tasks cannot be cancelled)
                pass
        if started:
            ray.shutdown()


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: records of all grid trials now in the file, skipped and new keys, failures
    ``{key: error}``, and whether it was interrupted."""

    records: dict[str, dict]
    skipped: list[str]
    ran: list[str]
    failed: dict[str, str]
    interrupted: bool = False


def run_sweep(
    trials: Sequence[Trial],
    results: str | os.PathLike,
    *,
    executor: str = "local",
    workers: int = 1,
    threads_per_trial: int = 1,
    device: str = "cpu",
    ray_address: str | None = None,
    log: Callable[[str], None] | None = print,
) -> SweepOutcome:
    """Run the trials not yet in ``results`` and record each one as it finishes.

    ``executor`` is ``local`` (``workers`` = 1: in this process; more: a spawn process pool) or ``ray``.
    Ctrl-C (KeyboardInterrupt) stops the workers, keeps every finished trial and returns with
    ``interrupted=True``; a failed trial is reported in ``failed`` and not recorded (a rerun retries it).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if workers < 1 or threads_per_trial < 1:
        raise ValueError(f"workers and threads per trial must be >= 1, got {workers} and {threads_per_trial}")
    say = log or (lambda s: None)
    with ResultsStore(results) as store:
        skipped = [t.key for t in trials if t.key in store.done]
        todo = sorted((t for t in trials if t.key not in store.done), key=lambda t: -t.steps)  # long first
        say(
            f"sweep: {len(trials)} trials, {len(skipped)} already in {store.path}, {len(todo)} to run "
            f"({executor}, {workers} worker(s) × {threads_per_trial} thread(s), {device})"
        )
        ran: list[str] = []
        failed: dict[str, str] = {}
        interrupted = False
        if todo:
            if executor == "ray":
                stream = _ray(todo, workers, device, threads_per_trial, ray_address)
            elif workers == 1:
                stream = _inline(todo, device, threads_per_trial)
            else:
                stream = _pool(todo, workers, device, threads_per_trial)
            try:
                for t, record in stream:
                    label = f"{t.method} β={t.beta:g} T={t.steps} seed={t.seed} lr={t.lr:g} [{t.key[:12]}]"
                    if "error" in record:
                        failed[t.key] = record["error"]
                        say(f"FAILED {label}: {record['error']}")
                        continue
                    store.add(record)
                    ran.append(t.key)
                    info = record["info"]
                    say(
                        f"done {len(skipped) + len(ran)}/{len(trials)}  {label}  test acc "
                        f"{info['final_test_accuracy']:.4f}  {info['wall_s']:.1f}s"
                    )
            except KeyboardInterrupt:
                interrupted = True
                say(
                    f"interrupted: {len(skipped) + len(ran)} of {len(trials)} trials are in {store.path}; "
                    "run the same command again to resume"
                )
            finally:
                stream.close()  # a pool or Ray stops its workers when the loop ends early
        records = {t.key: store.record(t.key) for t in trials if t.key in store.done}  # grid order
    return SweepOutcome(records, skipped, ran, failed, interrupted)


# --------------------------------------------------------------------------------------------------------
# report: tables and heatmaps
# --------------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "key",
    "method",
    "beta",
    "steps",
    "seed",
    "lr",
    "arch",
    "data",
    "epochs",
    "final_test_accuracy",
    "best_test_accuracy",
    "final_train_accuracy",
    "wall_s",
    "mean_epoch_s",
)


def summarize(records: Iterable[dict]) -> list[dict]:
    """One flat row per trial (see CSV_COLUMNS, plus ``spike_rate/<layer>`` of the last epoch)."""
    rows = []
    for r in records:
        cfg, info, hist = r["config"], r["info"], r["history"]
        row = {
            "key": r["key"],
            "method": cfg["method"],
            "beta": float(cfg["model"]["beta"]),
            "steps": int(cfg["train"]["steps"]),
            "seed": int(cfg["train"]["seed"]),
            "lr": float(cfg["train"]["lr"]),
            "arch": cfg["model"]["arch"],
            "data": cfg["data"]["spec"],
            "epochs": len(hist),
            "final_test_accuracy": float(info["final_test_accuracy"]),
            "best_test_accuracy": float(info.get("best_test_accuracy", math.nan)),
            "final_train_accuracy": float(info.get("final_train_accuracy", math.nan)),
            "wall_s": float(info.get("wall_s", math.nan)),
            "mean_epoch_s": statistics.fmean(h["time_s"] for h in hist) if hist else math.nan,
        }
        if hist:
            row.update({k: v for k, v in hist[-1].items() if k.startswith("spike_rate/")})
        rows.append(row)
    order = {m: i for i, m in enumerate(dict.fromkeys(row["method"] for row in rows))}
    rows.sort(key=lambda x: (order[x["method"]], x["lr"], x["beta"], x["steps"], x["seed"]))
    return rows


def _panels(rows: list[dict]) -> dict[tuple[str, float], dict[tuple[float, int], list[float]]]:
    """{(method, lr): {(beta, steps): [final accuracy per seed]}} in order of appearance."""
    out: dict = {}
    for row in rows:
        cell = out.setdefault((row["method"], row["lr"]), {}).setdefault((row["beta"], row["steps"]), [])
        cell.append(row["final_test_accuracy"])
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _cell(values: list[float]) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" + ("" if math.isnan(std) else f" ± {100 * std:.1f}")


def markdown(rows: list[dict], betas: Sequence[float], steps: Sequence[int], meta: dict | None = None) -> str:
    """Tables of final test accuracy (%) over β (rows) × T (columns), one per method (and lr)."""
    panels = _panels(rows)
    seeds = sorted({r["seed"] for r in rows})
    lines = ["# β × T sweep", ""]
    for k, v in (meta or {}).items():
        lines.append(f"- {k}: {v}")
    lines += [
        "- cells: final test accuracy (%) after the last epoch"
        + (f", mean ± std over seeds {seeds}" if len(seeds) > 1 else f", seed {seeds[0]}" if seeds else ""),
        "- –: trial missing (not run yet, or failed)",
        "",
    ]
    multi_lr = len({lr for _, lr in panels}) > 1
    for (method, lr), cells in panels.items():
        lines += [f"## {method}" + (f", lr {lr:g}" if multi_lr else ""), ""]
        lines += ["| β \\ T | " + " | ".join(str(t) for t in steps) + " |", "|---|" + "---|" * len(steps)]
        for b in betas:
            lines.append(f"| {b:g} | " + " | ".join(_cell(cells.get((b, t), [])) for t in steps) + " |")
        lines.append("")
    lines += ["![final test accuracy over β and T](heatmap.png)", ""]
    return "\n".join(lines)


def plot_heatmaps(
    rows: list[dict], betas: Sequence[float], steps: Sequence[int], path: str | os.PathLike, title: str = ""
) -> Path:
    """One heatmap of final test accuracy (%) over (β, T) per method (columns) and learning rate (rows),
    annotated cells (mean over seeds; ± std when there are several), one colour scale for all panels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = _panels(rows)
    methods = list(dict.fromkeys(m for m, _ in panels))
    lrs = sorted({lr for _, lr in panels})
    grids = {
        key: np.array([[_mean_std(cells.get((b, t), []))[0] for t in steps] for b in betas]) * 100
        for key, cells in panels.items()
    }
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()] or [np.array([])])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    if vmax - vmin < 1:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    nr, nc = len(lrs), max(len(methods), 1)
    w = 1.0 + 0.62 * len(steps)
    h = 0.9 + 0.5 * len(betas)
    fig, axes = plt.subplots(
        nr, nc, figsize=(w * nc + 1.4, h * nr + 0.9), dpi=130, squeeze=False, constrained_layout=True
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")  # missing cells in grey
    seeds = sorted({r["seed"] for r in rows})
    image = None
    for i, lr in enumerate(lrs):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            key = (method, lr)
            if key not in panels:
                ax.axis("off")
                continue
            g = grids[key]
            image = ax.imshow(
                np.ma.masked_invalid(g), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto"
            )
            for bi, b in enumerate(betas):
                for ti, t in enumerate(steps):
                    vals = panels[key].get((b, t), [])
                    mean, std = _mean_std(vals)
                    if math.isnan(mean):
                        ax.text(ti, bi, "–", ha="center", va="center", color="#555555", fontsize=10)
                        continue
                    frac = (100 * mean - vmin) / (vmax - vmin)
                    color = "black" if frac > 0.55 else "white"
                    text = f"{100 * mean:.1f}" + ("" if math.isnan(std) else f"\n±{100 * std:.1f}")
                    ax.text(
                        ti, bi, text, ha="center", va="center", color=color, fontsize=9, fontweight="bold"
                    )
            ax.set_xticks(range(len(steps)), [str(t) for t in steps])
            ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_xlabel("time steps T")
            if j == 0:
                ax.set_ylabel("membrane decay β")
            ax.set_title(method + (f"\nlr {lr:g}" if len(lrs) > 1 else ""), fontsize=10)
    if image is not None:
        cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
        seed_note = f"mean over seeds {seeds}" if len(seeds) > 1 else f"seed {seeds[0]}"
        cb.set_label(f"final test accuracy (%)\n{seed_note}")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    records: Iterable[dict],
    out_dir: str | os.PathLike,
    betas: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    meta: dict | None = None,
    title: str = "",
) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and ``heatmap.png`` to ``out_dir``; return their paths. The β and
    T axes default to the values present in ``records``."""
    rows = summarize(records)
    betas = sorted(set(betas if betas is not None else (r["beta"] for r in rows)))
    steps = sorted(set(steps if steps is not None else (r["steps"] for r in rows)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r if k not in CSV_COLUMNS})
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*CSV_COLUMNS, *extra], restval="")
        w.writeheader()
        w.writerows(rows)
    (out / "results.md").write_text(markdown(rows, betas, steps, meta))
    paths = [out / "results.csv", out / "results.md"]
    if rows:
        paths.append(plot_heatmaps(rows, betas, steps, out / "heatmap.png", title))
    return paths


# --------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` arguments, with the grid axes and the executor options on top."""
    from .cli import add_train_arguments

    add_train_arguments(p)
    g = p.add_argument_group("grid (each trial: one value of every list)")
    g.add_argument(
        "--methods",
        "--method",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help=f"methods (default: {' '.join(DEFAULT_METHODS)}); lfp-<composite> or a registered method",
    )
    g.add_argument(
        "--betas",
        "--beta",
        type=float,
        nargs="+",
        default=list(DEFAULT_BETAS),
        help=f"membrane decays β (default: {' '.join(map(str, DEFAULT_BETAS))})",
    )
    g.add_argument(
        "--steps-list",
        "-T",
        "--steps",
        dest="steps_list",
        type=int,
        nargs="+",
        default=list(DEFAULT_STEPS),
        help=f"time steps T (default: {' '.join(map(str, DEFAULT_STEPS))})",
    )
    g.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    g.add_argument(
        "--lrs", "--lr", type=float, nargs="+", default=[3e-3], help="learning rates (default: 3e-3)"
    )
    g.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the --subset/--test-subset draw (default 0, all trials)",
    )
    g = p.add_argument_group("results and execution")
    g.add_argument("--out", default="sweep-out", help="folder for heatmap.png, results.md, results.csv")
    g.add_argument(
        "--results", default=None, help="HDF5 results file (default: OUT/sweep.h5); a rerun skips its trials"
    )
    g.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local (default: this process, or a process pool with --workers > 1) or ray",
    )
    g.add_argument(
        "--backend",
        default="torch",
        choices=(*BACKENDS, *EXECUTORS),
        help=f"LIF kernels ({', '.join(BACKENDS)}) as in train; 'ray' or 'local' here means --executor",
    )
    g.add_argument("--workers", type=int, default=1, help="trials at once (default 1: in this process)")
    g.add_argument(
        "--threads-per-trial",
        "--threads",
        dest="threads_per_trial",
        type=int,
        default=1,
        help="torch CPU threads per trial (default 1)",
    )
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    g.add_argument(
        "--report-only", action="store_true", help="write the report from the results file; train nothing"
    )


def add_commands(subparsers) -> None:
    """Add the ``sweep`` subcommand (for ``lfp_snn.cli.COMMAND_MODULES``)."""
    p = subparsers.add_parser(
        "sweep",
        help="grid over β × T × method × seed × lr; results in one HDF5 file, heatmaps and tables",
        description="Train one model per point of the grid --methods × --betas × --steps-list × --seeds × --lrs "
        "(the other train arguments are shared), record every finished trial in one HDF5 file keyed by the "
        "sha256 of its config (a rerun skips finished trials), and write heatmap.png, results.md and "
        "results.csv to --out.",
        conflict_handler="resolve",
    )
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)


def grid_from_args(a: argparse.Namespace) -> tuple[list[Trial], dict]:
    """The trials of the command line's grid, and a description of the shared settings."""
    from .cli import configs_from_args
    from .models import is_spiking_arch

    data = {"spec": a.data, "subset": a.subset, "test_subset": a.test_subset, "subset_seed": a.data_seed}
    train, test = load_trial_data(data, a.steps_list[0], a.download)

    def make_configs(name, method, rule, beta, steps, seed, lr):
        ns = argparse.Namespace(**vars(a))
        ns.method, ns.rule, ns.beta, ns.steps, ns.seed, ns.lr = method, rule, beta, steps, seed, lr
        ns.no_progress = True
        mc, tc = configs_from_args(ns, train)
        return mc, dataclasses.replace(tc, feedback_precision=a.feedback_precision, progress=False)

    trials = make_grid(a.methods, a.betas, a.steps_list, a.seeds, a.lrs, make_configs, data)
    spiking = is_spiking_arch(a.arch)
    meta = {
        "data": f"{a.data} ({len(train)} train / {len(test)} test, subset seed {a.data_seed})",
        "model": a.arch
        + (f" hidden {' '.join(map(str, a.hidden))}" if a.hidden else "")
        + (f", θ={a.threshold}, reset={a.reset}, encoder={a.encoder}" if spiking else ""),
        "training": f"{a.epochs} epochs, batch {a.batch_size}, {a.optimizer}, lr {' '.join(f'{x:g}' for x in a.lrs)}",
        "grid": f"methods {' '.join(a.methods)}; β {' '.join(f'{b:g}' for b in a.betas)}; "
        f"T {' '.join(map(str, a.steps_list))}; seeds {' '.join(map(str, a.seeds))}",
    }
    return trials, meta


def cmd_sweep(a: argparse.Namespace) -> int:
    from .cli import resolve_device

    if a.backend in EXECUTORS:
        a.executor, a.backend = a.backend, "torch"
    if a.executor == "local" or not a.device.startswith("cuda"):
        device = str(resolve_device(a.device))
    else:
        device = a.device  # the Ray cluster's GPUs, not this machine's
    torch.set_num_threads(a.threads_per_trial)
    results = Path(a.results) if a.results else Path(a.out) / "sweep.h5"
    if results.exists():
        read_results(results)  # a damaged file is reported before any data is loaded
    try:
        trials, meta = grid_from_args(a)
    except ImportError as e:
        raise SystemExit(f"error: {e}") from None
    if not a.report_only:
        meta["executor"] = f"{a.executor}, {a.workers} worker(s) × {a.threads_per_trial} thread(s), {device}"
    meta["results"] = str(results)
    outcome = None
    if a.report_only:
        if not results.exists():
            raise FileNotFoundError(f"{results}: no results file to report on")
        stored = read_results(results)
        current = {trial_key(normalize_config(r["config"])): r for r in stored.values()}
        records = {t.key: current[t.key] for t in trials if t.key in current}
    else:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            outcome = run_sweep(
                trials,
                results,
                executor=a.executor,
                workers=a.workers,
                threads_per_trial=a.threads_per_trial,
                device=device,
                ray_address=a.ray_address,
                log=lambda s: print(s, flush=True),
            )
        except ImportError as e:
            raise SystemExit(f"error: {e}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        records = outcome.records
    meta["trials"] = f"{len(records)} of {len(trials)} in the results file"
    title = f"{a.data}, {a.arch}, {a.epochs} epochs — final test accuracy"
    paths = write_report(records.values(), a.out, a.betas, a.steps_list, meta, title)
    print(f"wrote {', '.join(str(p) for p in paths)} ({len(records)} of {len(trials)} trials)")
    if outcome is not None and outcome.interrupted:
        return 130
    if outcome is not None and outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed; rerun to retry them:", file=sys.stderr)
        for key, err in outcome.failed.items():
            print(f"  {key[:12]}: {err}", file=sys.stderr)
        return 1
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """``python -m lfp_snn.sweeps [sweep arguments]``: the same as ``lfp-snn sweep``."""
    p = argparse.ArgumentParser(
        prog="python -m lfp_snn.sweeps",
        description="β × T × method sweep (the same as `lfp-snn sweep`)",
        conflict_handler="resolve",
    )
    add_sweep_arguments(p)
    a = p.parse_args(argv)
    try:
        return cmd_sweep(a)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
