"""The results file of a sweep: one HDF5 file, one group per trial, written so that a crash never leaves it
half-written (see :class:`ResultsStore`)."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .grid import FORMAT, VERSION, canonical_json, normalize_config, trial_key


class SweepFileError(ValueError):
    """A results file (or a part file) is unreadable, not a sweep file, or holds a malformed trial."""


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


def _fcntl():
    """The POSIX file-lock module; where it is missing (Windows), an ImportError that says what to do."""
    try:
        import fcntl
    except ImportError:
        raise ImportError(
            f"writing a sweep results file takes a POSIX file lock (fcntl), which this platform ({sys.platform}) "
            "lacks; run sweeps on Linux or macOS (or under WSL); reading results (--report-only, "
            "read_results) needs no lock"
        ) from None
    return fcntl


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
        fcntl = _fcntl()
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
            fcntl = _fcntl()
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
