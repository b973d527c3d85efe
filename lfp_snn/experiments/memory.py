"""Peak memory of a block of code: the bytes held by live tensors (torch's memory profiler), and the peak
resident set a block adds (sampled)."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import threading

import torch


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _malloc_trim() -> None:
    from ..allocator import trim

    trim()


def tensor_peak_mib(fn) -> float:
    """Peak of the bytes held by live CPU tensors while ``fn()`` runs (parameters, optimiser state, inputs,
    activations and temporaries), in MiB, from torch's memory profiler: independent of the allocator's
    caching, unlike the resident set that :class:`PeakMemory` samples."""
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        fn()
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(d, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        with open(path) as f:
            _, sizes = json.load(f)
    return max(sum(s) for s in sizes) / 2**20


class PeakMemory:
    """Context manager: the peak memory a block adds, in bytes (``.peak``), and how it was measured
    (``.kind``). CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at entry. CPU on Linux: peak
    RSS above the RSS at entry, sampled every ``interval`` seconds by a thread (free heap is handed back to
    the OS with ``malloc_trim`` first). Elsewhere: the growth of ``ru_maxrss`` (a process-wide high-water
    mark, so 0 once an earlier run went higher). Inside ``with pm.paused():`` nothing counts."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak = 0
        self.kind = ""
        self._paused = False

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self._max = self._base
            self.kind = "cuda max_memory_allocated"
            return self
        _malloc_trim()
        self._base = _rss_bytes()
        if self._base is None:
            import resource

            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.kind = "ru_maxrss growth"
            return self
        self.kind = "peak RSS increase (sampled)"
        self._max = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _rss_bytes()
            if not self._paused and rss is not None and rss > self._max:
                self._max = rss
            self._stop.wait(self.interval)

    @contextlib.contextmanager
    def paused(self):
        """Leave a block out of the measurement (e.g. evaluation between training epochs)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._max = max(self._max, torch.cuda.max_memory_allocated(self.device))
        elif self.kind == "peak RSS increase (sampled)":
            rss = _rss_bytes()
            self._max = max(self._max, rss or 0)
        self._paused = True
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            else:
                _malloc_trim()
            self._paused = False

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = max(self._max, torch.cuda.max_memory_allocated(self.device)) - self._base
        elif self.kind == "ru_maxrss growth":
            import resource

            self.peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._base, 0)
        else:
            self._stop.set()
            self._thread.join()
            rss = None if self._paused else _rss_bytes()
            self.peak = max(max(self._max, rss or 0) - self._base, 0)
