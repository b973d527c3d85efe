"""Peak memory of a block of code: the bytes held by live tensors while it runs, from torch's memory profiler.

Unlike the resident set size of the process, this does not depend on the allocator's caching or on what earlier
code left behind, so two runs of the same step give the same figure, and methods can be compared.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import warnings

import torch

# what the profiler itself prints to stderr on every run (kineto's start/stop lines, and that blocks made
# before it started are not tracked): kept off the console
_CHATTER = re.compile(rb"^(USDT:.*profiler_(start|stop)|\[W.*allocated before the profiling started.*)$")


def tensor_peak_mib(fn, device: torch.device | str = "cpu") -> float:
    """Peak of the bytes held by live tensors on ``device`` while ``fn()`` runs (parameters, optimiser state,
    inputs, activations and temporaries that ``fn`` touches), in MiB, from torch's memory profiler."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    where = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
    with (
        _quiet_profiler(),
        profile(activities=activities, profile_memory=True, record_shapes=True, with_stack=True) as prof,
    ):
        fn()
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(d, "timeline.json")
        prof.export_memory_timeline(path, device=where)
        with open(path) as f:
            _, sizes = json.load(f)
    return max((sum(s) for s in sizes), default=0) / 2**20


@contextlib.contextmanager
def _quiet_profiler():
    """Send file descriptor 2 to a temporary file while the block runs, then pass on what is not the
    profiler's own chatter."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedded interpreter): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().splitlines() if line and not _CHATTER.match(line)]
            if kept:
                os.write(2, b"\n".join(kept) + b"\n")
