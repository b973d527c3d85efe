"""Target presets for NIR export: what each reader needs in the file, and which lfp-snn neurons it runs exactly.

Every reader of NIR makes its own choices where the format leaves room (the time step, whether ``r`` is read,
how τ becomes a decay, which reset a LIF node means, which node types exist). A preset writes the graph that
reader runs as lfp-snn does, and :func:`check_layer` names what it cannot run exactly (a ``UserWarning``
naming the difference and the lfp-snn neuron that runs exactly there) or cannot load at all (``ValueError``).

| target   | reader (version tested)                         | dt      | what the preset writes                         |
| generic  | NIR 1.0.8 itself, lfp_snn.export.import_nir     | 1e-3    | forward-Euler mapping, r = 1/(1-β)             |
| snntorch | snntorch.import_nir.import_from_nir (1.0.0)     | 1e-4    | its hard-coded dt                              |
| norse    | norse.torch.from_nir (1.1.0)                    | 1e-3    | R folded into the weights (norse ignores r)    |
| spyx     | spyx.nir.from_nir (1.0.0)                       | 1       | its default dt (it ignores r)                  |
| sinabs   | sinabs.from_nir (3.1.3)                         | 1       | τ in steps, exact for exp(-1/τ); no v_reset    |
| rockpool | rockpool.nn.modules.torch.nir.from_nir (3.1.0)  | 1e-3    | CubaLIF nodes, τ for exp(-dt/τ), r for its dt  |
| xylo     | rockpool's reader, then Xylo's design rules     | 1e-3    | as rockpool, plus Xylo's limits as errors      |

See docs/export.md ("Target presets") for each reader's neuron and the cross-check results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class NIRTarget:
    """What one reader needs. ``dt``: the default time step (``dt_fixed``: the reader hard-codes it);
    ``fold_r``: R = 1/(1-β) goes into the weights (the reader ignores ``r``); ``fold_if``: so does an IF's
    R = 1/dt; ``integration``: ``"forward-euler"`` (β = 1 - dt/τ) or ``"exponential"`` (β = exp(-dt/τ));
    ``neuron_node``: ``"native"`` or ``"cubalif"`` (every LIF written as a CubaLIF); ``drop_fields``: node
    fields left out of the file for readers on older NIR versions; ``r_means``: ``"resistance"`` (NIR's R) or
    ``"rockpool-dt"`` (r = τ_mem/dt - 1, from which rockpool's reader derives dt)."""

    name: str
    reader: str
    dt: float
    dt_fixed: bool = False
    fold_r: bool = False
    fold_if: bool = True
    integration: str = "forward-euler"
    neuron_node: str = "native"
    drop_fields: tuple[str, ...] = ()
    r_means: str = "resistance"
    exact: str = ""


TARGETS: dict[str, NIRTarget] = {
    t.name: t
    for t in (
        NIRTarget(
            "generic",
            "lfp_snn.export.import_nir(path) (and any reader that follows NIR 1.0.8 as written)",
            1e-3,
            exact="reset='zero' (either delay); other resets only through lfp-snn's own import",
        ),
        NIRTarget(
            "snntorch",
            "snntorch.import_nir.import_from_nir(nir.read(path))",
            1e-4,
            dt_fixed=True,
            exact="reset='zero' (either delay), β < 1, one threshold per layer",
        ),
        NIRTarget(
            "norse",
            "norse.torch.from_nir(nir.read(path), dt=<the export dt>)",
            1e-3,
            fold_r=True,
            fold_if=False,
            exact="reset='zero' (either delay); in float64 (norse's Euler step rounds differently in float32)",
        ),
        NIRTarget(
            "spyx",
            "spyx.nir.from_nir(nir.read(path), x, dt=<the export dt>)",
            1.0,
            exact="reset='subtract', reset_delay=True (the default), LIF/IF, no bias after the first layer; "
            "output delayed one step per spiking layer",
        ),
        NIRTarget(
            "sinabs",
            "sinabs.from_nir(nir.read(path), batch_size=B) (for a single-spike LIF: spike_fn = SingleSpike)",
            1.0,
            integration="exponential",
            drop_fields=("v_reset",),
            exact="lfp_snn.MultiSpikeLIF as sinabs comes; a LIF with reset='subtract', reset_delay=False "
            "with sinabs.activation.SingleSpike",
        ),
        NIRTarget(
            "rockpool",
            "rockpool.nn.modules.torch.nir.from_nir(nir.read(path)) (for a single-spike LIF: max_spikes_per_dt = 1)",
            1e-3,
            integration="exponential",
            neuron_node="cubalif",
            r_means="rockpool-dt",
            exact="lfp_snn.MultiSpikeLIF as rockpool comes; LIF / CubaLIF (α a power of two) with "
            "reset='subtract', reset_delay=False and max_spikes_per_dt = 1",
        ),
        NIRTarget(
            "xylo",
            "as rockpool; then rockpool.devices.xylo (mapper, quantisation) for the chip",
            1e-3,
            integration="exponential",
            neuron_node="cubalif",
            r_means="rockpool-dt",
            exact="as rockpool, with β and α of the form 1 - 2^-k and Xylo's size limits",
        ),
    )
}
TARGET_NAMES = tuple(TARGETS)

# Xylo Audio 2 (SYNS61201) as rockpool 3.1's mapper checks it (rockpool.devices.xylo.syns61201.xylo_mapper)
XYLO_MAX_INPUTS = 16
XYLO_MAX_HIDDEN = 1000
XYLO_MAX_OUTPUTS = 8
XYLO_MAX_DASH = 15  # bit-shift decays: 1 - 2^-k, k = 1..15 (4-bit dash_mem / dash_syn)
ROCKPOOL_MAX_SPIKES = 2**16  # LIFTorch's default max_spikes_per_dt


def get_target(name: str) -> NIRTarget:
    if name not in TARGETS:
        raise ValueError(f"unknown NIR target {name!r}; expected one of {TARGET_NAMES}")
    return TARGETS[name]


def resolve_dt(target: NIRTarget, dt: float | None) -> float:
    """The time step to write: ``dt`` or the target's default; a reader that hard-codes dt refuses another."""
    if dt is None:
        return target.dt
    if target.dt_fixed and not math.isclose(float(dt), target.dt, rel_tol=1e-12):
        raise ValueError(
            f"target {target.name!r}: its reader hard-codes dt = {target.dt:g} s (β = 1 - {target.dt:g}/τ); "
            f"dt = {dt!r} would run every neuron with another decay there. Leave dt unset (or {target.dt:g})"
        )
    return float(dt)


# ------------------------------------------------------------------------------------- exact τ for exp()


def exp_tau(decay: np.ndarray, dt: float) -> np.ndarray:
    """τ (float32) with ``torch.exp(-dt / τ) == decay`` in float32, element by element: what sinabs
    (``exp(-1/τ)``, dt = 1) and rockpool (``exp(-dt/τ)``) compute, so they run the trained decay bit for bit.

    Starts from τ = -dt / ln(decay) and walks τ by one float32 step until the float32 exp gives ``decay``
    (a step of τ moves exp(-dt/τ) by less than one step of the decay, so one is hit); decay = 1 needs τ = inf.
    """
    d32 = np.asarray(decay, dtype=np.float32)
    out = np.empty(d32.shape, dtype=np.float32)
    cache: dict[float, float] = {}
    for idx, d in np.ndenumerate(d32):
        d = float(d)
        if d not in cache:
            cache[d] = _exp_tau_one(d, dt)
        out[idx] = cache[d]
    return out


def _exp_tau_one(d: float, dt: float) -> float:
    if d >= 1.0:
        return math.inf
    if d <= 0.0:
        raise ValueError(f"a decay of {d} has no time constant")
    target = torch.tensor(d, dtype=torch.float32)
    tau = torch.tensor(-dt / math.log(d), dtype=torch.float32)
    up, down = torch.tensor(math.inf), torch.tensor(-math.inf)
    for _ in range(4096):
        got = torch.exp(-dt / tau)
        if got == target:
            return float(tau)
        tau = torch.nextafter(tau, up if got < target else down)  # larger τ, larger exp(-dt/τ)
    raise ValueError(f"no float32 τ gives exp(-{dt}/τ) = {d} exactly")  # pragma: no cover


def rockpool_r(tau_mem: np.ndarray, dt: float) -> np.ndarray:
    """r such that rockpool's reader, ``dt = min(τ_mem / (1 + r))``, gets ``dt`` back exactly (float64)."""
    tau = np.asarray(tau_mem, dtype=np.float64)
    r = tau / dt - 1.0
    for _ in range(64):
        got = tau / (1.0 + r)
        if np.all(got == dt):
            break
        r = np.where(got > dt, np.nextafter(r, np.inf), np.where(got < dt, np.nextafter(r, -np.inf), r))
    return r


def bitshift_of(decay: np.ndarray) -> np.ndarray | None:
    """k with decay == 1 - 2^-k (k = 1..15) for every element, else None."""
    d = np.asarray(decay, dtype=np.float64)
    ks = np.arange(1, XYLO_MAX_DASH + 1)
    table = 1.0 - 2.0 ** (-ks.astype(np.float64))
    hit = np.isclose(d[..., None], table, rtol=0, atol=1e-7)
    if not np.all(hit.any(axis=-1)):
        return None
    return ks[hit.argmax(axis=-1)]


# --------------------------------------------------------------------------------- neurons per target


def _reset_text(reset: str, delay: bool) -> str:
    return f"reset={reset!r}, reset_delay={delay}"


def check_layer(target: NIRTarget, name: str, kind: str, m, info: dict) -> list[tuple[str, str]]:
    """Warnings ``(key, message)`` for layer ``name`` of kind ``"lif" | "if" | "cuba" | "recurrent"`` (the neuron
    ``m``) under ``target``; raises ValueError where the reader cannot load it. ``info``: ``first`` (the first
    spiking layer), ``bias_nonzero`` (the current into it has a bias), ``after_conv``."""
    reset, delay = m.reset, bool(m.reset_delay)
    zero = reset == "zero"  # with a zero reset the delayed and the immediate reset give the same spikes
    multi = getattr(m, "max_spikes", False) is not False  # lfp_snn.neurons.MultiSpikeLIF
    out: list[tuple[str, str]] = []
    t = target.name
    if multi and t not in ("sinabs", "rockpool", "xylo"):
        where = "NIR's neurons" if t == "generic" else f"{t}'s neurons"
        out.append(
            (
                "multi",
                f"{where} emit at most one spike per step; MultiSpikeLIF {name!r} emits floor(v/θ) "
                + (
                    "(recorded in the node metadata, so lfp_snn.export.import_nir restores it). "
                    if t == "generic"
                    else "there. "
                )
                + "Exact alternative: the single-spike LIF (lfp_snn.LIF) with the reset that reader runs, or "
                "target='sinabs' / 'rockpool', which run this neuron",
            )
        )
    if t == "generic":
        if not zero:
            out.append(
                (
                    f"reset/{reset}/{delay}",
                    f"NIR has no reset={reset!r} with reset_delay={delay} ({kind} {name!r}): NIR's LIF resets to v_reset in the "
                    "step it fires. The reset is recorded in the node metadata, so lfp_snn.export.import_nir "
                    "restores it exactly, but other tools run reset-to-zero. Exact everywhere: train with "
                    "reset='zero' (--reset zero), or export convert_reset='zero' (--convert-reset zero) and "
                    "fine-tune; or pick the reader's preset (target=...)",
                )
            )
        return out
    if t == "snntorch":
        if kind == "if":
            out.append(
                (
                    "if",
                    f"snntorch's importer turns nir.IF ({name!r}, β = 1) into a leaky neuron with β = 0.9 and a "
                    "subtract reset: it will not run this layer as trained. Exact alternative: β < 1 (--beta)",
                )
            )
        if kind == "recurrent":
            out.append(
                (
                    "recurrent",
                    f"snntorch 1.0.0 finds the recurrent loop of {name!r} but fails to run any recurrent graph "
                    "(inside nirtorch 2.6); lfp-snn's own import reads it exactly",
                )
            )
        if not zero:
            out.append(
                (
                    f"reset/{reset}",
                    f"snntorch's importer builds every neuron with reset_mechanism='zero', reset_delay=False; "
                    f"{kind} {name!r} has {_reset_text(reset, delay)}, so its spikes differ there. Exact "
                    "alternative: train with reset='zero' (--reset zero)",
                )
            )
        for what in ("threshold",):
            v = getattr(m, what)
            if v.numel() > 1 and not bool((v == v.flatten()[0]).all()):
                raise ValueError(
                    f"target 'snntorch': {kind} {name!r} has per-neuron thresholds, and snntorch's importer needs one "
                    "threshold per layer (it asserts it); export with target='generic' or norse"
                )
        return out
    if t == "norse":
        if kind == "recurrent":
            out.append(
                (
                    "recurrent",
                    f"norse 1.1.0's from_nir has no mapping for recurrent loops ({name!r}); lfp-snn's own import "
                    "reads it exactly",
                )
            )
        if not zero:
            out.append(
                (
                    f"reset/{reset}",
                    f"norse's LIF import always resets to v_reset in the step it fires; {kind} {name!r} has "
                    f"{_reset_text(reset, delay)}, so its spikes differ there. Exact alternative: train with "
                    "reset='zero' (--reset zero)",
                )
            )
        return out
    if t == "spyx":
        if kind in ("cuba", "recurrent"):
            out.append(
                (
                    kind,
                    f"spyx 1.0.0's {'CuBaLIF subtracts the threshold before the decay' if kind == 'cuba' else 'recurrent neurons are not cross-checked'} "
                    f"({name!r}): not lfp-snn's neuron. Exact in spyx: LIF / IF layers with reset='subtract', "
                    "reset_delay=True",
                )
            )
        if not (reset == "subtract" and delay):
            out.append(
                (
                    f"reset/{reset}/{delay}",
                    f"spyx's LIF subtracts θ with a one-step delay (it fires from the previous membrane); {kind} "
                    f"{name!r} has {_reset_text(reset, delay)}. Exact alternative: lfp-snn's default neuron, "
                    "reset='subtract', reset_delay=True",
                )
            )
        if not info.get("first") and info.get("bias_nonzero"):
            out.append(
                (
                    "bias",
                    f"spyx delays every layer's spikes by one step, so the layer feeding {name!r} gets its bias for "
                    "one more step than in lfp-snn, and the spikes differ. Exact alternative: no bias in the "
                    "layers after the first (nn.Linear(..., bias=False))",
                )
            )
        if info.get("after_conv") and info.get("flatten"):
            out.append(
                (
                    "flatten",
                    "spyx 1.0.0 runs convolutions channels-last and flattens (H, W, C), while NIR (and the dense "
                    "weights after the Flatten) order features (C, H, W): conv graphs with a Flatten differ there",
                )
            )
        return out
    if t == "sinabs":
        if kind in ("cuba", "recurrent"):
            raise ValueError(
                f"target 'sinabs': sinabs 3.1's from_nir has no {'CubaLIF' if kind == 'cuba' else 'recurrent'} "
                f"mapping ({name!r}); use LIF layers"
            )
        if not multi:
            out.append(
                (
                    "multispike",
                    "sinabs's layers emit floor(v/θ) spikes per step (MultiSpike) and fire at v = θ; the LIF emits "
                    "at most one, at v > θ. Exact with sinabs's defaults: train lfp_snn.MultiSpikeLIF layers; or "
                    "set every imported layer's spike_fn = sinabs.activation.SingleSpike, under which "
                    "reset='subtract', reset_delay=False runs exactly",
                )
            )
        elif m.max_spikes is not None:
            out.append(
                (
                    "maxspikes",
                    f"MultiSpikeLIF {name!r} caps its spikes at {m.max_spikes} per step and sinabs's MultiSpike does "
                    f"not: on the imported layers set spike_fn = sinabs.activation.MaxSpike({m.max_spikes})",
                )
            )
        if kind == "if":
            out.append(
                (
                    "if",
                    f"sinabs imports nir.IF ({name!r}) with its membrane clipped at -θ (min_v_mem); lfp-snn does not "
                    "clip. Exact alternative: β < 1",
                )
            )
        if not (reset == "subtract" and not delay):
            out.append(
                (
                    f"reset/{reset}/{delay}",
                    f"sinabs's neurons subtract θ in the step they fire; {kind} {name!r} has "
                    f"{_reset_text(reset, delay)}. Exact alternative: reset='subtract', reset_delay=False",
                )
            )
        return out
    # rockpool, xylo
    if kind in ("if", "recurrent"):
        raise ValueError(
            f"target {t!r}: the preset writes every neuron as a rockpool LIFTorch (nir.CubaLIF) with β < 1 and no "
            f"loop; {kind} {name!r} has {'β = 1' if kind == 'if' else 'a recurrent loop'}"
        )
    if not multi:
        out.append(
            (
                "multispike",
                "rockpool's LIFTorch emits floor(v/θ) spikes per step (up to max_spikes_per_dt = 2^16) and fires at "
                "v = θ; the LIF emits at most one, at v > θ. Exact with rockpool's defaults: train "
                "lfp_snn.MultiSpikeLIF layers; or set max_spikes_per_dt = 1 on every imported LIFTorch",
            )
        )
    elif m.max_spikes is not None and m.max_spikes != ROCKPOOL_MAX_SPIKES:
        out.append(
            (
                "maxspikes",
                f"MultiSpikeLIF {name!r} caps its spikes at {m.max_spikes} per step, rockpool's LIFTorch at "
                f"{ROCKPOOL_MAX_SPIKES}: set max_spikes_per_dt = {m.max_spikes} on the imported LIFTorch",
            )
        )
    if kind == "lif":
        out.append(
            (
                "lif",
                f"rockpool reads only nir.CubaLIF, and its synaptic current cannot be zero (it decays the input with "
                f"the current): LIF {name!r} is written as a CubaLIF with α ≈ 2^-24 and the weights divided by it, "
                "which keeps about 2^-24 of the last step's current (and rounds the weights). Exact alternative: "
                "CubaLIF layers with α = 0.5 (--neuron cuba --alpha 0.5, and a CubaLIF read-out)",
            )
        )
    if not (reset == "subtract" and not delay):
        out.append(
            (
                f"reset/{reset}/{delay}",
                f"rockpool's neurons subtract θ in the step they fire; {kind} {name!r} has "
                f"{_reset_text(reset, delay)}. Exact alternative: reset='subtract', reset_delay=False",
            )
        )
    return out
