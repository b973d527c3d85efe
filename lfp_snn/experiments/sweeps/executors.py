"""Where trials run: in this process, in a pool of spawned worker processes, or as Ray tasks.

Each executor is a generator of ``(trial, record)`` pairs in the order the trials finish; closing it early
(Ctrl-C, an error) stops the workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import torch

from .grid import Trial
from .trial import run_trial_safe

EXECUTORS = ("local", "ray")


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    torch.set_num_threads(threads)


def inline(trials: list[Trial], device: str, threads: int) -> Iterator[tuple[Trial, dict]]:
    for t in trials:
        yield t, run_trial_safe(t.config, device, threads)


def pool(trials: list[Trial], workers: int, device: str, threads: int) -> Iterator[tuple[Trial, dict]]:
    ctx = multiprocessing.get_context("spawn")
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))
    clean = False
    try:
        pending = {ex.submit(run_trial_safe, t.config, device, threads): t for t in trials}
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


def ray_tasks(
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
        run_trial_safe
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
