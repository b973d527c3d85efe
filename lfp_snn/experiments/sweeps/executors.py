"""Where trials run: in this process, in a pool of spawned worker processes, or as Ray tasks.

Each executor is a generator of ``(trial, record)`` pairs in the order the trials finish; closing it early
(Ctrl-C, an error) stops the workers. Pool workers also end when the sweep's process dies without closing
it (``kill -9``, a crash): each one watches its parent (:func:`watch_parent`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from .grid import Trial
from .trial import run_trial_safe

EXECUTORS = ("local", "ray")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def watch_parent(parent: int, interval: float = 0.5) -> None:
    """End this process as soon as ``parent`` (the pid of the process that started it) is gone, whatever
    ended it: on Linux the kernel sends SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``); on every
    platform a daemon thread also checks every ``interval`` seconds whether this process has been handed to
    another parent, and exits if so."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (another C library): the thread below still watches
            pass
    if os.getppid() != parent:  # the parent died before the watch was set
        os._exit(1)

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=poll, name="lfp-snn-parent-watch", daemon=True).start()


REAPER = r"""
import os, signal, sys, time

parent, me = int(sys.argv[1]), os.getpid()


def descendants():
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            table[int(name)] = (int(fields[1]), fields[19])  # parent pid, start time
    seen, todo = {}, [parent]
    while todo:
        p = todo.pop()
        for pid, (ppid, start) in table.items():
            if ppid == p and pid not in seen and pid != me:
                seen[pid] = start
                todo.append(pid)
    return seen


known = {}
while os.getppid() == parent:
    known.update(descendants())
    time.sleep(0.5)
for pid, start in known.items():
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[19] != start:
                continue  # the pid now belongs to another process
        os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass
"""
"""The script of :func:`reap_on_exit`'s helper process (Linux: it reads the process table in /proc)."""


def reap_on_exit() -> subprocess.Popen | None:
    """Start a helper process that, if this process dies (kill -9 included) while the helper runs, kills the
    processes this one had started: a local Ray instance's (raylet's agents outlive a killed driver). Stop it
    (``.kill()``) once they have ended normally. Linux only (it follows parent pids in /proc); None elsewhere."""
    if not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen(
        [sys.executable, "-c", REAPER, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _init_worker(threads: int, parent: int, retain_memory: bool) -> None:
    watch_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    torch.set_num_threads(threads)
    if retain_memory:
        from ...allocator import retain_freed_memory

        retain_freed_memory()


def inline(trials: list[Trial], device: str, threads: int) -> Iterator[tuple[Trial, dict]]:
    for t in trials:
        yield t, run_trial_safe(t.config, device, threads)


def pool(
    trials: list[Trial], workers: int, device: str, threads: int, retain_memory: bool = False
) -> Iterator[tuple[Trial, dict]]:
    ctx = multiprocessing.get_context("spawn")
    ex = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(threads, os.getpid(), retain_memory)
    )
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
    trials: list[Trial],
    workers: int,
    device: str,
    threads: int,
    address: str | None,
    retain_memory: bool = False,
    log: Callable[[str], None] | None = None,
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
    say = log or (lambda s: None)
    started = False
    reaper = None
    if ray.is_initialized():
        say("ray: using the Ray instance this process has already started")
    else:
        if address:
            say(f"ray: joining the Ray cluster at {address}")
            ray.init(address=address)
        else:  # a private local instance on the loopback interface
            say(
                f"ray: starting a local Ray instance ({max(workers, 1) * threads} CPUs, no dashboard) for the sweep"
            )
            reaper = reap_on_exit()
            try:
                ray.init(
                    num_cpus=max(workers, 1) * threads,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    log_to_driver=False,
                )
            except BaseException:
                if reaper is not None:
                    reaper.kill()
                raise
        started = True
    remote = ray.remote(num_cpus=threads, num_gpus=1 if device.startswith("cuda") else 0, max_retries=0)(
        run_trial_safe
    )
    refs = {remote.remote(t.config, device, threads, retain_memory): t for t in trials}
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
        if reaper is not None:  # Ray ended normally: nothing to reap
            reaper.kill()
            reaper.wait()
