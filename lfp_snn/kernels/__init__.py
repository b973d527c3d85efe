"""LIF scans with explicit backends: ``"torch"`` (the reference, any device), ``"native"`` (C loops for the
CPU, compiled with the system C compiler on first use and called through ctypes; bit-identical to the
reference in float32 and float64) and ``"triton"`` (CUDA kernels; on the CPU only under
``TRITON_INTERPRET=1``). No silent fallback: a backend that cannot run raises. ``"auto"`` asks for the
fastest one that runs (:func:`resolve_backend`): native on the CPU, triton on CUDA, else torch."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._args import check_potential_out, check_summed_out
from .layout import channels_back, channels_innermost, channels_last, innermost_param
from .torch_scan import lif_feedback_scan as _torch_feedback
from .torch_scan import lif_forward_scan as _torch_forward

BACKENDS = ("torch", "native", "triton")
CHOICES = ("auto", *BACKENDS)  # "auto": the fastest backend that runs for the device and dtype at hand
_FAST = {"cpu": "native", "cuda": "triton"}
_WORKS: dict[tuple[str, str], bool] = {}  # (backend, device type) -> whether check_backend passed
_SLOWER = {  # what the fallback costs, as measured (docs/engine.md)
    "native": "which take 13-23x longer per scan on the CPU (a few percent to ~30% of a training step)",
    "triton": "a few torch ops per time step instead of one kernel per layer",
}


def resolve_backend(backend: str, device=None, dtype: torch.dtype | None = None) -> str:
    """The backend to run: ``backend`` itself, or for ``"auto"`` the fast one for the device (native on the
    CPU for float32/float64, triton on CUDA) when it can run here, else the torch reference."""
    if backend != "auto":
        return backend
    dev = torch.device("cpu" if device is None else device)
    fast = _FAST.get(dev.type)
    if fast is None or (fast == "native" and dtype not in (None, torch.float32, torch.float64)):
        return "torch"
    key = (fast, dev.type)
    if key not in _WORKS:
        try:
            check_backend(fast, dev)
            _WORKS[key] = True
        except (RuntimeError, ValueError, ImportError) as e:
            _WORKS[key] = False
            # said once per process and device type: auto picked the slower path
            warnings.warn(
                f"backend 'auto': the {fast} scans cannot run on {dev.type} here ({e}); using the torch "
                f"reference scans instead, {_SLOWER[fast]}",
                RuntimeWarning,
                stacklevel=2,
            )
    return fast if _WORKS[key] else "torch"


def check_backend(backend: str, device=None) -> None:
    """Raise a clear error when ``backend`` cannot run on ``device`` here (``"auto"`` always runs)."""
    if backend == "auto":
        return
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {CHOICES}")
    if backend == "native":
        from .native_scan import check_available

        check_available(device)
    elif backend == "triton":
        from .triton_scan import check_available

        check_available(device)


def _innermost(*tensors: Tensor | None) -> tuple:
    """The channels-innermost views (:func:`channels_innermost`) of channels-last tensors; None stays None."""
    return tuple(None if t is None else channels_innermost(t) for t in tensors)


def lif_forward(
    current: Tensor,
    beta,
    threshold,
    reset: str,
    reset_delay: bool,
    mem0=None,
    steps=None,
    backend: str = "torch",
    out: Tensor | None = None,
    spike_dtype=None,
    potential: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """(spikes, firing potential V): :func:`lfp_snn.kernels.torch_scan.lif_forward_scan` on ``backend``.

    A channels-last current (a CPU convolution's output, :mod:`lfp_snn.kernels.layout`) is scanned in memory
    order and both outputs come back channels-last: the scan treats every neuron alike. ``potential=False``:
    V is not wanted and None comes back for it (the native scan then never writes it; ``out`` does not
    apply)."""
    check_potential_out(out, potential)
    if channels_last(current):
        c, m0, o = _innermost(current, mem0, out)
        b, th = innermost_param(beta), innermost_param(threshold)
        spikes, pot = lif_forward(c, b, th, reset, reset_delay, m0, steps, backend, o, spike_dtype, potential)
        return channels_back(spikes), None if pot is None else channels_back(pot)
    backend = resolve_backend(backend, current.device, current.dtype)
    if backend == "torch":
        spikes, pot = _torch_forward(
            current, beta, threshold, reset, reset_delay, mem0, steps, out, spike_dtype
        )
    elif backend == "native":
        check_backend(backend, current.device)
        from .native_scan import lif_forward_scan as _native_forward

        return _native_forward(
            current, beta, threshold, reset, reset_delay, mem0, steps, out, spike_dtype, potential
        )
    else:
        check_backend(backend, current.device)
        from .triton_scan import lif_forward_scan

        spikes, pot = lif_forward_scan(
            current, beta, threshold, reset, reset_delay, mem0, steps, out, spike_dtype=spike_dtype
        )
    return spikes, pot if potential else None


def lif_feedback(
    reward: Tensor,
    pot: Tensor,
    beta,
    threshold,
    reset: str,
    reset_delay: bool,
    mem0=None,
    eps: float = 1e-6,
    out: Tensor | None = None,
    backend: str = "torch",
    norm: bool = False,
    summed: bool = False,
) -> Tensor:
    """g from the reward at the spikes and the forward's firing potential V:
    :func:`lfp_snn.kernels.torch_scan.lif_feedback_scan` on ``backend`` (``norm``: the max-abs normalisation
    of R_t, torch only). A channels-last potential is scanned in memory order, g coming back channels-last
    (as in :func:`lif_forward`). ``summed``: Σ_t g_t [B, ...] instead of g (for a layer below whose input is
    the same at every step); the native scan sums inside its loop over t, the others sum g after it."""
    check_summed_out(out, summed)
    if channels_last(pot):
        r, v, m0, o = _innermost(reward, pot, mem0, out)
        b, th = innermost_param(beta), innermost_param(threshold)
        return channels_back(lif_feedback(r, v, b, th, reset, reset_delay, m0, eps, o, backend, norm, summed))
    backend = resolve_backend(backend, reward.device, pot.dtype)
    if backend == "torch":
        g = _torch_feedback(reward, pot, beta, threshold, reset, reset_delay, mem0, eps, out, norm)
        return g.sum(0) if summed else g
    if norm:
        raise ValueError(f"the max-abs reward normalisation runs in the torch scans, not backend {backend!r}")
    check_backend(backend, reward.device)
    if backend == "native":
        from .native_scan import lif_feedback_scan as _native_feedback

        return _native_feedback(reward, pot, beta, threshold, reset, reset_delay, mem0, eps, out, summed)
    from .triton_scan import lif_feedback_scan

    g = lif_feedback_scan(reward, pot, beta, threshold, reset, reset_delay, mem0, eps, out)
    return g.sum(0) if summed else g


def lif_feedback_constant(
    reward: Tensor,
    current: Tensor,
    beta,
    threshold,
    reset: str,
    reset_delay: bool,
    mem0=None,
    eps: float = 1e-6,
    out: Tensor | None = None,
    backend: str = "torch",
    norm: bool = False,
    summed: bool = False,
) -> Tensor:
    """:func:`lif_feedback` of a LIF layer whose current ``current`` [B, ...] is the same at each of the
    reward's T steps, from that current instead of the firing potential. The native scan runs the forward
    again a block of neurons at a time inside the feedback, so the [T, B, ...] potential is never written
    (one [T, B, ...] write and read less than the forward scan, then the feedback); the other backends run
    :func:`lif_forward` then :func:`lif_feedback`. The same bits either way."""
    check_summed_out(out, summed)
    backend = resolve_backend(backend, current.device, current.dtype)
    if backend != "native" or norm:
        T = reward.shape[0]
        pot = lif_forward(
            current, beta, threshold, reset, reset_delay, mem0, T, backend, spike_dtype=torch.uint8
        )[1]
        return lif_feedback(
            reward, pot, beta, threshold, reset, reset_delay, mem0, eps, out, backend, norm, summed
        )
    if channels_last(current):
        r, c, m0, o = _innermost(reward, current, mem0, out)
        b, th = innermost_param(beta), innermost_param(threshold)
        g = lif_feedback_constant(r, c, b, th, reset, reset_delay, m0, eps, o, backend, norm, summed)
        return channels_back(g)
    check_backend(backend, current.device)
    from .native_scan import lif_feedback_constant_scan

    return lif_feedback_constant_scan(
        reward, current, beta, threshold, reset, reset_delay, mem0, eps, out, summed
    )
