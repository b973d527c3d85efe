"""Fixed-point number formats and the integer arithmetic of a spiking layer, shared by the FPGA bundle
(:mod:`lfp_snn.export`) and integer-in-the-loop training (the engine's fixed-point forward,
:mod:`lfp_snn.engine.fixed`): one copy of every rounding rule, so the two cannot drift apart.

Per Linear/Conv2d + LIF layer, with ``W`` = weight_bits and ``M`` = mem_bits:

* one scale ``s`` (the real value of one LSB of the weights, bias, threshold and membrane):
  ``scale="pow2"`` takes the smallest power of two with ``max|w| / s <= 2^(W-1) - 1``; ``scale="real"``
  takes ``s = max|w| / (2^(W-1) - 1)``; ``scale="mse"`` takes the power of two (that one or up to
  ``MSE_CANDIDATES`` below it) with the least squared error of the quantised weights, saturating the largest;
* ``w_q = sat_W(round(w / s))``, ``b_q = sat_M(round(b / s))``, ``θ_q = round(θ / s)`` (in ``[1, 2^(M-1) - 1]``,
  else ValueError naming the layer). ``round`` is half away from zero, ``sat_N`` clamps to
  ``[-2^(N-1), 2^(N-1) - 1]``. A layer that reads a sum pool (an average pool taken as the window's sum,
  with its ``1 / divisor`` folded into the weights) quantises ``w / divisor``;
* decay ``"multiply"``: ``β_q = round(β 2^beta_bits)`` in ``[1, 2^beta_bits]``, ``D(U) = floor(U β_q / 2^beta_bits)``;
  decay ``"shift"``: ``β ≈ 1 - 2^-k``, the nearest ``k`` in ``1..M`` (``k = 0``: β = 1, no leak),
  ``D(U) = U - floor(U / 2^k)``.

One time step of a layer, all integers (:func:`fixed_lif_scan`)::

    I = sat_M(b_q + Σ_i w_q[o, i] x_i)
    reset_delay: r = U > θ_q;  U = sat_M(D(U) + I - θ_q r) (subtract)  or  sat_M((r ? 0 : D(U)) + I) (zero);
                 S = U > θ_q
    otherwise:   U = sat_M(D(U) + I);  S = U > θ_q;  if S: U = U - θ_q (subtract) or 0 (zero)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

DECAYS = ("multiply", "shift")
SCALES = ("pow2", "real", "mse")
MSE_CANDIDATES = 8
"""``scale="mse"`` tries the max-based power of two and the ``MSE_CANDIDATES`` powers of two below it."""


@dataclass(frozen=True)
class FixedPoint:
    """The number formats of an integer spiking network (the FPGA bundle's, and integer-in-the-loop
    training's): ``weight_bits`` (signed weights), ``mem_bits`` (membrane, bias and threshold), ``beta_bits``
    (fraction bits of β_q, decay ``multiply``), ``decay`` (``multiply`` | ``shift``) and ``scale``
    (``pow2`` | ``real``, how each layer's LSB is chosen). Checked on construction."""

    weight_bits: int = 8
    mem_bits: int = 16
    beta_bits: int = 8
    decay: str = "multiply"
    scale: str = "pow2"

    def __post_init__(self) -> None:
        for what, v, lo, hi in (("weight_bits", self.weight_bits, 2, 32), ("mem_bits", self.mem_bits, 2, 48)):
            if not _is_int(v) or not lo <= v <= hi:
                raise ValueError(f"{what} must be an integer in [{lo}, {hi}], got {v!r}")
        if not _is_int(self.beta_bits) or not 1 <= self.beta_bits <= 24:
            raise ValueError(f"beta_bits must be an integer in [1, 24], got {self.beta_bits!r}")
        if self.mem_bits + self.beta_bits + 1 > 62:
            raise ValueError(
                f"mem_bits + beta_bits = {self.mem_bits + self.beta_bits} is too wide for 64-bit products; "
                "keep it <= 61"
            )
        if self.weight_bits > self.mem_bits:
            raise ValueError(
                f"weight_bits={self.weight_bits} > mem_bits={self.mem_bits}: a single weight would not fit the "
                "membrane"
            )
        if self.decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {self.decay!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")

    @property
    def mem_min(self) -> int:
        return -(2 ** (self.mem_bits - 1))

    @property
    def mem_max(self) -> int:
        return 2 ** (self.mem_bits - 1) - 1

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """``weight_bits=4, mem_bits=16, beta_bits=8, decay='multiply', scale='pow2'`` (for messages)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


DEFAULT_FORMATS = FixedPoint()
"""The bundle's default number formats (8-bit weights, 16-bit membranes, β_q with 8 fraction bits)."""


# ------------------------------------------------------------------------------------------ quantisation


def round_half_away(x: Tensor) -> Tensor:
    """Round half away from zero (float64 in, float64 out)."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def saturate(x: Tensor, bits: int) -> tuple[Tensor, int]:
    """(x clamped to the signed ``bits`` range as int64, how many values were clamped)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return x.clamp(lo, hi).to(torch.int64), int(((x < lo) | (x > hi)).sum())


def layer_scale(w: Tensor, fmt: FixedPoint) -> float:
    """The real value of one LSB of a layer with weights ``w`` (float64): ``pow2``, the smallest power of two
    at which max|w| fits without saturating; ``real``, max|w| / (2^(W-1) - 1); ``mse``, the power of two (that
    one or one of the ``MSE_CANDIDATES`` below it) whose quantised weights ``s sat_W(round(w / s))`` are the
    closest to ``w`` in squared error -- it saturates the few largest weights when that buys the many small
    ones more levels (ties: the larger scale)."""
    qmax = 2 ** (fmt.weight_bits - 1) - 1
    wmax = float(w.abs().max()) if w.numel() else 0.0
    if wmax == 0.0:
        return 1.0
    if fmt.scale == "real":
        return wmax / qmax
    top = math.ceil(math.log2(wmax / qmax))
    if fmt.scale == "pow2":
        return 2.0**top
    best, best_err = 2.0**top, None
    for k in range(top, top - MSE_CANDIDATES - 1, -1):
        sk = 2.0**k
        err = float((round_half_away(w / sk).clamp(-qmax - 1, qmax) * sk - w).pow(2).sum())
        if best_err is None or err < best_err:
            best, best_err = sk, err
    return best


def quantize_beta(beta: Tensor, fmt: FixedPoint, name: str, warn: bool = True) -> tuple[Tensor, Tensor]:
    """(β_q or k as int64, the effective β as float64), ``beta`` float64 of any shape."""
    if fmt.decay == "multiply":
        q = round_half_away(beta * 2**fmt.beta_bits).clamp(1, 2**fmt.beta_bits).to(torch.int64)
        return q, q.to(torch.float64) / 2**fmt.beta_bits
    ks = torch.arange(1, fmt.mem_bits + 1, dtype=torch.int64, device=beta.device)
    cand = 1.0 - 2.0 ** (-ks.to(torch.float64))
    flat = beta.reshape(-1)
    nearest = ks[(flat[:, None] - cand[None, :]).abs().argmin(1)]
    q = torch.where(flat >= 1.0, torch.zeros_like(nearest), nearest).reshape(beta.shape)
    eff = torch.where(q == 0, torch.ones_like(beta), 1.0 - 2.0 ** (-q.to(torch.float64)))
    if warn and bool((eff - beta).abs().gt(1e-12).any()):
        pairs = sorted(
            {
                (round(float(b), 6), int(k), float(e))
                for b, k, e in zip(flat.tolist(), q.reshape(-1).tolist(), eff.reshape(-1).tolist())
            }
        )
        shown = ", ".join(f"β={b} -> k={k} (effective β={e:.6g})" for b, k, e in pairs[:4])
        more = "" if len(pairs) <= 4 else f" and {len(pairs) - 4} more"
        warnings.warn(
            f"decay='shift' approximates β by 1 - 2^-k in layer {name!r}: {shown}{more}", stacklevel=4
        )
    return q, eff


@dataclass
class QuantAffine:
    """One Linear/Conv2d + LIF layer in integers (torch int64 tensors on the model's device).

    ``weight`` has the module's weight shape, ``bias`` one value per output channel (zeros without a bias),
    ``threshold`` and ``beta`` (β_q, or k for decay ``shift``) the LIF buffers' shapes (a number or per
    neuron); ``scale`` is the real value of one LSB, ``divisor`` that of the sum pool the layer reads (1:
    none), ``info`` the float values and saturation counts the bundle's manifest records."""

    name: str
    weight: Tensor
    bias: Tensor
    threshold: Tensor
    beta: Tensor
    beta_effective: Tensor
    scale: float
    divisor: int = 1
    info: dict = field(default_factory=dict)


def quantize_layer(
    name: str,
    weight: Tensor,
    bias: Tensor | None,
    threshold: Tensor,
    beta: Tensor,
    fmt: FixedPoint,
    divisor: int = 1,
    warn: bool = True,
) -> QuantAffine:
    """The integers of one Linear/Conv2d (``weight``, ``bias``) + LIF (``threshold``, ``beta``) layer; a
    layer that reads a sum pool of ``divisor`` positions quantises ``weight / divisor``. ValueError naming
    the layer when its threshold does not fit ``mem_bits`` or rounds below one LSB."""
    w = weight.detach().to(torch.float64)
    if divisor != 1:
        w = w / divisor
    n = w.shape[0]
    b = bias.detach().to(torch.float64) if bias is not None else w.new_zeros(n)
    wmax = float(w.abs().max()) if w.numel() else 0.0
    s = layer_scale(w, fmt)
    wq, w_sat = saturate(round_half_away(w / s), fmt.weight_bits)
    bq, b_sat = saturate(round_half_away(b / s), fmt.mem_bits)
    thr = threshold.detach().to(device=w.device, dtype=torch.float64)
    tq = round_half_away(thr / s)
    qmax_m = 2 ** (fmt.mem_bits - 1) - 1
    if float(tq.max()) > qmax_m:
        need = int(tq.max()).bit_length() + 1
        raise ValueError(
            f"mem_bits={fmt.mem_bits} cannot hold the threshold of layer {name!r}: θ / scale = "
            f"{float((thr / s).max()):.6g} needs {need} bits (scale {s:.6g} from max|w| = {wmax:.6g} at "
            f"weight_bits={fmt.weight_bits}); raise mem_bits or lower weight_bits"
        )
    if float(tq.min()) < 1:
        raise ValueError(
            f"the threshold of layer {name!r} rounds to {int(tq.min())} LSB (θ / scale = "
            f"{float((thr / s).min()):.3g}); raise weight_bits"
        )
    if warn and (
        b_sat or (w_sat and fmt.scale != "mse")
    ):  # scale "mse" saturates the largest weights by design
        warnings.warn(f"layer {name!r}: {w_sat} weights and {b_sat} biases saturated", stacklevel=3)
    beta64 = beta.detach().to(device=w.device, dtype=torch.float64)
    betaq, eff = quantize_beta(beta64, fmt, name, warn)
    info = {
        "beta_float": [float(beta64.min()), float(beta64.max())],
        "beta_effective": [float(eff.min()), float(eff.max())],
        "max_abs_weight": wmax,
        "saturated": {"weight": w_sat, "bias": b_sat},
        "threshold_float": [float(thr.min()), float(thr.max())],
    }
    if divisor != 1:
        info["input_divisor"] = divisor
    return QuantAffine(name, wq, bq, tq.to(torch.int64), betaq, eff, s, divisor, info)


# ------------------------------------------------------------------------------------------- dynamics


def fixed_decay(u: Tensor, beta: Tensor, fmt: FixedPoint) -> Tensor:
    """D(U) on int64 membranes: floor(U β_q / 2^beta_bits) (multiply), or U - floor(U / 2^k) (shift; k = 0:
    U). Floor division, as an arithmetic right shift does it."""
    if fmt.decay == "multiply":
        return torch.div(u * beta, 2**fmt.beta_bits, rounding_mode="floor")
    return torch.where(beta == 0, u, u - torch.div(u, torch.pow(2, beta), rounding_mode="floor"))


def fixed_lif_scan(
    current: Tensor,
    threshold: Tensor,
    beta: Tensor,
    fmt: FixedPoint,
    reset: str = "subtract",
    reset_delay: bool = True,
) -> tuple[Tensor, Tensor]:
    """The integer LIF over time: ``current`` int64 [T, B, ...] (already saturated to mem_bits), threshold
    and β_q/k int64, broadcastable to one step. Returns (spikes uint8 [T, B, ...], firing potential int64
    [T, B, ...]): the value compared with θ_q, i.e. U after the update with a delayed reset, the membrane
    before the reset without one (as the float scans of :mod:`lfp_snn.kernels` keep it). U_0 = 0."""
    T = current.shape[0]
    lo, hi = fmt.mem_min, fmt.mem_max
    u = torch.zeros_like(current[0])
    spikes = torch.empty(current.shape, dtype=torch.uint8, device=current.device)
    pot = torch.empty_like(current)
    sub = reset == "subtract"
    for t in range(T):
        d = fixed_decay(u, beta, fmt)
        if reset_delay:
            r = u > threshold
            if sub:
                u = (d + current[t] - threshold * r).clamp_(lo, hi)
            else:
                u = (torch.where(r, torch.zeros_like(d), d) + current[t]).clamp_(lo, hi)
            s = u > threshold
            pot[t] = u
        else:
            u = (d + current[t]).clamp_(lo, hi)
            s = u > threshold
            pot[t] = u
            u = torch.where(s, u - threshold, u) if sub else torch.where(s, torch.zeros_like(u), u)
        spikes[t] = s
    return spikes, pot


__all__ = [
    "DECAYS",
    "DEFAULT_FORMATS",
    "SCALES",
    "FixedPoint",
    "QuantAffine",
    "fixed_decay",
    "fixed_lif_scan",
    "layer_scale",
    "quantize_beta",
    "quantize_layer",
    "round_half_away",
    "saturate",
]
