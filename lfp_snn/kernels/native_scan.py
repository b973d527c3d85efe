"""The LIF scans in plain C for the CPU: the ``"native"`` backend.

Same signatures, return values and arithmetic as the plain-torch reference
(:mod:`lfp_snn.kernels.torch_scan`), and bit-identical to it in float32 and float64: ``native_scan.c``
performs the reference's floating-point operations in the reference's order (see the comment at its top),
compiled without FMA contraction or fast-math. Where the reference launches several small torch ops per
time step, this runs one C loop over time per block of neurons, with the block's state in local arrays.

Building: on first use in a process the C file is compiled with the system C compiler (``$CC``, else the
first of ``cc``, ``gcc``, ``clang`` on the PATH) with ``-O3 -march=native -ffp-contract=off`` (and
``-mprefer-vector-width=512`` on an AVX-512 CPU; without either when the compiler rejects them) into a shared
library in ``$LFP_SNN_CACHE/native/`` (default ``~/.cache/lfp_snn/native/``), named by a hash of the source, the compiler, the flags and the
machine, and loaded with :mod:`ctypes`. Later processes load the cached library. :func:`check_available`
raises a clear error when there is no compiler or the compilation fails; nothing falls back silently.

Threads: one step's M neurons are split into ``torch.get_num_threads()`` ranges of whole blocks, run on a
thread pool (ctypes releases the GIL during the calls); small problems run in the calling thread.

Dtypes: float32 and float64 CPU tensors (other dtypes and devices: use ``backend="torch"``, or ``"triton"``
on CUDA).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from ._args import (
    check_constant_feedback_args,
    check_feedback_args,
    check_forward_out,
    forward_layout,
    output,
    spike_dtype_of,
    step_param,
)
from .layout import channels_back, channels_innermost, channels_last
from .torch_scan import RESETS

SOURCE = Path(__file__).with_name("native_scan.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC", "-std=c99")
WIDE_VECTORS = "-mprefer-vector-width=512"  # with -march=native on an AVX-512 CPU (see _flags)
COMPILERS = ("cc", "gcc", "clang")
_DTYPES = (torch.float32, torch.float64)
_SPIKE_DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.uint8,
    torch.int8,
    torch.bool,
)
_BYTE_SPIKES = (torch.uint8, torch.int8, torch.bool)  # written as 0/1 bytes, viewed as the dtype
PARALLEL_MIN_ELEMENTS = 1 << 18  # T * M below this: one call in the calling thread (handing out costs)

_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None  # loaded once per process
_BLOCK = 512  # neurons per block; read from the library when it is loaded
_POOL: ThreadPoolExecutor | None = None
_POOL_KEY: tuple[int, int] | None = None  # (pid, workers) the pool was made for


# --------------------------------------------------------------------------------------------------------
# building and loading the library
# --------------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where the compiled libraries go: ``$LFP_SNN_CACHE/native``, else ``~/.cache/lfp_snn/native``."""
    root = os.environ.get("LFP_SNN_CACHE")
    if root:
        return Path(root).expanduser() / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lfp_snn" / "native"


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` (which may carry arguments, e.g. ``ccache gcc``), else the first of
    ``cc``, ``gcc``, ``clang`` on the PATH. RuntimeError when there is none."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        cmd = shlex.split(cc)
        exe = shutil.which(cmd[0])
        if exe is None:
            raise RuntimeError(
                f"the native LIF backend compiles C code with $CC={cc!r}, which is not found; set CC to a "
                "C compiler (or unset it to use cc/gcc/clang from the PATH), or use backend='torch'"
            )
        return [exe, *cmd[1:]]
    for name in COMPILERS:
        exe = shutil.which(name)
        if exe is not None:
            return [exe]
    raise RuntimeError(
        f"the native LIF backend needs a C compiler, but none of $CC, {', '.join(COMPILERS)} is on the PATH; "
        "install one (e.g. apt-get install gcc) or set CC, or use backend='torch'"
    )


def _cpu_id() -> str:
    """The CPU's feature flags (a library built with -march=native must not be loaded on another CPU that
    shares the cache directory)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _flags() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the flags, the flags for a compiler that refuses -march=native). On an AVX-512 CPU the loops are
    vectorised 512 bits wide (compilers default to 256 there): the scans ran 1.05-1.3x faster on the spiking
    LeNet's layers, with the same bits (every operation is per neuron; nothing is reassociated)."""
    flags = FLAGS
    if platform.machine().lower() in ("x86_64", "amd64") and "avx512f" in _cpu_id().split():
        flags = (*FLAGS[:2], WIDE_VECTORS, *FLAGS[2:])
    return flags, tuple(f for f in flags if f not in ("-march=native", WIDE_VECTORS))


def _library_path(compiler: list[str], flags: tuple[str, ...], source: bytes) -> Path:
    h = hashlib.sha256()
    for part in (source, "\0".join(compiler).encode(), " ".join(flags).encode(), platform.machine().encode()):
        h.update(part)
        h.update(b"\0")
    if "-march=native" in flags:
        h.update(_cpu_id().encode())
    return cache_dir() / f"native_scan-{h.hexdigest()[:24]}.so"


def _compile(compiler: list[str], flags: tuple[str, ...], target: Path) -> subprocess.CompletedProcess:
    """Compile into a temporary file next to ``target``, then rename it there (atomic: processes may race)."""
    fd, tmp = tempfile.mkstemp(prefix=target.stem + "-", suffix=".tmp.so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [*compiler, *flags, str(SOURCE), "-o", tmp, "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            os.replace(tmp, target)
        return proc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build() -> Path:
    """Path of the compiled library, compiling it when it is not in the cache."""
    compiler = find_compiler()
    source = SOURCE.read_bytes()
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeError(
            f"the native LIF backend cannot create its cache directory {d} ({e}); set LFP_SNN_CACHE to a "
            "writable directory, or use backend='torch'"
        ) from e
    attempts = [(flags, _library_path(compiler, flags, source)) for flags in _flags()]
    for _, path in attempts:  # built before (without -march=native when the compiler refused it)
        if path.exists():
            return path
    failures = []
    for flags, path in attempts:
        try:
            proc = _compile(compiler, flags, path)
        except OSError as e:
            raise RuntimeError(
                f"the native LIF backend could not run the C compiler {' '.join(compiler)}: {e}; set CC to a "
                "working C compiler, or use backend='torch'"
            ) from e
        if proc.returncode == 0:
            return path
        cmd = " ".join([*compiler, *flags, str(SOURCE)])
        failures.append(f"$ {cmd}\n(exit status {proc.returncode})\n{(proc.stderr or proc.stdout).strip()}")
    raise RuntimeError(
        f"the native LIF backend could not compile {SOURCE.name} with the C compiler {' '.join(compiler)}:\n"
        + "\n".join(failures)
        + "\nset CC to a working C compiler, or use backend='torch'"
    )


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        fwd = getattr(lib, f"lif_forward_{suffix}")
        fwd.argtypes = [p, i64, p, i32, p, i32, p, p, p, p, i64, i64, i64, i64, i32, i32]
        fwd.restype = None
        fb = getattr(lib, f"lif_feedback_{suffix}")
        fb.argtypes = [p, p, p, i32, p, i32, p, real, p, i64, i64, i64, i64, i32, i32, i32]
        fb.restype = None
        fc = getattr(lib, f"lif_feedback_constant_{suffix}")
        fc.argtypes = fb.argtypes
        fc.restype = ctypes.c_int32
    lib.lif_native_block.argtypes = []
    lib.lif_native_block.restype = ctypes.c_int
    lib.spike_pool_forward.argtypes = [p, p, i64, i64, i64, i64, i64]
    lib.spike_pool_forward.restype = None
    lib.spike_pool_forward_cl.argtypes = [p, p, i64, i64, i64, i64, i64, i64]
    lib.spike_pool_forward_cl.restype = None
    lib.spike_count.argtypes = [p, p, i64, i64, i64, i64]
    lib.spike_count.restype = None
    for suffix in ("f32", "f64"):
        bwd = getattr(lib, f"spike_pool_backward_{suffix}")
        bwd.argtypes = [p, p, p, i64, i64, i64, i64, i64]
        bwd.restype = None
        bwd = getattr(lib, f"spike_pool_backward_cl_{suffix}")
        bwd.argtypes = [p, p, p, i64, i64, i64, i64, i64, i64]
        bwd.restype = None


def load() -> ctypes.CDLL:
    """The compiled library (built on first use, then cached on disk and in this process)."""
    global _LIB, _BLOCK
    lib = _LIB
    if lib is not None:
        return lib
    with _LOCK:
        if _LIB is None:
            path = _build()
            try:
                lib = ctypes.CDLL(str(path))
                _declare(lib)
            except (OSError, AttributeError) as e:
                raise RuntimeError(
                    f"the native LIF backend could not load {path} ({e}); delete it to rebuild, or use "
                    "backend='torch'"
                ) from e
            _BLOCK = int(lib.lif_native_block())
            _LIB = lib
        return _LIB


def check_available(device=None) -> None:
    """Raise when the native kernels cannot run on ``device`` (None: the CPU): ValueError for a device other
    than the CPU, RuntimeError (with the compiler's messages) when the library cannot be built."""
    dev = torch.device("cpu" if device is None else device)
    if dev.type != "cpu":
        raise ValueError(
            f"the native LIF backend runs on the CPU only, not on {dev}; use backend='triton' or 'torch' "
            "on other devices"
        )
    load()


# --------------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------------


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_KEY
    key = (os.getpid(), workers)  # a pool inherited through fork has no threads: make a new one
    with _LOCK:
        if _POOL_KEY != key:
            if _POOL is not None and _POOL_KEY[0] == key[0]:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lfp_snn-native")
            _POOL_KEY = key
        return _POOL


def _run(fn, args_before: tuple, args_after: tuple, T: int, M: int) -> list:
    """``fn(*args_before, T, M, m0, m1, *args_after)`` over the columns, in parallel for large problems; the
    calls' return values."""
    threads = torch.get_num_threads()
    blocks = -(-M // _BLOCK)
    parts = min(threads, blocks)
    if parts <= 1 or T * M < PARALLEL_MIN_ELEMENTS:
        return [fn(*args_before, T, M, 0, M, *args_after)]
    bounds = [min(M, (blocks * i // parts) * _BLOCK) for i in range(parts + 1)]
    pool = _pool(parts - 1)
    futures = [
        pool.submit(fn, *args_before, T, M, bounds[i], bounds[i + 1], *args_after) for i in range(1, parts)
    ]
    try:
        first = fn(*args_before, T, M, bounds[0], bounds[1], *args_after)
    finally:
        rest = [f.result() for f in futures]
    return [first, *rest]


def _check_dtype(x: Tensor, name: str) -> None:
    if x.dtype not in _DTYPES:
        raise TypeError(
            f"the native LIF kernels take {name} in torch.float32 or torch.float64, got {x.dtype}; "
            "use backend='torch' for other dtypes"
        )
    if x.device.type != "cpu":
        raise ValueError(
            f"the native LIF kernels run on the CPU, but {name} is on {x.device}; use backend='triton' or "
            "'torch' on other devices"
        )


def _common(dtype, beta, threshold, reset, mem0, step_shape):
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    beta_t, beta_vec = step_param(beta, step_shape, dtype, "cpu", "beta")
    thr_t, thr_vec = step_param(threshold, step_shape, dtype, "cpu", "threshold")
    if mem0 is not None:
        try:
            mem0 = torch.broadcast_to(mem0.detach().to(device="cpu", dtype=dtype), step_shape).contiguous()
        except RuntimeError as e:
            raise ValueError(
                f"mem0 of shape {list(mem0.shape)} does not broadcast to one step's shape {list(step_shape)}"
            ) from e
    return beta_t, beta_vec, thr_t, thr_vec, mem0


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def lif_forward_scan(
    current: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    steps: int | None = None,
    out: Tensor | None = None,
    spike_dtype: torch.dtype | None = None,
    potential: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Run the LIF membrane over time (:func:`lfp_snn.kernels.torch_scan.lif_forward_scan`, in C).

    Args:
        current: input current I, [T, B, ...]; or [B, ...] with ``steps=T`` for a constant current. A
            [T, B, ...] tensor expanded from one step (stride 0 on T) is read as a constant current.
        beta, threshold: python floats, or tensors broadcastable to one step's shape [B, ...].
        reset: ``"subtract"`` or ``"zero"``; reset_delay: reset from the previous step's spike (True) or
            right after the spike (False).
        mem0: initial membrane U_0, [B, ...] (zeros when None).
        out: where to write the firing potential, [T, B, ...]; may be ``current`` itself (each step reads
            its current before writing V there).
        spike_dtype: dtype of the spikes (default: the current's dtype); ``torch.uint8`` or ``torch.bool``
            store one byte per spike.
        potential: False: V is not written (None is returned for it; ``out`` does not apply).
    Returns:
        spikes S [T, B, ...] (0/1) and the firing potential V [T, B, ...] in the current's dtype (``out``
        when given), or None for V when ``potential`` is False.
    """
    current, constant, T, step_shape = forward_layout(current, steps)
    _check_dtype(current, "the current")
    sdt = spike_dtype_of(current, spike_dtype, _SPIKE_DTYPES)
    dtype = current.dtype
    beta_t, beta_vec, thr_t, thr_vec, mem0 = _common(dtype, beta, threshold, reset, mem0, step_shape)
    check_forward_out(out, T, step_shape, current.device, potential)
    direct = out is not None and out.dtype == dtype and out.is_contiguous()
    pot = None if not potential else out if direct else torch.empty((T, *step_shape), dtype=dtype)
    byte_spikes = sdt != dtype
    spikes = torch.empty((T, *step_shape), dtype=torch.uint8 if byte_spikes else dtype)
    M = step_shape.numel()
    if T > 0 and M > 0:
        lib = load()
        current = current.contiguous()
        fn = lib.lif_forward_f64 if dtype == torch.float64 else lib.lif_forward_f32
        before = (
            current.data_ptr(),
            0 if constant else M,
            beta_t.data_ptr(),
            int(beta_vec),
            thr_t.data_ptr(),
            int(thr_vec),
            _ptr(mem0),
            _ptr(pot),
            spikes.data_ptr() if byte_spikes else None,
            None if byte_spikes else spikes.data_ptr(),
        )
        _run(fn, before, (int(reset == "subtract"), int(bool(reset_delay))), T, M)
    if byte_spikes and sdt != torch.uint8:
        spikes = spikes.view(sdt) if sdt in _BYTE_SPIKES else spikes.to(sdt)
    return spikes, (output(out, pot, direct) if potential else None)


def lif_feedback_scan(
    reward: Tensor,
    pot: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    eps: float = 1e-6,
    out: Tensor | None = None,
    summed: bool = False,
) -> Tensor:
    """Reverse scan of LFP-ε through a LIF layer, t = T..1
    (:func:`lfp_snn.kernels.torch_scan.lif_feedback_scan`, in C).

    Args:
        reward: reward arriving at the spikes S, [T, B, ...] (cast to ``pot``'s dtype if it differs).
        pot: the firing potential V from :func:`lif_forward_scan`, [T, B, ...].
        mem0: the initial membrane U_0 the forward started from, [B, ...] (zeros when None).
        out: where to write g (may be ``reward`` itself: each step reads its reward before writing g).
        summed: return Σ_t g_t [B, ...] instead, summed inside the scan (t = T..1): what a layer with a
            constant input needs, without the [T, B, ...] g ever being written.
    Returns:
        g [T, B, ...] in ``pot``'s dtype (``out`` when given), or its sum over time when ``summed``.
    """
    _check_dtype(pot, "the firing potential")
    check_feedback_args(reward, pot, out, summed)
    return _feedback("lif_feedback", reward, pot, beta, threshold, reset, reset_delay, mem0, eps, out, summed)


def lif_feedback_constant_scan(
    reward: Tensor,
    current: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    eps: float = 1e-6,
    out: Tensor | None = None,
    summed: bool = False,
) -> Tensor:
    """:func:`lif_feedback_scan` for a LIF layer driven by a current that is the same at every step,
    from that current [B, ...] instead of the firing potential: each block of neurons runs the forward scan
    again into a small buffer and the reverse scan reads it there, so the [T, B, ...] potential is never
    written nor read. The same operations as :func:`lif_forward_scan` then :func:`lif_feedback_scan`: the
    same bits. ``reward`` is [T, B, ...]; the other arguments as there."""
    _check_dtype(current, "the current")
    check_constant_feedback_args(reward, current, out, summed)
    return _feedback(
        "lif_feedback_constant", reward, current, beta, threshold, reset, reset_delay, mem0, eps, out, summed
    )


def _feedback(name, reward, source, beta, threshold, reset, reset_delay, mem0, eps, out, summed) -> Tensor:
    """Run the reverse scan ``name`` (``source``: the potential [T, B, ...], or the constant current
    [B, ...] for ``lif_feedback_constant``)."""
    dtype = source.dtype
    T, step_shape = reward.shape[0], reward.shape[1:]
    beta_t, beta_vec, thr_t, thr_vec, mem0 = _common(dtype, beta, threshold, reset, mem0, step_shape)
    eps_r = float(torch.tensor(float(eps), dtype=dtype))  # ε rounded to the data's dtype, as the reference
    reward = reward.to(dtype).contiguous()
    source = source.contiguous()
    direct = out is not None and out.dtype == dtype and out.is_contiguous()
    if summed:
        g = (torch.empty if T > 0 else torch.zeros)(step_shape, dtype=dtype)
    else:
        g = out if direct else torch.empty(reward.shape, dtype=dtype)
    M = step_shape.numel()
    if T > 0 and M > 0:
        lib = load()
        fn = getattr(lib, f"{name}_{'f64' if dtype == torch.float64 else 'f32'}")
        before = (
            reward.data_ptr(),
            source.data_ptr(),
            beta_t.data_ptr(),
            int(beta_vec),
            thr_t.data_ptr(),
            int(thr_vec),
            _ptr(mem0),
            eps_r,
            g.data_ptr(),
        )
        status = _run(fn, before, (int(reset == "subtract"), int(bool(reset_delay)), int(summed)), T, M)
        if any(status):  # the constant-current scan's [T, block] buffer
            raise MemoryError(f"the native LIF feedback could not allocate its [{T}, {_BLOCK}] buffer")
    return g if summed else output(out, g, direct)


# --------------------------------------------------------------------------------------------------------
# max pooling of spikes
# --------------------------------------------------------------------------------------------------------


def _run_planes(fn, args: tuple, planes: int, per_plane: int) -> None:
    """``fn(*args, p0, p1)`` over [0, planes), split over torch's threads for large problems."""
    threads = torch.get_num_threads()
    parts = min(threads, planes)
    if parts <= 1 or planes * per_plane < PARALLEL_MIN_ELEMENTS:
        fn(*args, 0, planes)
        return
    bounds = [planes * i // parts for i in range(parts + 1)]
    pool = _pool(parts - 1)
    futures = [pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    try:
        fn(*args, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()


def spike_pool_forward(x: Tensor, k: int) -> Tensor:
    """Max pooling of 0/1 uint8 spikes [N, C, H, W] over non-overlapping k x k windows: the OR of each. A
    channels-last x (:mod:`lfp_snn.kernels.layout`) is pooled in its layout and gives a channels-last result."""
    lib = load()
    n, c, h, w = x.shape
    if channels_last(x):
        y = torch.empty((n, c, h // k, w // k), dtype=x.dtype, memory_format=torch.channels_last)
        _run_planes(lib.spike_pool_forward_cl, (x.data_ptr(), y.data_ptr(), h, w, c, k), n, h * w * c)
        return y
    x = x.contiguous()
    y = x.new_empty((n, c, h // k, w // k))
    _run_planes(lib.spike_pool_forward, (x.data_ptr(), y.data_ptr(), h, w, k), n * c, h * w)
    return y


def spike_pool_backward(r: Tensor, spikes: Tensor, k: int) -> Tensor:
    """The reward r [N, C, H/k, W/k] routed to the first spike of each window (its first position when it
    has none), zero elsewhere: [N, C, H, W] in r's dtype, in the spikes' layout (contiguous or channels-last)."""
    _check_dtype(r, "the reward")
    lib = load()
    n, c, h, w = spikes.shape
    suffix = "f32" if r.dtype == torch.float32 else "f64"
    if channels_last(spikes):
        r = r.contiguous(memory_format=torch.channels_last)
        out = torch.empty((n, c, h, w), dtype=r.dtype, memory_format=torch.channels_last)
        fn = getattr(lib, f"spike_pool_backward_cl_{suffix}")
        _run_planes(fn, (r.data_ptr(), spikes.data_ptr(), out.data_ptr(), h, w, c, k), n, h * w * c)
        return out
    r, spikes = r.contiguous(), spikes.contiguous()
    out = r.new_empty((n, c, h, w))
    fn = getattr(lib, f"spike_pool_backward_{suffix}")
    _run_planes(fn, (r.data_ptr(), spikes.data_ptr(), out.data_ptr(), h, w, k), n * c, h * w)
    return out


def spike_count(x: Tensor) -> Tensor:
    """Spikes per neuron of uint8 spikes [T, B, ...]: the int64 sum over the first two axes (torch's
    ``x.sum((0, 1))``, without converting the spikes to int64 first); a channels-last x is counted in memory
    order."""
    if x.dtype != torch.uint8 or x.device.type != "cpu" or x.dim() < 2:
        raise TypeError(
            f"spike_count takes uint8 CPU spikes [T, B, ...], got {x.dtype} {list(x.shape)} on {x.device}"
        )
    if channels_last(x):
        return channels_back(spike_count(channels_innermost(x)))
    lib = load()
    x = x.contiguous()
    rows, step = x.shape[0] * x.shape[1], x.shape[2:]
    m = step.numel()
    out = torch.empty(step, dtype=torch.int64)
    threads = torch.get_num_threads()
    if threads <= 1 or rows * m < PARALLEL_MIN_ELEMENTS or m < 64 * threads:
        lib.spike_count(x.data_ptr(), out.data_ptr(), rows, m, 0, m)
        return out
    bounds = [m * i // threads // 64 * 64 for i in range(threads)] + [m]
    pool = _pool(threads - 1)
    futures = [
        pool.submit(lib.spike_count, x.data_ptr(), out.data_ptr(), rows, m, bounds[i], bounds[i + 1])
        for i in range(1, threads)
    ]
    try:
        lib.spike_count(x.data_ptr(), out.data_ptr(), rows, m, bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()
    return out
