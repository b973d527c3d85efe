"""The C allocator's handling of freed memory, which decides whether big per-step buffers cost page faults.

A training step of the multi-step engine makes and frees buffers of [T·B, N] values (tens of MB). glibc hands
such blocks back to the operating system when they are freed (mmap / trim), so the next step's buffers fault
every page in again: on the spiking LeNet that was ~190,000 page faults and ~40% of the step on the CPU.
:func:`retain_freed_memory` keeps freed memory in the process for reuse (as PyTorch's CUDA caching
allocator does on the GPU): the resident memory then stays at the peak instead of following the live tensors.
The command line does this by default (``--allocator retain``); library users call it themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None  # musl and others have no mallopt


def retain_freed_memory() -> bool:
    """Ask glibc to serve big blocks from the heap and never give freed heap back to the system, so that
    buffers freed by one training step are reused by the next without page faults. Returns False (and changes
    nothing) where the C library is not glibc."""
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1
    return ok and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
