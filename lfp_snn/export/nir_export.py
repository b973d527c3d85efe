"""Export spiking models to NIR (the Neuromorphic Intermediate Representation) and import them back.

The graph is built directly from ``nir`` nodes, one chain ``Input -> ... -> Output``:

    nn.Linear   -> nir.Affine (nir.Linear when bias=False)     nn.Conv2d -> nir.Conv2d
    nn.Flatten  -> nir.Flatten (dropped when the sample is already 1-D: it is the identity there)
    nn.AvgPool2d -> nir.AvgPool2d                               nn.Dropout -> nothing (inference)
    LIF (β < 1) -> nir.LIF                                      LIF (β = 1) -> nir.IF
    CubaLIF     -> nir.CubaLIF (τ_syn = dt / (1 - α), w_in = 1 / (1 - α); τ_mem, r as for the LIF)
    RecurrentLIF -> nir.LIF (or IF) with a recurrent edge through nir.Linear(V): lif -> rec -> lif
    nn.MaxPool2d -> error (``maxpool="error"``), or ``maxpool="spiking"``: nir.SumPool2d followed by an
                   nir.IF gate (θ = dt/2, r = 1, reset to 0) -- exact for binary spike inputs, see below.

Discrete -> continuous mapping (forward Euler with step ``dt``). NIR's LIF is
``τ dv/dt = (v_leak - v) + R I``; one Euler step gives ``v_t = (1 - dt/τ) v_{t-1} + (dt R / τ) I_t``. With

    τ = dt / (1 - β),   R = 1 / (1 - β)  (= τ / dt),   v_leak = 0,   v_threshold = θ,   v_reset = 0

this is exactly ``U_t = β U_{t-1} + I_t`` -- the same mapping snntorch's ``export_to_nir`` writes
(``tau_mem = dt/(1-beta)``, ``r = tau_mem/dt``) and its ``import_from_nir`` inverts (``beta = 1 - dt/tau``,
input scale ``r dt / tau``). For β = 1 the neuron is an ``nir.IF`` (``dv/dt = R I``) with ``R = 1/dt``.
``fold_r=True`` moves R into the weights of the layer below (``W <- R W``, ``b <- R b``, node ``r = 1``): the
same dynamics, for tools that ignore ``r`` (norse warns and ignores it).

What NIR cannot say, and what we do about it:

* reset by subtraction and the delayed reset (the toolkit's reference neuron) -- NIR's LIF resets to
  ``v_reset`` in the step it fires. The exporter warns and records ``reset`` / ``reset_delay`` in every LIF
  node's metadata, so :func:`import_nir` restores the exact neuron; other tools run reset-to-zero without
  delay. ``convert_reset="zero"`` (or :func:`convert_reset`) rewrites a copy of the model to that neuron
  before export -- the behaviour changes, fine-tune the converted model before deploying it.
* max pooling -- no NIR node. For binary spikes, ``max(x) = H(sum(x) - 1/2)``; ``maxpool="spiking"`` writes
  ``SumPool2d -> IF(r=1, θ=dt/2, v_reset=0)``: the IF's membrane is 0 at the start of every step (it either
  fired and reset to 0, or received nothing), so it fires exactly when the window holds a spike. It is exact
  only when the pool's input is spikes (we check that a LIF comes before it), and only for tools that run
  NIR's IF as written (snntorch's importer maps IF to a leaky, subtract-reset neuron with β = 0.9 and gets
  it wrong). Both nodes carry ``substitute = "MaxPool2d"`` so :func:`import_nir` restores the MaxPool2d.

Graph metadata: ``producer``, ``format``, ``target``, ``dt``, ``integration`` (``"forward-euler"`` or
``"exponential"``), ``r`` (what the r fields mean), ``time_first``, the graph's input shape, ``flatten_input``
and a one-line statement of the mapping.

The batch axis: NIR's shapes leave it out. A dense model is written from its first Linear on (Input ``[n_in]``,
no Flatten node; ``flatten_input`` records the model's Flatten, which :func:`import_nir` restores), so the
export of a checkpoint folder and of the module give the same graph; a conv model's Flatten has its axes
counted from the end, which readers that keep a batch axis (snntorch, norse) hand to ``torch.nn.Flatten``
correctly. ``input_shape`` is checked against the first layer.

Target presets (``target=``, :mod:`lfp_snn.export.nir_targets`): what one reader needs (its dt, ``fold_r``,
an exponential τ mapping exact for its float32 ``exp``, node types and fields), with a warning where that
reader cannot run the trained neuron exactly and an error where it cannot load the graph.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..engine import leaves
from ..network import SpikingSequential
from ..neurons import CubaLIF, MultiSpikeLIF, RecurrentLIF
from ..neurons.lif import LIF
from .fold import fold_batchnorm
from .nir_targets import NIRTarget, check_layer, exp_tau, get_target, resolve_dt, rockpool_r

FORMAT = 1
MAXPOOL_MODES = ("error", "spiking")
MAPPING = "tau = dt/(1-beta), r = 1/(1-beta), v_leak = 0, v_threshold = theta, v_reset = 0; beta = 1 -> IF, r = 1/dt"
MAPPING_EXP = (
    "tau = -dt/ln(beta) (float32 exp(-dt/tau) == beta), r = 1/(1-beta), v_leak = 0, v_threshold = theta; "
    "beta = 1 -> IF, r = 1/dt"
)
MAPPING_ROCKPOOL = (
    "every neuron a CubaLIF: tau_mem = -dt/ln(beta), tau_syn = -dt/ln(alpha) (float32 exp(-dt/tau) exact; "
    "alpha = 0 -> 2^-24), w_in = 1, r = tau_mem/dt - 1 (rockpool reads dt = tau_mem/(1+r)); the weights into a "
    "neuron divided by alpha (rockpool decays the input with the current)"
)
LIF_ALPHA_ROCKPOOL = 2.0**-24  # a LIF as rockpool's CubaLIF: I_t ≈ 2^-24 (I_{t-1} + 2^24 X_t)


# ----------------------------------------------------------------------------------------------- helpers


def load_model(model_or_folder) -> tuple[nn.Module, dict | None]:
    """(model in eval mode, checkpoint config or None) from a module or a checkpoint folder; BatchNorm layers
    come folded into the Linear/Conv layer before them (:func:`lfp_snn.export.fold.fold_batchnorm`, a copy):
    hardware runs one affine map per layer, and the spikes are the same.

    A folder whose ``model.pt`` does not fit its ``config.json`` raises ValueError (from load_checkpoint).
    """
    if isinstance(model_or_folder, nn.Module):
        model, cfg = model_or_folder.eval(), None
    elif isinstance(model_or_folder, (str, os.PathLike)):
        from ..checkpoint import load_checkpoint

        model, cfg = load_checkpoint(model_or_folder)
        model = model.eval()
    else:
        raise TypeError(f"expected an nn.Module or a checkpoint folder, got {type(model_or_folder).__name__}")
    if any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules()):
        model = fold_batchnorm(model)
    return model, cfg


def check_finite(model: nn.Module) -> None:
    """ValueError naming the first parameter or buffer of ``model`` that holds NaN or inf: such a model has
    no hardware meaning (its training diverged, or its weights were damaged)."""
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(
                    f"{kind} {name!r} holds {bad} NaN/inf value(s) of {t.numel()}; a model with non-finite "
                    "weights cannot be exported (did the training diverge?)"
                )


def convert_reset(model: nn.Module, reset: str = "zero", reset_delay: bool = False) -> nn.Module:
    """A deep copy of ``model`` whose LIF layers use ``reset`` / ``reset_delay`` (default: NIR's neuron,
    reset to zero in the step it fires). The spikes change; fine-tune the copy before deploying it."""
    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, LIF):
            m.reset = reset
            m.reset_delay = reset_delay
    return out


_convert_reset = convert_reset  # export_nir's argument of the same name shadows it


def _flat_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or "<model>", m) for name, m in leaves(model, check=False)]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _neuron_array(value: torch.Tensor, shape: tuple[int, ...], what: str, layer: str) -> np.ndarray:
    v = _np(value).astype(np.float64)
    try:
        return np.ascontiguousarray(np.broadcast_to(v, shape))
    except ValueError:
        raise ValueError(
            f"LIF layer {layer!r}: {what} of shape {list(v.shape)} does not broadcast to the neuron shape "
            f"{list(shape)}"
        ) from None


def _infer_input_shape(layers: list[tuple[str, nn.Module]]) -> tuple[int, ...]:
    for name, m in layers:
        if isinstance(m, nn.Linear):
            return (m.in_features,)
        if isinstance(m, (nn.Flatten, nn.Dropout)):
            continue
        raise ValueError(
            f"cannot infer the input shape from layer {name!r} ({type(m).__name__}); pass input_shape=(C, H, W) "
            "or export from a checkpoint folder (its config.json holds the input shape)"
        )
    raise ValueError("the model has no layers to export")


def _out_shape(m: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(m, (LIF, CubaLIF, RecurrentLIF, MultiSpikeLIF, nn.Dropout, nn.Identity)):
        return shape
    p = next(iter(m.parameters()), None)
    with torch.no_grad():
        x = torch.zeros(1, *shape, dtype=torch.float32 if p is None else p.dtype)
        return tuple(m(x).shape[1:])


def _pair(v) -> np.ndarray:
    return np.array(v if isinstance(v, (tuple, list)) else (v, v), dtype=np.int64)


# ------------------------------------------------------------------------------------------------ export


class _Ctx:
    """What the per-layer exporters share: dt, options, the target, and the nodes written so far."""

    def __init__(self, dt: float, maxpool: str, fold_r: bool, target: NIRTarget) -> None:
        self.dt, self.maxpool, self.fold_r, self.target = dt, maxpool, fold_r, target
        self.nodes: list[tuple[str, object]] = []  # (name, nir node), in order
        self.prev_kind: str | None = None  # "spikes" after a LIF (pooling and flatten keep it)
        self.warned: set[str] = set()
        self.spiking_seen = 0  # spiking layers written so far
        self.after_conv = False
        self.flatten_seen = False

    def warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            warnings.warn(f"[target {self.target.name}] {message}", UserWarning, stacklevel=5)

    def check(self, name: str, kind: str, m) -> None:
        """The target's verdict on neuron layer ``name``: warnings (once per kind of difference) or ValueError."""
        prev = self.nodes[-1][1] if self.nodes else None
        bias = getattr(prev, "bias", None)
        info = {
            "first": self.spiking_seen == 0,
            "bias_nonzero": bias is not None and bool(np.any(np.asarray(bias) != 0)),
            "after_conv": self.after_conv,
            "flatten": self.flatten_seen,
        }
        for key, message in check_layer(self.target, name, kind, m, info):
            self.warn(key, message)
        self.spiking_seen += 1

    def refuse(self, what: str, name: str) -> None:
        """ValueError: the target's reader cannot load layer ``name``."""
        raise ValueError(
            f"target {self.target.name!r}: its reader has no mapping for {what} (layer {name!r})"
        )


def _ex_linear(ctx: _Ctx, name: str, m: nn.Linear, in_shape, out_shape):
    import nir

    w = _np(m.weight).astype(np.float32)
    if m.bias is None and ctx.target.name == "sinabs":  # sinabs's from_nir reads Affine, not Linear
        return [("affine", nir.Affine(weight=w, bias=np.zeros(w.shape[0], np.float32)))]
    if m.bias is None:
        return [("linear", nir.Linear(weight=w))]
    return [("affine", nir.Affine(weight=w, bias=_np(m.bias).astype(np.float32)))]


def _ex_conv2d(ctx: _Ctx, name: str, m: nn.Conv2d, in_shape, out_shape):
    import nir

    if m.padding_mode != "zeros":
        raise ValueError(f"layer {name!r}: Conv2d padding_mode={m.padding_mode!r} has no NIR equivalent")
    if ctx.target.neuron_node == "cubalif":
        ctx.refuse("Conv2d (Xylo and the rockpool preset are dense only)", name)
    ctx.after_conv = True
    bias = np.zeros(m.out_channels, np.float32) if m.bias is None else _np(m.bias).astype(np.float32)
    padding = m.padding if isinstance(m.padding, str) else tuple(int(p) for p in m.padding)
    node = nir.Conv2d(
        input_shape=tuple(int(s) for s in in_shape[1:]),
        weight=_np(m.weight).astype(np.float32),
        stride=tuple(int(s) for s in m.stride),
        padding=padding,
        dilation=tuple(int(d) for d in m.dilation),
        groups=int(m.groups),
        bias=bias,
    )
    return [("conv2d", node)]


def _ex_flatten(ctx: _Ctx, name: str, m: nn.Flatten, in_shape, out_shape):
    import nir

    if tuple(in_shape) == tuple(out_shape):
        return []  # a 1-D sample: the identity (and importers that keep the batch axis mishandle it)
    # NIR's axes exclude the batch axis; counted from the end, they mean the same axes to readers that keep a
    # batch axis in front and hand start_dim/end_dim to torch.nn.Flatten unchanged (snntorch, norse)
    n = len(in_shape)
    start = m.start_dim - 1 - n if m.start_dim > 0 else m.start_dim
    end = m.end_dim - 1 - n if m.end_dim > 0 else m.end_dim
    ctx.flatten_seen = True
    return [("flatten", nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end))]


def _pool_args(name: str, m):
    if getattr(m, "ceil_mode", False):
        raise ValueError(f"layer {name!r}: ceil_mode=True has no NIR equivalent")
    stride = m.kernel_size if m.stride is None else m.stride
    return _pair(m.kernel_size), _pair(stride), _pair(m.padding)


def _ex_avgpool(ctx: _Ctx, name: str, m: nn.AvgPool2d, in_shape, out_shape):
    import nir

    if m.divisor_override is not None or (not m.count_include_pad and np.any(_pair(m.padding))):
        raise ValueError(
            f"layer {name!r}: AvgPool2d with divisor_override/count_include_pad=False has no NIR node"
        )
    if ctx.target.name in ("sinabs", "rockpool", "xylo"):
        ctx.refuse("AvgPool2d", name)
    if ctx.target.name == "norse":
        ctx.warn(
            "avgpool", f"norse 1.1.0's from_nir has no AvgPool2d mapping (layer {name!r}); it cannot load it"
        )
    k, s, p = _pool_args(name, m)
    return [("avgpool2d", nir.AvgPool2d(kernel_size=k, stride=s, padding=p))]


def _ex_maxpool(ctx: _Ctx, name: str, m: nn.MaxPool2d, in_shape, out_shape):
    import nir

    if ctx.maxpool == "error":
        raise ValueError(
            f"layer {name!r} (MaxPool2d) cannot be expressed in NIR; export with maxpool='spiking' (SumPool2d + "
            "an IF gate, exact for spike inputs), or replace it by AvgPool2d and fine-tune"
        )
    if ctx.prev_kind != "spikes":
        raise ValueError(
            f"layer {name!r}: the maxpool='spiking' substitute is exact only on binary spikes, but its input "
            "does not come from a LIF layer"
        )
    if _pair(m.dilation).max() != 1:
        raise ValueError(f"layer {name!r}: MaxPool2d with dilation has no NIR substitute")
    if ctx.target.name in ("snntorch", "spyx", "sinabs"):
        ctx.warn(
            "maxgate",
            f"the max-pool substitute of {name!r} needs NIR's IF as written (reset to 0 in the step it fires, "
            f"v + dt r I); {ctx.target.name}'s IF is another neuron, so the pooled spikes differ there",
        )
    k, s, p = _pool_args(name, m)
    shape = tuple(int(v) for v in out_shape)
    meta = {"substitute": "MaxPool2d"}
    pool = nir.SumPool2d(kernel_size=k, stride=s, padding=p, metadata=dict(meta))
    gate = nir.IF(
        r=np.ones(shape),
        v_threshold=np.full(shape, ctx.dt / 2),
        v_reset=np.zeros(shape),
        metadata=dict(meta),
    )
    return [("sumpool2d", pool), ("maxgate", gate)]


def _fold_into_previous(ctx: _Ctx, name: str, scale: np.ndarray) -> None:
    """W <- diag(scale) W for the node that makes this LIF's current (fold_r=True)."""
    import nir

    if not ctx.nodes or not isinstance(ctx.nodes[-1][1], (nir.Affine, nir.Linear, nir.Conv2d)):
        raise ValueError(f"fold_r=True needs an Affine/Linear/Conv2d right before LIF layer {name!r}")
    node_name, node = ctx.nodes[-1]
    if isinstance(node, nir.Conv2d):
        per_channel = scale.reshape(scale.shape[0], -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise ValueError(
                f"fold_r=True: LIF layer {name!r} has β varying inside a channel; cannot fold into a conv"
            )
        s = per_channel[:, 0]
        node.weight = (node.weight * s[:, None, None, None]).astype(np.float32)
        node.bias = (node.bias * s).astype(np.float32)
    else:
        node.weight = (node.weight * scale.reshape(-1, 1)).astype(np.float32)
        if isinstance(node, nir.Affine):
            node.bias = (node.bias * scale.reshape(-1)).astype(np.float32)


def _neuron_meta(ctx: _Ctx, m) -> dict:
    meta = {"reset": m.reset, "reset_delay": bool(m.reset_delay), "dt": float(ctx.dt)}
    if isinstance(
        m, MultiSpikeLIF
    ):  # several spikes per step (NIR's neurons emit one): lfp-snn's import reads it
        meta["spikes"] = "multi"
        if m.max_spikes is not None:
            meta["max_spikes"] = int(m.max_spikes)
    return meta


def _ex_lif(ctx: _Ctx, name: str, m: LIF, in_shape, out_shape, kind: str | None = None):
    import nir

    shape = tuple(int(v) for v in out_shape)
    beta = _neuron_array(m.beta, shape, "beta", name)
    thr = _neuron_array(m.threshold, shape, "threshold", name)
    is_if = bool(np.all(beta == 1.0))
    if not is_if and np.any(beta == 1.0):
        raise ValueError(
            f"LIF layer {name!r} mixes β = 1 and β < 1 neurons; NIR needs one node type per layer"
        )
    ctx.check(name, kind or ("if" if is_if else "lif"), m)
    meta = _neuron_meta(ctx, m)
    if ctx.target.neuron_node == "cubalif":
        return [("cubalif", _rockpool_cuba(ctx, name, np.zeros(shape), beta, thr, meta))]
    ones = np.ones(shape)
    if is_if:
        r = ones / ctx.dt
        if ctx.fold_r and ctx.target.fold_if:
            _fold_into_previous(ctx, name, r)
            r = ones.copy()
        node = nir.IF(r=r, v_threshold=thr, v_reset=np.zeros(shape), metadata=meta)
        return [("if", node)]
    if ctx.target.integration == "exponential":
        # exact zero-order hold: v_t = e^{-dt/τ} v + (1 - e^{-dt/τ}) R I, with e^{-dt/τ} = β in float32
        tau = exp_tau(beta, ctx.dt).astype(np.float64)
    else:
        tau = ctx.dt / (1.0 - beta)
    r = 1.0 / (1.0 - beta)
    if ctx.fold_r:
        _fold_into_previous(ctx, name, r)
        r = ones.copy()
    node = nir.LIF(
        tau=tau, r=r, v_leak=np.zeros(shape), v_threshold=thr, v_reset=np.zeros(shape), metadata=meta
    )
    return [("lif", node)]


def _rockpool_cuba(ctx: _Ctx, name: str, alpha: np.ndarray, beta: np.ndarray, thr: np.ndarray, meta: dict):
    """A neuron as rockpool 3.1 reads and runs nir.CubaLIF (LIFTorch): ``I_t = α_r (I_{t-1} + X'_t)``,
    ``U_t = β_r U_{t-1} + I_t`` with ``α_r = exp(-dt/τ_syn)``, ``β_r = exp(-dt/τ_mem)`` and ``dt = τ_mem/(1+r)``;
    w_in and R are not read. So τ gives our α and β exactly in float32, r gives dt back, and the weights into
    the neuron are divided by α (exact when α is a power of two). A LIF (α = 0) gets α ≈ 2^-24 (the float32
    exp(-dt/τ_syn) nearest to it), and the weights divided by that."""
    import nir

    if np.any(beta >= 1.0):
        raise ValueError(f"target {ctx.target.name!r}: layer {name!r} has β = 1, and rockpool needs β < 1")
    # a LIF (α = 0): rockpool cannot hold no synaptic current; α ≈ 2^-24, as float32 exp(-dt/τ_syn) gives it
    tau_small = np.float32(-ctx.dt / math.log(LIF_ALPHA_ROCKPOOL))
    a_small = float(torch.exp(-ctx.dt / torch.tensor(tau_small)))
    a = np.where(alpha == 0.0, a_small, alpha)
    tau_syn = np.where(
        alpha == 0.0, np.float64(tau_small), exp_tau(np.where(alpha == 0.0, 0.5, alpha), ctx.dt)
    )
    if np.any(alpha > 0) and not np.all(np.log2(a) == np.round(np.log2(a))):
        ctx.warn(
            "alpha-rounding",
            f"rockpool decays the input together with the current (I_t = α (I_(t-1) + W' x_t)), so the weights "
            f"into {name!r} are divided by α; with α not a power of two that product rounds differently from "
            "lfp-snn's α I_(t-1) + W x_t (rare spike flips). Exact alternative: α = 0.5 (--alpha 0.5)",
        )
    _fold_into_previous(ctx, name, 1.0 / a)
    tau_mem = exp_tau(beta, ctx.dt).astype(np.float64)
    shape = beta.shape
    return nir.CubaLIF(
        tau_syn=tau_syn.astype(np.float64),
        tau_mem=tau_mem,
        r=rockpool_r(tau_mem, ctx.dt),
        v_leak=np.zeros(shape),
        v_threshold=thr,
        v_reset=np.zeros(shape),
        w_in=np.ones(shape),
        metadata={**meta, "rockpool": True, "lif": bool(np.all(alpha == 0.0))},
    )


def _ex_cuba(ctx: _Ctx, name: str, m: CubaLIF, in_shape, out_shape):
    import nir

    shape = tuple(int(v) for v in out_shape)
    alpha = _neuron_array(m.alpha, shape, "alpha", name)
    beta = _neuron_array(m.beta, shape, "beta", name)
    thr = _neuron_array(m.threshold, shape, "threshold", name)
    if np.any(beta == 1.0):
        raise ValueError(
            f"CubaLIF layer {name!r} has β = 1: NIR's CubaLIF needs a finite membrane time constant τ_mem"
        )
    ctx.check(name, "cuba", m)
    meta = _neuron_meta(ctx, m)
    if ctx.target.neuron_node == "cubalif":
        return [("cubalif", _rockpool_cuba(ctx, name, alpha, beta, thr, meta))]
    # Euler steps of τ_syn dI/dt = -I + w_in x and τ_mem dv/dt = -v + R I: I_t = α I_{t-1} + X_t and
    # U_t = β U_{t-1} + I_t with the values below
    w_in, r = 1.0 / (1.0 - alpha), 1.0 / (1.0 - beta)
    if ctx.fold_r:
        _fold_into_previous(ctx, name, w_in * r)
        w_in, r = np.ones(shape), np.ones(shape)
    node = nir.CubaLIF(
        tau_syn=ctx.dt / (1.0 - alpha),
        tau_mem=ctx.dt / (1.0 - beta),
        r=r,
        v_leak=np.zeros(shape),
        v_threshold=thr,
        v_reset=np.zeros(shape),
        w_in=w_in,
        metadata=meta,
    )
    return [("cubalif", node)]


def _ex_recurrent(ctx: _Ctx, name: str, m: RecurrentLIF, in_shape, out_shape):
    """The LIF (or IF) node, and the recurrent product V S as a Linear node on a loop from the neuron back to
    itself (:func:`to_nir_graph` adds the two edges): the neuron sums its incoming edges, the loop's a step
    late. With ``fold_r`` the loop's weights take the same R as the feed-forward ones."""
    import nir

    ((kind, node),) = _ex_lif(ctx, name, m, in_shape, out_shape, kind="recurrent")
    node.metadata = {**node.metadata, "recurrent": True}
    w = _np(m.effective_weight()).astype(np.float64)
    if ctx.fold_r:
        beta = _neuron_array(m.beta, tuple(int(v) for v in out_shape), "beta", name)
        r_if = 1.0 / ctx.dt if ctx.target.fold_if else 1.0
        r = np.where(beta == 1.0, r_if, 1.0 / np.where(beta == 1.0, 0.5, 1.0 - beta))
        w = w * r.reshape(-1, 1)
    return [(kind, node), ("recurrent", nir.Linear(weight=w.astype(np.float32), metadata={"loop": True}))]


def _ex_skip(ctx, name, m, in_shape, out_shape):
    return []


EXPORTERS: dict[type, Callable] = {
    nn.Linear: _ex_linear,
    nn.Conv2d: _ex_conv2d,
    nn.Flatten: _ex_flatten,
    nn.AvgPool2d: _ex_avgpool,
    nn.MaxPool2d: _ex_maxpool,
    LIF: _ex_lif,
    MultiSpikeLIF: _ex_lif,
    CubaLIF: _ex_cuba,
    RecurrentLIF: _ex_recurrent,
    nn.Dropout: _ex_skip,
    nn.Identity: _ex_skip,  # where a BatchNorm was folded away
}


_SPATIAL = (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d)
_NEURONS = (LIF, CubaLIF, RecurrentLIF, MultiSpikeLIF)


def _graph_input(layers, input_shape) -> tuple[tuple[int, ...], bool]:
    """(the graph's Input shape, whether the model flattens its input first), checking ``input_shape`` against
    the first layer so that no batch axis slips in.

    A dense model (no conv or pooling layer) gets the Input ``[n_in]`` of its first Linear and no Flatten node,
    whatever shape it was trained on: the Flatten of a 1-D sample is the identity, readers that keep a batch
    axis get a graph that runs batched, and the export from a checkpoint folder (which knows the training
    shape, e.g. (1, 8, 8)) is the same graph as the export of the module (which does not)."""
    dense = not any(isinstance(m, _SPATIAL) for _, m in layers)
    skip = (nn.Flatten, nn.Dropout, nn.Identity)
    lead = 0
    while lead < len(layers) and isinstance(layers[lead][1], skip):
        lead += 1
    first = layers[lead] if lead < len(layers) else None
    flatten_first = any(isinstance(m, nn.Flatten) for _, m in layers[:lead])
    if dense and first is not None and isinstance(first[1], nn.Linear):
        n_in = int(first[1].in_features)
        if input_shape is not None and math.prod(int(v) for v in input_shape) != n_in:
            raise ValueError(
                f"input_shape {tuple(input_shape)} holds {math.prod(int(v) for v in input_shape)} values, but the first "
                f"Linear layer {first[0]!r} takes {n_in}; give one sample's shape, without the batch axis"
            )
        if input_shape is not None and len(input_shape) > 1 and not flatten_first:
            raise ValueError(
                f"input_shape {tuple(input_shape)} has {len(input_shape)} axes, but the model's first layer is Linear "
                f"{first[0]!r} (no Flatten before it): its sample shape is ({n_in},); is the first axis a batch axis?"
            )
        return (n_in,), flatten_first
    shape = tuple(int(s) for s in (input_shape or _infer_input_shape(layers)))
    if first is not None and isinstance(first[1], nn.Conv2d):
        c = int(first[1].in_channels)
        if len(shape) == 4 and shape[1] == c:
            raise ValueError(
                f"input_shape {shape} has 4 axes; a Conv2d model takes one sample (C, H, W) = {shape[1:]}: drop the "
                "batch axis"
            )
        if len(shape) != 3 or shape[0] != c:
            raise ValueError(
                f"input_shape {shape} does not fit the first layer {first[0]!r} (Conv2d with {c} input channels): give "
                "one sample's shape (C, H, W)"
            )
    return shape, False


def _check_xylo(layers, graph_in: tuple[int, ...]) -> None:
    """Xylo Audio 2's design rules (rockpool 3.1's mapper): ValueError naming the first rule the model breaks."""
    from .nir_targets import XYLO_MAX_DASH, XYLO_MAX_HIDDEN, XYLO_MAX_INPUTS, XYLO_MAX_OUTPUTS, bitshift_of

    neurons = [(n, m) for n, m in layers if isinstance(m, _NEURONS)]
    sizes = []
    for n, m in layers:
        if isinstance(m, nn.Linear):
            sizes.append(int(m.out_features))
            if m.bias is not None and bool(torch.any(m.bias != 0)):
                raise ValueError(
                    f"target 'xylo': Linear {n!r} has a bias, and Xylo does not transfer weight biases (rockpool's "
                    "mapper drops them); train without bias (nn.Linear(..., bias=False))"
                )
    if len(neurons) < 2:
        raise ValueError("target 'xylo': Xylo needs at least two neuron layers (hidden and output)")
    if graph_in[0] > XYLO_MAX_INPUTS:
        raise ValueError(
            f"target 'xylo': {graph_in[0]} inputs, and Xylo has at most {XYLO_MAX_INPUTS} input channels"
        )
    if sizes and sizes[-1] > XYLO_MAX_OUTPUTS:
        raise ValueError(
            f"target 'xylo': {sizes[-1]} output neurons, and Xylo has at most {XYLO_MAX_OUTPUTS}"
        )
    if sum(sizes[:-1]) > XYLO_MAX_HIDDEN:
        raise ValueError(
            f"target 'xylo': {sum(sizes[:-1])} hidden neurons, and Xylo has at most {XYLO_MAX_HIDDEN}"
        )
    for n, m in neurons:
        decays = [("beta", m.beta)] + ([("alpha", m.alpha)] if isinstance(m, CubaLIF) else [])
        for what, v in decays:
            v = _np(v).astype(np.float64)
            if what == "alpha" and np.all(v == 0.0):
                continue  # dash_syn = 0: no synaptic memory on Xylo
            if bitshift_of(v) is None:
                k = np.clip(np.round(-np.log2(np.clip(1.0 - v, 1e-12, None))), 1, XYLO_MAX_DASH).astype(int)
                raise ValueError(
                    f"target 'xylo': layer {n!r} has {what} = {np.unique(v)[:4].tolist()}, and Xylo decays by a bit "
                    f"shift, {what} = 1 - 2^-k with k = 1..{XYLO_MAX_DASH}; nearest: {np.unique(1.0 - 2.0**-k)[:4].tolist()} "
                    f"(train with --{what} {float(1.0 - 2.0 ** -k.flat[0])})"
                )


def to_nir_graph(
    model: nn.Module,
    dt: float | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    maxpool: str = "error",
    fold_r: bool | None = None,
    target: str = "generic",
):
    """The ``nir.NIRGraph`` of a spiking ``model`` (no file written). See the module docstring.

    ``target``: the reader the graph is for (:data:`lfp_snn.export.nir_targets.TARGETS`); ``dt=None`` takes the
    target's time step, ``fold_r=None`` what the target needs (a value the target cannot use is an error)."""
    import nir

    spec = get_target(target)
    dt = resolve_dt(spec, dt)
    if not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    if fold_r is None:
        fold_r = spec.fold_r
    elif spec.fold_r and not fold_r:
        raise ValueError(f"target {spec.name!r} ignores r, so it needs fold_r=True (the default for it)")
    elif fold_r and spec.name not in ("generic", "snntorch", "norse"):
        raise ValueError(f"target {spec.name!r} reads the graph without fold_r; leave fold_r unset")
    if maxpool not in MAXPOOL_MODES:
        raise ValueError(f"maxpool must be one of {MAXPOOL_MODES}, got {maxpool!r}")
    check_finite(model)
    layers = _flat_layers(model)
    if not any(isinstance(m, _NEURONS) for _, m in layers):
        raise ValueError("the model has no LIF layer: NIR export is for spiking models")
    for name, m in layers:
        if type(m) not in EXPORTERS:
            raise ValueError(
                f"layer {name!r} of type {type(m).__name__} cannot be exported to NIR; supported: "
                f"{', '.join(sorted(t.__name__ for t in EXPORTERS))}"
            )
    shape, flatten_input = _graph_input(layers, input_shape)
    if spec.name == "xylo":
        _check_xylo(layers, shape)
    ctx = _Ctx(float(dt), maxpool, fold_r, spec)
    if spec.name in ("norse", "spyx") and dt != spec.dt:
        ctx.warn(
            "dt",
            f"{spec.name}'s from_nir does not read dt from the file and assumes dt = {spec.dt:g} s: read this one "
            f"with from_nir(..., dt={dt:g}), or its neurons decay with another β",
        )
    counts: dict[str, int] = {}
    input_shape_ = shape
    for name, m in layers:
        out_shape = _out_shape(m, shape)
        for kind, node in EXPORTERS[type(m)](ctx, name, m, shape, out_shape):
            node_name = f"{kind}{counts.get(kind, 0)}"
            counts[kind] = counts.get(kind, 0) + 1
            node.metadata = {**node.metadata, "torch_layer": name}
            ctx.nodes.append((node_name, node))
        if isinstance(m, _NEURONS):
            ctx.prev_kind = "spikes"
        elif not isinstance(m, (nn.Flatten, nn.Dropout, nn.MaxPool2d, nn.Identity)):
            ctx.prev_kind = None
        shape = out_shape
    if spec.name == "spyx":
        ctx.warn(
            "delay",
            f"spyx's neurons fire from the previous step's membrane, so each of the {ctx.spiking_seen} spiking "
            f"layers delays the spikes by one step: spyx's output at step t + {ctx.spiking_seen} is lfp-snn's at "
            f"step t. Feed {ctx.spiking_seen} more (zero) steps to get all of them",
        )
    nodes = {"input": nir.Input(input_type=np.array(input_shape_))}
    nodes.update(ctx.nodes)
    nodes["output"] = nir.Output(output_type=np.array(shape))
    chain, edges = [], []
    for node_name, node in nodes.items():
        if (getattr(node, "metadata", None) or {}).get("loop"):
            edges += [(chain[-1], node_name), (node_name, chain[-1])]  # neuron -> V -> the same neuron
        else:
            chain.append(node_name)
    edges += list(zip(chain[:-1], chain[1:]))
    if spec.neuron_node == "cubalif":
        mapping = MAPPING_ROCKPOOL
    else:
        mapping = MAPPING_EXP if spec.integration == "exponential" else MAPPING
        mapping += "; r folded into the weights (fold_r)" if fold_r else ""
    meta = {
        "producer": "lfp_snn",
        "format": FORMAT,
        "target": spec.name,
        "dt": float(dt),
        "integration": spec.integration,
        "r": spec.r_means,
        "time_first": True,
        "input_shape": np.array(input_shape_, dtype=np.int64),
        "flatten_input": bool(flatten_input),
        "mapping": mapping,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _write(path: Path, graph, drop_fields: tuple[str, ...]) -> None:
    """``nir.write``, then (for readers on older NIR versions) delete ``drop_fields`` from every neuron node."""
    import h5py
    import nir

    nir.write(str(path), graph)
    if not drop_fields:
        return
    with h5py.File(path, "r+") as f:
        nodes = f["node"]["nodes"]
        for name in list(nodes):
            group = nodes[name]
            for field in drop_fields:
                if field in group:
                    del group[field]


def export_nir(
    model_or_checkpoint_folder: nn.Module | str | os.PathLike,
    path: str | os.PathLike | None,
    dt: float | None = None,
    *,
    target: str = "generic",
    input_shape: tuple[int, ...] | None = None,
    maxpool: str = "error",
    convert_reset: str | None = None,
    fold_r: bool | None = None,
    overwrite: bool = False,
):
    """Write a spiking model (or a checkpoint folder) as a NIR file at ``path``; return the ``nir.NIRGraph``.

    Args:
        dt: the time step in seconds that the discrete model stands for (graph metadata ``dt``); ``None``: the
            target's (generic and norse 1e-3, snntorch 1e-4 -- its importer hard-codes it --, spyx and sinabs 1,
            rockpool and xylo 1e-3).
        target: the reader the file is for: ``"generic"`` (NIR as written; lfp-snn's own import), ``"snntorch"``,
            ``"norse"``, ``"spyx"``, ``"sinabs"``, ``"rockpool"`` or ``"xylo"`` (rockpool's reader and Xylo's design
            rules). Each writes what that reader needs and warns (``UserWarning``) where it cannot run the trained
            neuron exactly, naming the lfp-snn neuron that it runs exactly (docs/export.md, "Target presets").
        input_shape: one sample's shape; read from the checkpoint's config, or inferred from a first Linear. A dense
            model's graph starts at its first Linear (Input ``[n_in]``, no Flatten) either way.
        maxpool: ``"error"`` (default) or ``"spiking"`` (SumPool2d + IF gate, exact on spike inputs).
        convert_reset: ``None`` keeps the neurons (warning when NIR cannot express their reset);
            ``"zero"`` exports a copy with reset-to-zero and no delay -- a different model, to fine-tune.
        fold_r: put R = 1/(1-β) into the weights and write r = 1 (for tools that ignore ``r``); ``None``: what
            the target needs (norse: on).
    ``path=None`` builds the graph without writing. The file is written to a temporary name beside ``path``
    and renamed into place, so a failed export leaves no partial file; an existing file at ``path`` is
    replaced only with ``overwrite=True``.
    """
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give the name of the .nir file to write")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    spec = get_target(target)

    model, cfg = load_model(model_or_checkpoint_folder)
    if input_shape is None and cfg is not None:
        input_shape = tuple(cfg["model"]["input_shape"])
    if convert_reset is not None:
        if convert_reset != "zero":
            raise ValueError(f"convert_reset must be None or 'zero' (NIR's neuron), got {convert_reset!r}")
        model = _convert_reset(model, "zero", False)
    graph = to_nir_graph(model, dt, input_shape=input_shape, maxpool=maxpool, fold_r=fold_r, target=target)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            _write(Path(tmp), graph, spec.drop_fields)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return graph


# ------------------------------------------------------------------------------------------------ import


def _meta(node) -> dict:
    out = {}
    for k, v in (getattr(node, "metadata", None) or {}).items():
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def _uniform(a: np.ndarray):
    a = np.asarray(a, dtype=np.float64)
    return float(a.flat[0]) if a.size and np.all(a == a.flat[0]) else None


def _param(a: np.ndarray) -> torch.Tensor | float:
    u = _uniform(a)
    return u if u is not None else torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32)


def _snap(x: np.ndarray) -> np.ndarray:
    """Undo float noise of order 1e-12 around 1 (dt R / τ for our own graphs is 1 up to rounding)."""
    return np.where(np.abs(x - 1.0) < 1e-9, 1.0, x)


class _ImportCtx:
    def __init__(self, dt: float, integration: str = "forward-euler", r_means: str = "resistance") -> None:
        if integration not in ("forward-euler", "exponential"):
            raise ValueError(
                f"the graph's integration {integration!r} is neither 'forward-euler' nor 'exponential'"
            )
        self.dt, self.integration, self.r_means = dt, integration, r_means
        self.rows_times: np.ndarray | None = (
            None  # multiply the rows of the layer below by this (rockpool graphs)
        )

    def decay(self, tau: np.ndarray) -> np.ndarray:
        """β of a time constant: 1 - dt/τ (forward Euler) or exp(-dt/τ) in float32 (as sinabs and rockpool)."""
        if self.integration == "exponential":
            t = torch.as_tensor(np.asarray(tau, dtype=np.float32))
            return torch.exp(-self.dt / t).numpy().astype(np.float64)
        return 1.0 - self.dt / tau


def _im_linear(ctx, name, node):
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.float32))
    bias = getattr(node, "bias", None)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(w)
        if bias is not None:
            lin.bias.copy_(torch.as_tensor(np.asarray(bias, dtype=np.float32)))
    return [lin]


def _im_conv2d(ctx, name, node):
    w = torch.as_tensor(np.asarray(node.weight, dtype=np.float32))
    padding = (
        node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.atleast_1d(node.padding))
    )
    conv = nn.Conv2d(
        w.shape[1] * int(node.groups),
        w.shape[0],
        tuple(w.shape[2:]),
        stride=tuple(int(s) for s in np.atleast_1d(node.stride)),
        padding=padding,
        dilation=tuple(int(d) for d in np.atleast_1d(node.dilation)),
        groups=int(node.groups),
    )
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(torch.as_tensor(np.asarray(node.bias, dtype=np.float32)))
    return [conv]


def _im_flatten(ctx, name, node):
    start = int(node.start_dim)
    end = int(node.end_dim)
    return [nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)]


def _pool_kw(node) -> dict:
    def t(v):
        return tuple(int(x) for x in np.broadcast_to(np.atleast_1d(v), (2,)))

    return {"kernel_size": t(node.kernel_size), "stride": t(node.stride), "padding": t(node.padding)}


def _im_sumpool(ctx, name, node):
    if _meta(node).get("substitute") == "MaxPool2d":
        return [nn.MaxPool2d(**_pool_kw(node))]
    return [nn.AvgPool2d(**_pool_kw(node), divisor_override=1)]  # a sum pool


def _im_avgpool(ctx, name, node):
    return [nn.AvgPool2d(**_pool_kw(node))]


def _lif_from(name: str, node, beta: np.ndarray, scale: np.ndarray) -> LIF:
    meta = _meta(node)
    if not np.allclose(np.asarray(node.v_reset, dtype=np.float64), 0.0):
        raise ValueError(
            f"NIR node {name!r}: v_reset != 0 is not supported (lfp_snn's LIF resets to 0 or by θ)"
        )
    thr = np.asarray(node.v_threshold, dtype=np.float64) / scale
    if meta.get("spikes") == "multi":
        cap = meta.get("max_spikes")
        return MultiSpikeLIF(_param(beta), _param(thr), None if cap is None else int(cap))
    reset = str(meta.get("reset", "zero"))
    delay = bool(meta.get("reset_delay", False))
    return LIF(_param(beta), _param(thr), reset, delay)


def _im_lif(ctx, name, node):
    if not np.allclose(np.asarray(node.v_leak, dtype=np.float64), 0.0):
        raise ValueError(f"NIR node {name!r}: v_leak != 0 is not supported")
    tau = np.asarray(node.tau, dtype=np.float64)
    beta = ctx.decay(tau)
    if np.any(beta <= 0) or np.any(beta > 1):
        raise ValueError(
            f"NIR node {name!r}: tau (min {tau.min():.3g} s) with dt = {ctx.dt} gives β outside (0, 1]; "
            "is dt right? (import_nir(..., dt=...))"
        )
    # U_t = β U_{t-1} + s I_t with s = dt R / τ (Euler) or (1 - β) R (exact); dividing U by s gives our LIF
    # with threshold θ / s.
    r = np.asarray(node.r, dtype=np.float64)
    scale = _snap((1.0 - beta) * r if ctx.integration == "exponential" else ctx.dt * r / tau)
    return [_lif_from(name, node, beta, scale)]


def _im_if(ctx, name, node):
    if _meta(node).get("substitute") == "MaxPool2d":
        return []  # the gate of a max-pool substitute: the MaxPool2d already restored by _im_sumpool
    scale = _snap(ctx.dt * np.asarray(node.r, dtype=np.float64))
    return [_lif_from(name, node, np.ones_like(scale), scale)]


def _im_cuba(ctx, name, node):
    if not np.allclose(np.asarray(node.v_leak, dtype=np.float64), 0.0):
        raise ValueError(f"NIR node {name!r}: v_leak != 0 is not supported")
    tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
    tau_mem = np.asarray(node.tau_mem, dtype=np.float64)
    alpha, beta = ctx.decay(tau_syn), ctx.decay(tau_mem)
    if ctx.r_means == "rockpool-dt" or _meta(node).get("rockpool"):
        return _im_rockpool_cuba(ctx, name, node, alpha, beta)
    if np.any(alpha < 0) or np.any(alpha >= 1) or np.any(beta <= 0) or np.any(beta >= 1):
        raise ValueError(
            f"NIR node {name!r}: tau_syn (min {tau_syn.min():.3g} s) and tau_mem (min {tau_mem.min():.3g} s) with "
            f"dt = {ctx.dt} give α or β outside their ranges; is dt right? (import_nir(..., dt=...))"
        )
    # I'_t = α I'_{t-1} + s_in X_t, U'_t = β U'_{t-1} + s I'_t: dividing by s_in s gives ours, θ / (s_in s)
    scale = _snap(ctx.dt * np.asarray(node.w_in, dtype=np.float64) / tau_syn) * _snap(
        ctx.dt * np.asarray(node.r, dtype=np.float64) / tau_mem
    )
    lif = _lif_from(name, node, beta, _snap(scale))
    return [CubaLIF(_param(alpha), lif.beta.clone(), lif.threshold.clone(), lif.reset, lif.reset_delay)]


def _im_rockpool_cuba(ctx, name, node, alpha, beta):
    """A CubaLIF written for rockpool: its reader ignores r (it carries dt) and w_in, and the weights below were
    divided by α (rockpool decays the input with the current): multiply them back. A LIF (or multi-spike LIF)
    written this way (metadata ``lif``, α ≈ 2^-24) comes back as that neuron, without the residue, its weights
    within float rounding of the original."""
    if np.any(beta <= 0) or np.any(beta >= 1) or np.any(alpha <= 0) or np.any(alpha >= 1):
        raise ValueError(f"NIR node {name!r}: τ_syn and τ_mem give α or β outside (0, 1)")
    ctx.rows_times = alpha
    lif = _lif_from(name, node, beta, np.ones_like(beta))
    if _meta(node).get("lif") or isinstance(lif, MultiSpikeLIF):
        return [lif]  # a LIF written as a CubaLIF with α ≈ 2^-24: the LIF again, without that residue
    return [CubaLIF(_param(alpha), lif.beta.clone(), lif.threshold.clone(), lif.reset, lif.reset_delay)]


def _times_rows(layer: nn.Module, name: str, factor: np.ndarray) -> None:
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"NIR node {name!r}: a rockpool-style CubaLIF must follow an Affine/Linear node")
    f = torch.as_tensor(np.asarray(factor, dtype=np.float32).reshape(-1))
    with torch.no_grad():
        layer.weight.mul_(f.reshape(-1, 1))
        if layer.bias is not None:
            layer.bias.mul_(f)


def _as_recurrent(lif: LIF, weight: np.ndarray) -> RecurrentLIF:
    n = weight.shape[0]
    rec = RecurrentLIF(n, lif.beta.clone(), lif.threshold.clone(), lif.reset, lif.reset_delay)
    with torch.no_grad():
        rec.weight.copy_(torch.as_tensor(np.asarray(weight, dtype=np.float32)))
    return rec


def _im_skip(ctx, name, node):
    return []


def _importers() -> dict:
    import nir

    return {
        nir.Input: _im_skip,
        nir.Output: _im_skip,
        nir.Affine: _im_linear,
        nir.Linear: _im_linear,
        nir.Conv2d: _im_conv2d,
        nir.Flatten: _im_flatten,
        nir.SumPool2d: _im_sumpool,
        nir.AvgPool2d: _im_avgpool,
        nir.LIF: _im_lif,
        nir.IF: _im_if,
        nir.CubaLIF: _im_cuba,
    }


def _loops(graph) -> dict[str, str]:
    """neuron node -> the Linear node of a recurrent loop through it (neuron -> Linear -> the same neuron)."""
    import nir

    out = {}
    for a, b in graph.edges:
        node = graph.nodes.get(b)
        if (
            isinstance(node, (nir.Linear, nir.Affine))
            and (b, a) in graph.edges
            and isinstance(graph.nodes.get(a), (nir.LIF, nir.IF, nir.CubaLIF))
        ):
            out[a] = b
    return out


def _chain(graph) -> list[str]:
    import nir

    loops = _loops(graph)
    loop_nodes = set(loops.values())
    succ: dict[str, list[str]] = {}
    pred: dict[str, int] = {}
    for a, b in graph.edges:
        if a in loop_nodes or b in loop_nodes:
            continue
        succ.setdefault(a, []).append(b)
        pred[b] = pred.get(b, 0) + 1
    starts = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(starts) != 1:
        raise ValueError(f"expected exactly one Input node, found {len(starts)}: {starts}")
    order, cur = [], starts[0]
    while True:
        order.append(cur)
        nxt = succ.get(cur, [])
        if not nxt:
            break
        if len(nxt) > 1 or pred.get(nxt[0], 0) > 1 or nxt[0] in order:
            raise ValueError(
                f"import_nir reads feed-forward chains only; node {cur!r} branches or loops to {nxt}"
            )
        cur = nxt[0]
    if len(order) + len(loop_nodes) != len(graph.nodes):
        missing = sorted(set(graph.nodes) - set(order) - loop_nodes)
        raise ValueError(f"nodes not on the Input -> Output chain: {missing}")
    return order


def read_nir(path: str | os.PathLike):
    """The ``nir.NIRGraph`` in the file ``path``; FileNotFoundError or ValueError naming the file otherwise."""
    import h5py
    import nir

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no NIR file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not a NIR file: NIR graphs are HDF5 files, and this one is not HDF5")
    try:
        return nir.read(str(path))
    except (KeyError, ValueError, TypeError, AttributeError, OSError) as e:
        raise ValueError(
            f"{path} is an HDF5 file but not a NIR graph that nir can read ({type(e).__name__}: {e})"
        ) from None


def import_nir(path_or_graph, dt: float | None = None) -> SpikingSequential:
    """Read a NIR file (or a ``nir.NIRGraph``) into a :class:`SpikingSequential` (time-first [T, B, ...]).

    ``dt``: the time step for the continuous -> discrete mapping (β = 1 - dt/τ, input scale dt R/τ folded
    into the threshold). Default: the graph's ``dt`` metadata, else 1e-3 s with a warning. LIF nodes written
    by :func:`export_nir` get back their reset mode from the metadata; others reset to zero without delay.
    Graphs written for a target preset are read back by that preset's mapping (``integration = "exponential"``:
    β = exp(-dt/τ) in float32; rockpool's CubaLIF nodes: the weights below times α); a graph whose model
    flattened its input (metadata ``flatten_input``) gets its ``nn.Flatten`` back in front.
    """
    import nir

    graph = path_or_graph if isinstance(path_or_graph, nir.NIRGraph) else read_nir(path_or_graph)
    gmeta = _meta(graph)
    if dt is None:
        if "dt" in gmeta:
            dt = float(gmeta["dt"])
        else:
            dt = 1e-3
            warnings.warn("the NIR graph has no 'dt' metadata; assuming dt = 1e-3 s", stacklevel=2)
    table = _importers()
    loops = _loops(graph)
    layers: list[nn.Module] = [nn.Flatten()] if gmeta.get("flatten_input") else []
    integration = str(gmeta.get("integration", "forward-euler"))
    r_means = str(gmeta.get("r", "resistance"))
    for name in _chain(graph):
        node = graph.nodes[name]
        fn = table.get(type(node))
        if fn is None:
            raise ValueError(
                f"NIR node {name!r} of type {type(node).__name__} is not supported by import_nir; supported: "
                f"{', '.join(sorted(t.__name__ for t in table))}"
            )
        ctx = _ImportCtx(dt, integration, r_means)
        made = fn(ctx, name, node)
        if ctx.rows_times is not None:
            _times_rows(layers[-1] if layers else None, name, ctx.rows_times)
        if name in loops:  # a neuron with a recurrent loop
            if not (len(made) == 1 and type(made[0]) is LIF):
                raise ValueError(f"NIR node {name!r}: a recurrent loop is supported on LIF / IF nodes only")
            made = [_as_recurrent(made[0], graph.nodes[loops[name]].weight)]
        layers += made
    return SpikingSequential(*layers)
