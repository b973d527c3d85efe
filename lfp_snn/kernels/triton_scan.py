"""Triton kernels for the LIF scans: the forward scan and the reverse feedback scan.

Same signatures, return values and arithmetic as the plain-torch reference
(:mod:`lfp_snn.kernels.torch_scan`), which the tests compare against element by element. One step's
[B, ...] is flattened into M neurons; each program owns a block of ``BLOCK`` neurons (the tail block is
masked, so M need not be a multiple of it) and runs the whole time loop with the state in registers, so
every [T, B, ...] tensor is read or written exactly once (a constant current [B, ...] is read once).

Forward (t = 1..T, U_0 = ``mem0`` or 0; H the strict Heaviside step, H(0) = 0):

    reset_t = H(U_{t-1} - θ)                      (reset_delay=True; 0 otherwise)
    P_t     = U_{t-1}                (subtract)   or   U_{t-1} (1 - reset_t)   (zero)
    Ũ_t     = β P_t + I_t
    delayed reset:   U_t = Ũ_t - θ reset_t   or   Ũ_t;            S_t = H(U_t - θ)
    immediate reset: S_t = H(Ũ_t - θ);   U_t = Ũ_t - θ S_t   or   Ũ_t (1 - S_t)

It stores the spikes S and the *firing potential* V_t, the value compared with θ: V_t = U_t with a delayed
reset, V_t = Ũ_t with an immediate one (``torch_scan.membrane`` turns V into U).

Reverse feedback scan (LFP-ε through the LIF layer), t = T..1, C_{T+1} = 0, from V alone
(S_{t-1} = H(V_{t-1} - θ); V_0 = U_0, S_0 = H(U_0 - θ) when delayed and 0 otherwise):

    P_t       = V_{t-1}            (delayed subtract)    V_{t-1} - θ S_{t-1}   (immediate subtract)
                V_{t-1} (1 - S_{t-1})                    (zero reset)
    Ũ_t - P_t = V_t + θ S_{t-1} - P_t   (delayed subtract)     V_t - P_t   (otherwise)
    D_t = |P_t| + |Ũ_t - P_t|;   R_t = reward_t + C_{t+1};   g_t = R_t / (D_t + ε);   C_t = β P_t g_t

Each operation is evaluated in the reference's order with the reference's roundings, so the results are
bit-identical to the torch reference in the interpreter, for every dtype. On the GPU the kernels are
launched with ``enable_fp_fusion=False`` (no FMA contraction) and divide with IEEE rounding, for the same
reason.

Dtypes: float32 and float64 compute in their own precision; float16/bfloat16 compute each operation in
float32 and round the result to the storage dtype (to nearest even), as torch's element-wise kernels do.
β, θ and ε are first cast to the data's dtype, as the reference does (it makes tensors of them in that
dtype).

Running: on a CUDA device, or on the CPU under ``TRITON_INTERPRET=1`` (slow; for testing). The mode is read
when a kernel is first needed in it (kernels are jitted lazily, once per mode), so the environment variable
may be set after this module is imported. :func:`check_available` raises a clear error otherwise; nothing
falls back silently.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import Tensor

from ._args import check_feedback_args, check_forward_out, forward_layout, output, spike_dtype_of, step_param
from .torch_scan import RESETS

try:  # optional: check_available() explains what is missing
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = tl = None

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_SPIKE_DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.uint8,
    torch.int8,
    torch.bool,
)
_INT32_MAX = 2**31 - 1


def _interpret() -> bool:
    """Whether Triton runs kernels in its interpreter now (``TRITON_INTERPRET``, read at call time)."""
    try:
        from triton import knobs

        return bool(knobs.runtime.interpret)
    except (ImportError, AttributeError):  # older triton without knobs
        return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def check_available(device=None) -> None:
    """Raise RuntimeError with the reason when the Triton kernels cannot run on ``device`` here.

    ``device``: a torch.device or string (None: CUDA when available, else the CPU). The CPU needs
    ``TRITON_INTERPRET=1`` (the environment is read at call time); CUDA needs ``torch.cuda.is_available()``.
    """
    if triton is None:
        raise RuntimeError(
            "the Triton backend needs the triton package, which is not importable here: pip install triton; "
            "or use backend='torch'"
        )
    if device is None:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cpu":
        if not _interpret():
            raise RuntimeError(
                "Triton kernels need a CUDA device; on the CPU set TRITON_INTERPRET=1 (slow, for testing), "
                "or use backend='torch'"
            )
    elif dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"Triton kernels were asked to run on {dev}, but torch.cuda is not available "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use backend='torch'"
            )
    else:
        raise RuntimeError(
            f"Triton kernels run on CUDA devices (or on the CPU under TRITON_INTERPRET=1), not on {dev}; "
            "use backend='torch'"
        )


def _round(x, ROUND: tl.constexpr):
    """x (float32) rounded to float16 (ROUND=1) or bfloat16 (ROUND=2) precision, kept in float32.

    bfloat16 rounds to nearest-even on the bits: the same on the GPU and in the interpreter (whose
    float32 -> bfloat16 cast truncates). Inputs are finite (the callers check).
    """
    y = x
    if ROUND == 1:
        y = x.to(tl.float16).to(tl.float32)
    if ROUND == 2:
        b = x.to(tl.uint32, bitcast=True)
        b = b + 0x7FFF + ((b >> 16) & 1)
        y = ((b >> 16) << 16).to(tl.float32, bitcast=True)
    return y


def _load_neuron_params(
    beta_ptr,
    thr_ptr,
    mem0_ptr,
    offs,
    mask,
    BETA_VEC: tl.constexpr,
    THR_VEC: tl.constexpr,
    HAS_MEM0: tl.constexpr,
    CDT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """(β, θ, U_0) of a block of neurons, per neuron or one value for all, in the compute dtype."""
    if BETA_VEC:
        beta = tl.load(beta_ptr + offs, mask=mask, other=0.0).to(CDT)
    else:
        beta = tl.load(beta_ptr).to(CDT)
    if THR_VEC:
        thr = tl.load(thr_ptr + offs, mask=mask, other=1.0).to(CDT)
    else:
        thr = tl.load(thr_ptr).to(CDT)
    if HAS_MEM0:
        u0 = tl.load(mem0_ptr + offs, mask=mask, other=0.0).to(CDT)
    else:
        u0 = tl.zeros([BLOCK], dtype=CDT)
    return beta, thr, u0


def _lif_forward_kernel(
    cur_ptr,  # I: [T, M], or [M] when CONSTANT
    beta_ptr,  # β: [M] when BETA_VEC, else [1]
    thr_ptr,  # θ: [M] when THR_VEC, else [1]
    mem0_ptr,  # U_0: [M] when HAS_MEM0
    spk_ptr,  # S out: [T, M]
    pot_ptr,  # V out: [T, M]
    M,  # neurons per step
    T,
    CONSTANT: tl.constexpr,
    BETA_VEC: tl.constexpr,
    THR_VEC: tl.constexpr,
    HAS_MEM0: tl.constexpr,
    SUBTRACT: tl.constexpr,
    DELAY: tl.constexpr,
    SPK_FLOAT: tl.constexpr,  # spikes stored as a floating dtype
    ROUND: tl.constexpr,  # rounding after each operation: 0 none, 1 float16, 2 bfloat16
    RND: tl.constexpr,  # _round, jitted for this mode
    LOAD: tl.constexpr,  # _load_neuron_params, jitted for this mode
    CDT: tl.constexpr,  # compute dtype: float64 for float64 data, else float32
    BLOCK: tl.constexpr,
):
    """One program: BLOCK neurons, t = 1..T; U_{t-1} (and S_{t-1}) are carried in registers."""
    DT = pot_ptr.dtype.element_ty
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    beta, thr, u = LOAD(beta_ptr, thr_ptr, mem0_ptr, offs, mask, BETA_VEC, THR_VEC, HAS_MEM0, CDT, BLOCK)
    if CONSTANT:
        i_const = tl.load(cur_ptr + offs, mask=mask, other=0.0).to(CDT)
    cur_p = cur_ptr + offs
    pot_p = pot_ptr + offs
    spk_p = spk_ptr + offs
    for _t in range(T):
        if CONSTANT:
            i = i_const
        else:
            i = tl.load(cur_p, mask=mask, other=0.0).to(CDT)
            cur_p += M
        if DELAY:
            fired = u > thr  # reset_t = S_{t-1}
            if SUBTRACT:  # V_t = U_t = β U_{t-1} + I_t - θ reset_t
                v = RND(beta * u, ROUND)
                v = RND(v + i, ROUND)
                v = RND(v - tl.where(fired, thr, 0.0), ROUND)
            else:  # V_t = U_t = β U_{t-1} (1 - reset_t) + I_t
                v = tl.where(fired, 0.0, RND(beta * u, ROUND))
                v = RND(v + i, ROUND)
            s = v > thr
            u = v
        else:  # V_t = Ũ_t = β U_{t-1} + I_t;  U_t = Ũ_t - θ S_t  or  Ũ_t (1 - S_t)
            v = RND(beta * u, ROUND)
            v = RND(v + i, ROUND)
            s = v > thr
            if SUBTRACT:
                u = RND(v - tl.where(s, thr, 0.0), ROUND)
            else:
                u = tl.where(s, 0.0, v)
        tl.store(pot_p, v.to(DT), mask=mask)
        if SPK_FLOAT:  # via float32: the interpreter casts int1 -> bfloat16 wrongly
            tl.store(spk_p, s.to(tl.float32).to(spk_ptr.dtype.element_ty), mask=mask)
        else:
            tl.store(spk_p, s.to(spk_ptr.dtype.element_ty), mask=mask)
        pot_p += M
        spk_p += M


def _lif_feedback_kernel(
    rew_ptr,  # reward at the spikes: [T, M]
    pot_ptr,  # V: [T, M]
    beta_ptr,  # β: [M] when BETA_VEC, else [1]
    thr_ptr,  # θ: [M] when THR_VEC, else [1]
    mem0_ptr,  # U_0: [M] when HAS_MEM0
    eps_ptr,  # ε: [1]
    g_ptr,  # g out: [T, M]; may be rew_ptr (step t's reward is read before g_t is written)
    M,  # neurons per step
    LAST,  # (T - 1) * M: offset of the last step (i64 when it needs it)
    T,
    BETA_VEC: tl.constexpr,
    THR_VEC: tl.constexpr,
    HAS_MEM0: tl.constexpr,
    SUBTRACT: tl.constexpr,
    DELAY: tl.constexpr,
    WIDE: tl.constexpr,  # float64 data
    ROUND: tl.constexpr,  # rounding after each operation: 0 none, 1 float16, 2 bfloat16
    RND: tl.constexpr,  # _round, jitted for this mode
    LOAD: tl.constexpr,  # _load_neuron_params, jitted for this mode
    CDT: tl.constexpr,  # compute dtype: float64 when WIDE, else float32
    BLOCK: tl.constexpr,
):
    """One program: BLOCK neurons, t = T..1; the carry C_{t+1} and V_t are kept in registers."""
    DT = g_ptr.dtype.element_ty
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    beta, thr, v0 = LOAD(beta_ptr, thr_ptr, mem0_ptr, offs, mask, BETA_VEC, THR_VEC, HAS_MEM0, CDT, BLOCK)
    eps = tl.load(eps_ptr).to(CDT)
    rew_p = rew_ptr + LAST + offs
    g_p = g_ptr + LAST + offs
    pot_p = pot_ptr + LAST + offs - M  # V_{t-1}; masked off at t = 0
    v = tl.load(pot_ptr + LAST + offs, mask=mask, other=0.0).to(CDT)  # V_T
    carry = tl.full([BLOCK], -0.0, CDT)  # C_{T+1} = 0 (-0.0: x + (-0.0) == x, bit for bit)
    for k in range(T):
        has_prev = (tl.zeros([BLOCK], dtype=tl.int32) + (T - 1 - k)) > 0  # t > 0 (0-based), as a block
        v_prev = tl.load(pot_p, mask=mask & has_prev, other=0.0).to(CDT)
        v_prev = tl.where(has_prev, v_prev, v0)
        if DELAY:
            s_prev = v_prev > thr  # S_{t-1} = reset_t
        else:
            s_prev = has_prev & (v_prev > thr)  # no spike before the first step
        if SUBTRACT:
            if DELAY:  # P_t = U_{t-1} = V_{t-1};  Ũ_t - P_t = V_t + θ S_{t-1} - P_t
                p = v_prev
                dv = RND(v - p, ROUND)
                dv = RND(dv + tl.where(s_prev, thr, 0.0), ROUND)
            else:  # P_t = U_{t-1} = V_{t-1} - θ S_{t-1};  Ũ_t - P_t = V_t - P_t
                p = RND(v_prev - tl.where(s_prev, thr, 0.0), ROUND)
                dv = RND(v - p, ROUND)
        else:  # P_t = V_{t-1} (1 - S_{t-1});  Ũ_t - P_t = V_t - P_t
            p = tl.where(s_prev, 0.0, v_prev)
            dv = RND(v - p, ROUND)
        d = RND(tl.abs(dv) + tl.abs(p), ROUND)  # D_t
        d = RND(d + eps, ROUND)
        r = tl.load(rew_p, mask=mask, other=0.0).to(CDT)
        r = RND(r + carry, ROUND)  # R_t = reward_t + C_{t+1}
        if WIDE:
            g = r / d
        else:
            g = RND(tl.math.div_rn(r, d), ROUND)  # IEEE division, as torch's
        tl.store(g_p, g.to(DT), mask=mask)
        carry = RND(p * beta, ROUND)
        carry = RND(carry * g, ROUND)  # C_t = β P_t g_t
        v = v_prev
        rew_p -= M
        g_p -= M
        pot_p -= M


_KERNELS: dict[bool, tuple] = {}


def _kernels():
    """(forward kernel, feedback kernel, rounding helper, parameter loader), jitted for the current mode, built
    on first use."""
    mode = _interpret()
    if mode not in _KERNELS:
        _KERNELS[mode] = (
            triton.jit(_lif_forward_kernel),
            triton.jit(_lif_feedback_kernel),
            triton.jit(_round),
            triton.jit(_load_neuron_params),
        )
    return _KERNELS[mode]


def _launch_config(M: int, device: torch.device, block: int | None) -> tuple[int, int]:
    """(BLOCK, num_warps). GPU: enough programs to fill the SMs, 128..1024 neurons each."""
    if block is not None:
        if block < 1 or block & (block - 1):
            raise ValueError(f"block must be a positive power of two, got {block}")
        b = block
    elif device.type == "cuda" and not _interpret():
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        per = max(1, M // (4 * sms))
        b = min(1024, max(128, 1 << (per.bit_length() - 1)))
    else:  # the interpreter: fewer, larger programs are faster
        b = min(1024, max(16, 1 << max(0, (M - 1).bit_length())))
    return b, max(1, min(8, b // 256))


def _device_guard(device: torch.device):
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _check_dtype(x: Tensor, name: str) -> None:
    if x.dtype not in _DTYPES:
        raise TypeError(f"the Triton LIF kernels take {name} in one of {_DTYPES}, got {x.dtype}")


def _param(v, step_shape, dtype, cdt, device, name: str) -> tuple[Tensor, bool]:
    """β or θ as (tensor, per_neuron): [M] in ``dtype`` (per neuron), or [1] in ``cdt`` (rounded to ``dtype``)."""
    t, per_neuron = step_param(v, step_shape, dtype, device, name)
    return (t, True) if per_neuron else (t.to(cdt), False)


def _common(dtype, device, beta, threshold, reset, mem0, step_shape):
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    M = step_shape.numel()
    if M > _INT32_MAX:
        raise ValueError(f"one step has {M} neurons; the Triton kernels take at most {_INT32_MAX}")
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    beta_t, beta_vec = _param(beta, step_shape, dtype, cdt, device, "beta")
    thr_t, thr_vec = _param(threshold, step_shape, dtype, cdt, device, "threshold")
    if mem0 is not None:
        mem0 = torch.broadcast_to(mem0.to(device=device, dtype=dtype), step_shape).contiguous()
    consts = dict(
        BETA_VEC=beta_vec,
        THR_VEC=thr_vec,
        HAS_MEM0=mem0 is not None,
        SUBTRACT=reset == "subtract",
        ROUND={torch.float16: 1, torch.bfloat16: 2}.get(dtype, 0),
        CDT=tl.float64 if cdt == torch.float64 else tl.float32,
    )
    return beta_t, thr_t, mem0, cdt, consts


def lif_forward_scan(
    current: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    reset: str = "subtract",
    reset_delay: bool = True,
    mem0: Tensor | None = None,
    steps: int | None = None,
    out: Tensor | None = None,
    *,
    spike_dtype: torch.dtype | None = None,
    block: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the LIF neuron over time in one kernel (see the module docstring for the equations).

    Args:
        current: input current I, [T, B, ...]; or [B, ...] with ``steps=T`` for a constant current (read
            once). A [T, B, ...] tensor expanded from one step (stride 0 on T) is also read once.
        beta, threshold: python floats, or tensors broadcastable to one step's shape [B, ...] (per neuron:
            [N], [C, 1, 1], ...).
        reset: ``"subtract"`` or ``"zero"``; reset_delay: reset from the previous step's spike (True) or
            right after the spike (False).
        mem0: initial membrane U_0, [B, ...] (zeros when None).
        out: where to write the firing potential, [T, B, ...]; may be ``current`` itself (each step reads
            its current before writing V there).
        spike_dtype: dtype of the spikes (default: the current's dtype); ``torch.uint8`` or ``torch.bool``
            store one byte per spike.
        block: neurons per program (a power of two); default: a heuristic for the device.
    Returns:
        spikes S [T, B, ...] (0/1) and the firing potential V [T, B, ...] (U_t with a delayed reset, the
        pre-reset Ũ_t with an immediate one), V in the current's dtype (``out`` when given).
    """
    current, constant, T, step_shape = forward_layout(current, steps)
    _check_dtype(current, "the current")
    check_available(current.device)
    sdt = spike_dtype_of(current, spike_dtype, _SPIKE_DTYPES)
    dtype, device = current.dtype, current.device
    beta_t, thr_t, mem0, _, consts = _common(dtype, device, beta, threshold, reset, mem0, step_shape)
    spikes = torch.empty((T, *step_shape), dtype=sdt, device=device)
    check_forward_out(out, T, step_shape, device)
    direct = out is not None and out.dtype == dtype and out.is_contiguous()
    pot = out if direct else torch.empty((T, *step_shape), dtype=dtype, device=device)
    M = step_shape.numel()
    if T == 0 or M == 0:
        return spikes, out if out is not None else pot
    BLOCK, num_warps = _launch_config(M, device, block)
    fwd, _, rnd, load = _kernels()
    with _device_guard(device):
        fwd[(triton.cdiv(M, BLOCK),)](
            current.contiguous(),
            beta_t,
            thr_t,
            pot if mem0 is None else mem0,
            spikes,
            pot,
            M,
            T,
            CONSTANT=constant,
            DELAY=bool(reset_delay),
            SPK_FLOAT=sdt.is_floating_point,
            RND=rnd,
            LOAD=load,
            BLOCK=BLOCK,
            num_warps=num_warps,
            enable_fp_fusion=False,
            **consts,
        )
    return spikes, output(out, pot, direct)


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
    *,
    block: int | None = None,
) -> Tensor:
    """Reverse scan of LFP-ε through a LIF layer, t = T..1, with the carry C in registers.

        D_t = |P_t| + |Ũ_t - P_t|;   R_t = reward_t + C_{t+1} (C_{T+1} = 0);   g_t = R_t / (D_t + ε)
        C_t = β P_t g_t

    with P_t and Ũ_t - P_t recovered from the firing potential V (module docstring).

    Args:
        reward: reward arriving at the spikes S, [T, B, ...] (cast to ``pot``'s dtype if it differs).
        pot: the firing potential V from :func:`lif_forward_scan`, [T, B, ...].
        mem0: the initial membrane U_0 the forward started from, [B, ...] (zeros when None).
        out: where to write g (may be ``reward`` itself: each step reads its reward before writing g).
        block: neurons per program (a power of two); default: a heuristic for the device.
    Returns:
        g [T, B, ...] in ``pot``'s dtype (``out`` when given).
    """
    _check_dtype(pot, "the firing potential")
    check_feedback_args(reward, pot, out)
    dtype, device = pot.dtype, pot.device
    check_available(device)
    T, step_shape = pot.shape[0], pot.shape[1:]
    beta_t, thr_t, mem0, cdt, consts = _common(dtype, device, beta, threshold, reset, mem0, step_shape)
    reward = reward.to(dtype).contiguous()
    pot = pot.contiguous()
    direct = out is not None and out.dtype == dtype and out.is_contiguous()
    g = out if direct else torch.empty_like(pot)
    M = step_shape.numel()
    if T > 0 and M > 0:
        BLOCK, num_warps = _launch_config(M, device, block)
        _, fb, rnd, load = _kernels()
        with _device_guard(device):
            fb[(triton.cdiv(M, BLOCK),)](
                reward,
                pot,
                beta_t,
                thr_t,
                pot if mem0 is None else mem0,
                torch.tensor([float(eps)], dtype=dtype, device=device).to(cdt),
                g,
                M,
                (T - 1) * M,
                T,
                DELAY=bool(reset_delay),
                WIDE=cdt == torch.float64,
                RND=rnd,
                LOAD=load,
                BLOCK=BLOCK,
                num_warps=num_warps,
                enable_fp_fusion=False,
                **consts,
            )
    return output(out, g, direct)
