"""Running a sweep: the trials not yet in the results file, on an executor, each recorded as it finishes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .executors import EXECUTORS, inline, pool, ray_tasks
from .grid import Trial
from .store import ResultsStore


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
    retain_memory: bool = False,
    log: Callable[[str], None] | None = print,
) -> SweepOutcome:
    """Run the trials not yet in ``results`` and record each one as it finishes.

    ``executor`` is ``local`` (``workers`` = 1: in this process; more: a spawn process pool) or ``ray``
    (``ray_address``: a cluster to join; None starts a local instance). ``retain_memory``: the pool workers
    and Ray tasks keep freed memory for reuse (:func:`lfp_snn.allocator.retain_freed_memory`), as this
    process does when the command line asks for it.
    Ctrl-C (KeyboardInterrupt) stops the workers, keeps every finished trial and returns with
    ``interrupted=True``; a failed trial is reported in ``failed`` and not recorded (a rerun retries it).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if ray_address is not None and executor != "ray":
        raise ValueError(f"ray_address applies to executor 'ray', not {executor!r}")
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
                stream = ray_tasks(todo, workers, device, threads_per_trial, ray_address, retain_memory, say)
            elif workers == 1:
                stream = inline(todo, device, threads_per_trial)
            else:
                stream = pool(todo, workers, device, threads_per_trial, retain_memory)
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
