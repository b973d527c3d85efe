"""--allocator retain: buffers freed by one step are reused by the next without page faults."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lfp_snn.allocator import _libc

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import resource, sys, torch
    from lfp_snn.allocator import retain_freed_memory
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    for _ in range(2):  # warm up: the first big buffers fault in either way
        torch.ones(64 << 18)
    faults = []
    for _ in range(7):  # 64 MiB made and freed, as a training step's buffers are
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(64 << 18)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(sorted(faults)[len(faults) // 2])  # the median: one page-out by the system does not decide it
    """
)


def _faults(mode: str) -> int:
    """Median page faults of making a freed 64 MiB buffer again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not another installed copy
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True, env=env
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(_libc() is None, reason="needs glibc's mallopt")
def test_retained_memory_is_reused_without_page_faults():
    pages = (64 << 20) // 4096  # what faulting every page of the buffer in again would cost
    assert _faults("default") > pages // 2  # glibc unmaps big blocks: they fault in again
    assert _faults("retain") < pages // 20


def test_cli_retains_by_default_and_can_leave_the_allocator_alone():
    from lfp_snn.cli import build_parser

    a = build_parser().parse_args(["train"])
    assert a.allocator == "retain"
    assert build_parser().parse_args(["train", "--allocator", "default"]).allocator == "default"
