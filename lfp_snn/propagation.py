"""The LFP engine: one forward that keeps what feedback needs, and one reverse pass, for ANNs and SNNs.

Models are ``nn.Sequential`` (nested allowed) of supported layers. A model that contains
:class:`lfp_snn.neurons.LIF` layers is spiking: its input is time-first [T, B, ...] and it runs layer by
layer over all steps at once (DESIGN.md section 2):

- a parametric layer runs once over the T·B rows (or, for a constant input, once over B rows);
- a LIF layer scans its membrane over t; its reverse scan (``lfp_snn.kernels``) yields
  g_t = R_t / (D_t + ε) for all t, which the parametric layer below turns into
  F_W = |W| ⊙ (∂I/∂W)ᵀ g (one GEMM) and R_in = X ⊙ (∂I/∂X)ᵀ g (one more GEMM, skipped when nothing below
  learns);
- spikes are kept as uint8 between the forward and the feedback.

Rules for parametric layers come from a composite (:mod:`lfp_snn.composites`). With the ε rule the LIF's g
goes straight to the layer below (the reference rule); other rules see the reward at the input current,
R^I_t = I_t ⊙ g_t (the current's ε-share of the membrane), and distribute it by their own equations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import all_finite, check_finite
from .composites import Composite, get_composite
from .kernels import lif_feedback, lif_forward
from .kernels.torch_scan import membrane
from .layers import PARAMETRIC, LinearOp, SparseSpikeLinearOp, affine_op, row_slices
from .neurons.activations import Heaviside
from .neurons.lif import LIF, check_lif_parameters
from .rewards import get_reward
from .rules import Epsilon, Rule, stabilize
from .small_beta import MembraneShare, as_membrane_share

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.Identity, Heaviside)
SHAPE_ONLY = (nn.Flatten, nn.Unflatten)
SUPPORTED = (
    *PARAMETRIC,
    LIF,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.Dropout,
    *SHAPE_ONLY,
    *ELEMENTWISE,
)


def supported_layers() -> list[str]:
    return sorted({c.__name__ for c in SUPPORTED})


def leaves(model: nn.Module, prefix: str = "", check: bool = True) -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) Sequential in order, with the names ``named_modules`` gives them; with
    ``check``, a layer LFP does not support is an error that names it."""
    if isinstance(model, nn.Sequential):
        out = []
        for name, child in model.named_children():
            out += leaves(child, f"{prefix}{name}.", check)
        return out
    name = prefix[:-1]
    if check and not isinstance(model, SUPPORTED):
        raise TypeError(
            f"layer {name or '<model>'!r} of type {type(model).__name__} is not supported by LFP; supported "
            f"layers: {', '.join(supported_layers())} inside nn.Sequential"
        )
    return [(name, model)]


def is_spiking(model: nn.Module) -> bool:
    return any(isinstance(m, LIF) for m in model.modules())


@dataclass
class _Act:
    """The activation flowing between layers. ANN: [B, ...]. SNN: [T·B, ...], or [B, ...] when
    ``constant`` (the same at every step)."""

    value: Tensor
    constant: bool = False
    binary: bool = False  # 0/1 values (spikes, or pooled/flattened spikes): stored as uint8


@dataclass
class _Frame:
    name: str
    module: nn.Module
    saved: dict = field(default_factory=dict)


@dataclass
class Trace:
    """What the forward pass kept for the feedback pass."""

    frames: list[_Frame]
    steps: int | None  # T for spiking models, None for ANNs
    batch: int
    input_constant: bool
    output: Tensor  # ANN [B, C]; SNN [T, B, C]
    output_constant: bool = False  # SNN output identical at every step (no LIF on the way)
    spike_counts: dict[str, Tensor] = field(default_factory=dict)  # per LIF layer: spikes per neuron, Σ_{t,b}
    spike_rate: dict[str, float] = field(default_factory=dict)


@dataclass
class FeedbackResult:
    """Feedback per parameter name, plus what the trainer reports."""

    feedback: dict[str, Tensor]
    output: Tensor
    reward: Tensor
    input_reward: Tensor | None
    spike_counts: dict[str, Tensor]
    spike_rate: dict[str, float]


def _store(a: _Act) -> Tensor:
    return a.value.to(torch.uint8) if a.binary else a.value


def _load(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t.to(dtype) if t.dtype == torch.uint8 else t


_check_finite = check_finite


def _check_input(model_leaves, x: Tensor, spiking: bool, steps: int | None) -> None:
    first = next((m for _, m in model_leaves if isinstance(m, tuple(PARAMETRIC))), None)
    sample_dims = {nn.Linear: None, nn.Conv1d: 2, nn.Conv2d: 3}
    extra = 1 if spiking and steps is None else 0
    if spiking and steps is None and x.dim() < 3:
        raise ValueError(
            f"expected input of shape [T, B, ...] for a spiking model (it contains LIF layers), got "
            f"{list(x.shape)}; pass steps=T to feed a static [B, ...] input at every step"
        )
    if first is not None:
        nd = sample_dims[type(first)] if type(first) in sample_dims else None
        if nd is not None and x.dim() != nd + 1 + extra:
            want = ("[T, B, " if extra else "[B, ") + ", ".join("CLHW"[:nd] if nd == 2 else "CHW") + "]"
            raise ValueError(
                f"expected input of shape {want} for {type(first).__name__}, got {list(x.shape)}"
            )
    if spiking and steps is None and x.shape[0] == 0:
        raise ValueError("expected at least one time step, got T = 0")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    _check_finite(x, "the input")


def _time_constant(x: Tensor) -> bool:
    """True for a time-first tensor that is one sample expanded over T (stride 0 on the time axis)."""
    return x.dim() >= 1 and x.shape[0] > 1 and x.stride(0) == 0


@torch.no_grad()
def forward_trace(
    model: nn.Module,
    inputs: Tensor,
    steps: int | None = None,
    keep: bool = True,
    input_noise: float = 0.0,
    generator: torch.Generator | None = None,
    composite: Composite | None = None,
    recompute: bool = False,
    state: dict[str, Tensor] | None = None,
    start: int = 0,
    cache: dict[str, Tensor] | None = None,
) -> Trace:
    """Run ``model`` layer by layer and keep what the feedback needs (nothing when ``keep=False``).

    ``input_noise`` > 0 adds Gaussian noise N(0, σ²) to the input of every parametric layer (the paper's
    trick that lets Heaviside networks learn); a constant input gets the same noise at every step. Noise and
    dropout masks draw from ``generator``.
    With a ``composite``, only what its rules need is kept: a parametric layer under a LIF layer with the ε
    rule keeps no pre-activation (the LIF's firing potential is all its feedback needs).
    ``recompute=True`` keeps not even the potential of a LIF layer that sits on a parametric layer: the
    feedback recomputes its current (one more GEMM) and scan from the spikes kept below — activation
    checkpointing, for the least memory.

    ``state`` (spiking models) carries the LIF membranes between calls that cover consecutive stretches of
    time: each LIF layer starts from ``state[name]`` (U_0 = 0 when absent) and leaves its membrane after the
    last step there. A LIF layer with a constant input current and no entry starts from where the same
    current would have brought it after ``start`` steps (recomputed: cheaper than storing it).
    ``cache``: a dict that keeps the outputs of parametric layers whose input is the same at every step, for
    further calls on the same input with the same weights (the stretches of one sequence).

    Args:
        inputs: ANN [B, ...]; SNN [T, B, ...], or [B, ...] with ``steps=T`` (constant encoding). A
            [T, B, ...] tensor made by ``x.expand(T, ...)`` is recognised as constant too.
    """
    model_leaves = leaves(model)
    spiking = any(isinstance(m, LIF) for _, m in model_leaves)
    if not spiking and steps is not None:
        raise ValueError("steps= is for spiking models (with LIF layers); this model has none")
    _check_input(model_leaves, inputs, spiking, steps)
    T = None
    if spiking:
        if steps is not None:
            T, act = steps, _Act(inputs, constant=True)
        elif _time_constant(inputs):
            T, act = inputs.shape[0], _Act(inputs[0], constant=True)
        else:
            T, act = inputs.shape[0], _Act(inputs.reshape(-1, *inputs.shape[2:]))
    else:
        act = _Act(inputs)
    batch = act.value.shape[0] if (not spiking or act.constant) else act.value.shape[0] // T
    input_constant = act.constant
    frames: list[_Frame] = []
    counts: dict[str, Tensor] = {}
    rates: dict[str, float] = {}
    if inputs.is_floating_point():
        dt = inputs.dtype
    else:  # spikes or counts as integers: compute in the parameters' dtype
        dt = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
    for k, (name, m) in enumerate(model_leaves):
        fr = _Frame(name, m, {"constant": act.constant})
        if isinstance(m, nn.Linear) and act.value.dtype == torch.uint8 and input_noise == 0:
            x = act.value  # compact spikes: the Linear converts blocks of rows as it goes
        else:
            x = act.value.to(dt) if act.value.dtype != dt else act.value
        if isinstance(m, tuple(PARAMETRIC)):
            if input_noise > 0:
                x = x + input_noise * torch.randn(
                    x.shape, generator=generator, dtype=x.dtype, device=x.device
                )
                act = _Act(x, act.constant)
            at_input = all(isinstance(f.module, SHAPE_ONLY) for f in frames)
            op = _layer_op(m, name, x, at_input, cache, start, keep)
            if cache is not None and act.constant and name in cache:
                z = cache[name]
            else:
                z = op.forward(x, m.weight.to(dt), None if m.bias is None else m.bias.to(dt))
                if cache is not None and act.constant:
                    cache[name] = z
            if keep:
                fr.saved.update(op=op, x=_store(act))
                under_lif = k + 1 < len(model_leaves) and isinstance(model_leaves[k + 1][1], LIF)
                if composite is None or not under_lif or not isinstance(composite.rule_for(name, m), Epsilon):
                    fr.saved["z"] = z
            act = _Act(z, act.constant)
        elif isinstance(m, LIF):
            check_lif_parameters(m.parameters_)
            current = x if act.constant else x.reshape(T, -1, *x.shape[1:])
            beta, thr = m.beta.to(dt), m.threshold.to(dt)
            below = frames[-1] if k > 0 and isinstance(model_leaves[k - 1][1], tuple(PARAMETRIC)) else None
            # the potential may overwrite the current when nothing else holds it (a fresh GEMM output)
            in_place = keep and not act.constant and below is not None and "z" not in below.saved
            mem0 = None
            if state is not None:
                mem0 = state.get(name)
                if mem0 is None and start > 0 and act.constant:
                    mem0 = _advance(m, current, beta, thr, start, T)
            spikes, pot = lif_forward(
                current,
                beta,
                thr,
                m.reset,
                m.reset_delay,
                mem0,
                T if act.constant else None,
                m.backend,
                out=current if in_place else None,
                # spikes for a Linear layer in training stay uint8 (4x less memory; exact)
                spike_dtype=torch.uint8
                if keep and k + 1 < len(model_leaves) and type(model_leaves[k + 1][1]) is nn.Linear
                else None,
            )
            if state is not None:
                state[name] = _last_membrane(m, pot, spikes, thr)
            if keep:
                fr.saved.update(beta=beta, thr=thr, mem0=mem0)
                if act.constant:  # a [B, ...] current is cheaper to keep than the [T, B, ...] potential
                    fr.saved["current"] = current
                elif not (recompute and below is not None):  # (recompute: I = W x + b again in the feedback)
                    fr.saved["pot"] = pot
                    if below is None:
                        fr.saved["current"] = current
            del pot, current, x
            c = _spike_counts(spikes)
            counts[name] = c
            rates[name] = float(c.sum()) / max(spikes.numel(), 1)
            act = _Act(spikes.reshape(-1, *spikes.shape[2:]), False, True)
        elif isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            fn = F.max_pool1d if isinstance(m, nn.MaxPool1d) else F.max_pool2d
            y, idx = fn(x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, return_indices=True)
            if keep:
                fr.saved.update(idx=idx, shape=x.shape)
            act = _Act(y, act.constant, act.binary)
        elif isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            if keep:
                fr.saved.update(x=_store(act))
            act = _Act(m(x), act.constant)
        elif isinstance(m, SHAPE_ONLY):
            if keep:
                fr.saved.update(shape=x.shape)
            act = _Act(m(x), act.constant, act.binary)
        elif isinstance(m, nn.Dropout):
            if m.training and m.p > 0:
                if act.constant:  # a mask per step breaks the constant shortcut: expand to T·B rows
                    x = x.unsqueeze(0).expand(T, *x.shape).reshape(-1, *x.shape[1:])
                    act = _Act(x, False, act.binary)
                    fr.saved["constant"] = False
                mask = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= m.p
                if keep:
                    fr.saved.update(mask=mask, scale=1.0 / (1.0 - m.p))
                act = _Act(x * mask / (1.0 - m.p), act.constant)
        else:  # element-wise activation
            y = m(x)
            act = _Act(y, act.constant, isinstance(m, Heaviside) or (act.binary and isinstance(m, nn.ReLU)))
        frames.append(fr)
    out = act.value
    if spiking:
        out = out.unsqueeze(0).expand(T, *out.shape) if act.constant else out.reshape(T, -1, *out.shape[1:])
    return Trace(frames, T, batch, input_constant, out, act.constant and spiking, counts, rates)


def _spike_counts(spikes: Tensor) -> Tensor:
    """Spikes per neuron, summed over time and batch; a few steps at a time, since summing uint8 spikes
    makes torch convert its input to int64 first (8x the spikes' memory at once otherwise)."""
    parts = (spikes[sl].sum(dim=(0, 1)) for sl in row_slices(spikes.shape[0], spikes[0].numel()))
    total = next(parts)
    for p in parts:
        total += p
    return total


def _advance(m: LIF, current: Tensor, beta: Tensor, thr: Tensor, steps: int, piece: int) -> Tensor:
    """The membrane U of LIF ``m`` after ``steps`` steps of the constant [B, ...] ``current`` from U_0 = 0,
    scanned ``piece`` steps at a time (so no [steps, B, ...] buffer)."""
    mem = None
    for t0 in range(0, steps, piece):
        n = min(piece, steps - t0)
        s, v = lif_forward(
            current, beta, thr, m.reset, m.reset_delay, mem, n, m.backend, spike_dtype=torch.uint8
        )
        mem = _last_membrane(m, v, s, thr)
    return mem


def _last_membrane(m: LIF, pot: Tensor, spikes: Tensor, thr: Tensor) -> Tensor:
    """U after the last step of a scan (a copy: the potential may be written over later)."""
    return membrane(pot[-1:], spikes[-1:].to(pot.dtype), thr, m.reset, m.reset_delay)[0].clone()


def _layer_op(m: nn.Module, name: str, x: Tensor, at_input: bool, cache: dict | None, start: int, keep: bool):
    """The affine op of parametric layer ``m``. A sparse 0/1 uint8 input to the first layer (event data)
    gets :class:`SparseSpikeLinearOp` (index lists instead of dense GEMMs); over stretches of time the
    index a stretch's first pass made (``keep=False``) is reused, then released, by its second."""
    if not (at_input and isinstance(m, nn.Linear) and x.dtype == torch.uint8):
        return affine_op(m)
    key = (name, start)
    if cache is not None and key in cache:
        return cache.pop(key) if keep else cache[key]
    if not SparseSpikeLinearOp.suits(x):
        return affine_op(m)
    op = SparseSpikeLinearOp(m, x)
    if cache is not None and not keep:
        cache[key] = op
    return op


def run(model: nn.Module, inputs: Tensor, steps: int | None = None) -> Tensor:
    """Inference: the model's output (SNN: output spikes [T, B, C]) with nothing kept for feedback."""
    return forward_trace(model, inputs, steps, keep=False).output


def _wants_input(frames: list[_Frame], i: int) -> bool:
    return any(any(True for _ in f.module.parameters(recurse=False)) for f in frames[:i])


@torch.no_grad()
def propagate(
    trace: Trace,
    reward: Tensor,
    composite: Composite,
    eps: float = 1e-6,
    need_input_reward: bool = False,
    matmul_dtype: torch.dtype | None = None,
    release: bool = False,
    membrane_share: MembraneShare | None = None,
    carry: dict[str, Tensor] | None = None,
    into: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """The reverse pass: reward at the output -> feedback per parameter (and the reward at the input).

    Between layers the reward is [B, ...] (ANN, or SNN activations that are the same at every step, where
    the reward is summed over time: every rule is linear in the reward) or [T·B, ...] (time-resolved).
    ``release=True`` frees each layer's saved tensors as soon as it is done (the trace is spent).
    ``membrane_share`` (off when None or zero) gives silent, near-firing steps of a LIF layer a share of the
    reward at the ε layer above it (:mod:`lfp_snn.small_beta`).
    ``carry`` (a dict, for a trace that covers one stretch of time, see :func:`forward_trace`'s ``state``)
    holds per LIF layer the membrane's share C handed back from the stretch after this one; on return it
    holds the share this stretch hands to the one before. ``into``: feedback already summed (e.g. over
    other stretches); each layer's feedback is added to it as soon as it is made, and it is returned.
    """
    membrane_share = as_membrane_share(membrane_share)
    T = trace.steps
    frames = trace.frames
    if reward.shape != trace.output.shape:
        raise ValueError(
            f"the reward must have the outputs' shape {list(trace.output.shape)}, got {list(reward.shape)}"
        )
    _check_finite(reward, "the reward")
    if T is None:
        r, r_constant = reward, False
    elif trace.output_constant:
        r, r_constant = reward.sum(0), True
    else:
        r, r_constant = reward.reshape(-1, *reward.shape[2:]), False
    owned = False  # r is a buffer of ours that may be overwritten
    normalized = False  # r holds g = R / (D + ε) from the LIF layer just above
    fb: dict[str, Tensor] = {} if into is None else into
    for i in range(len(frames) - 1, -1, -1):
        fr = frames[i]
        m, s = fr.module, fr.saved
        if T is not None and s["constant"] and not r_constant and not isinstance(m, LIF):
            r, r_constant, owned = r.reshape(T, -1, *r.shape[1:]).sum(0), True, True
        if isinstance(m, tuple(PARAMETRIC)):
            need = need_input_reward or _wants_input(frames, i)
            rule: Rule = composite.rule_for(fr.name, m)
            x = s["x"]  # may be uint8 spikes: the rules convert as they go
            wkey = f"{fr.name}.weight"
            below = None if membrane_share is None else _lif_below(frames, i, rule)
            if below is not None:  # membrane-aware ε: S + λ a in place of the spikes S
                a = _near_firing(frames[below], membrane_share, frames, below, T).reshape(x.shape)
                g = r if normalized else r / stabilize(s["z"], rule.eps)
                xw = x if membrane_share.weight == 0 else torch.add(x, a, alpha=membrane_share.weight)
                xi = (
                    x
                    if not need or membrane_share.input == 0
                    else torch.add(x, a, alpha=membrane_share.input)
                )
                del a
                lf = rule.normalized(
                    s["op"], xw, g, need, matmul_dtype, x_input=xi, weight_into=fb.pop(wkey, None)
                )
                del xw, xi, g
            elif normalized and isinstance(rule, Epsilon):
                lf = rule.normalized(s["op"], x, r, need, matmul_dtype, weight_into=fb.pop(wkey, None))
            else:
                if normalized:  # the current's share of the membrane: R^I = I ⊙ g
                    r = r * s["z"]
                lf = rule(s["op"], x, s["z"], r, need)
            _add_feedback(fb, wkey, lf.weight)
            if lf.bias is not None:
                _add_feedback(fb, f"{fr.name}.bias", lf.bias)
            r, normalized, owned = lf.input_reward, False, True
            del lf
            if release:
                s.clear()
            if r is None:
                break
        elif isinstance(m, LIF):
            pot = _potential(frames, i, T)
            mem0 = s.get("mem0")
            if r_constant:
                rt, owned = r.unsqueeze(0).expand(T, *r.shape).contiguous(), True
            else:
                rt = r.reshape(T, -1, *r.shape[1:]).contiguous()
            if (
                carry is not None and fr.name in carry
            ):  # C from the later stretch joins the last step's reward
                if not owned:
                    rt, owned = rt.clone(), True
                rt[-1].add_(carry.pop(fr.name))
            g = lif_feedback(
                rt,
                pot,
                s["beta"],
                s["thr"],
                m.reset,
                m.reset_delay,
                mem0,
                eps,
                out=rt if owned else None,
                backend=m.backend,
            )
            del pot, rt
            if carry is not None and mem0 is not None:  # C_1 = β P_1 g_1, handed to the earlier stretch
                carry[fr.name] = _previous_membrane(mem0, s["thr"], m).mul_(s["beta"]).mul_(g[0])
            current_below = s.get("current")
            if release:
                s.clear()
            r, r_constant, owned = g.reshape(-1, *g.shape[2:]), False, True
            if i > 0 and isinstance(frames[i - 1].module, tuple(PARAMETRIC)):
                normalized = True
            else:  # no parametric layer below: the current's share goes on as an ordinary reward
                cur = current_below
                r = (g * (cur if cur.dim() == g.dim() else cur.unsqueeze(0))).reshape(-1, *g.shape[2:])
            del g, current_below  # r holds what goes on; a stale name would keep a [T, B, ...] buffer alive
        else:
            r_in = _backward_simple(fr, r, eps)
            owned = owned or r_in is not r
            r = r_in
        if release:
            s.clear()
    return fb, r


def _add_feedback(fb: dict[str, Tensor], key: str, value: Tensor) -> None:
    if key in fb:
        fb[key].add_(value)
    else:
        fb[key] = value


def _potential(frames: list[_Frame], i: int, T: int) -> Tensor:
    """The firing potential V [T, B, ...] of LIF frame i: kept, or recomputed from what was kept."""
    fr = frames[i]
    m, s = fr.module, fr.saved
    if "pot" in s:
        return s["pot"]
    if "current" in s:  # constant current: run the forward scan again from the [B, ...] current
        return lif_forward(
            s["current"],
            s["beta"],
            s["thr"],
            m.reset,
            m.reset_delay,
            s.get("mem0"),
            T,
            m.backend,
            spike_dtype=torch.uint8,
        )[1]
    # recompute mode: the current from the layer below's saved input, then the scan
    below = frames[i - 1]
    op, xb = below.saved["op"], below.saved["x"]
    w, b = below.module.weight, below.module.bias
    z = op.forward(xb if isinstance(op, LinearOp) else xb.to(w.dtype), w, b)
    z = z.reshape(T, -1, *z.shape[1:])
    return lif_forward(
        z,
        s["beta"],
        s["thr"],
        m.reset,
        m.reset_delay,
        s.get("mem0"),
        None,
        m.backend,
        out=z,
        spike_dtype=torch.uint8,
    )[1]


def _previous_membrane(mem0: Tensor, thr: Tensor, m: LIF) -> Tensor:
    """P of a stretch's first step from the membrane U it starts from, as the feedback scan forms it: U, or
    U (1 - H(U - θ)) for a delayed reset to zero (a new tensor)."""
    if m.reset == "zero" and m.reset_delay:
        return mem0.addcmul(mem0, torch.gt(mem0, thr).to(mem0.dtype), value=-1)
    return mem0.clone()


def _lif_below(frames: list[_Frame], i: int, rule: Rule) -> int | None:
    """Index of the LIF frame whose spikes are parametric frame i's input (through shape-only layers), or
    None when its input does not come from a LIF layer. Raises where the membrane-aware rule cannot apply."""
    j = i - 1
    while j >= 0 and isinstance(frames[j].module, (*SHAPE_ONLY, nn.Identity)):
        j -= 1
    if j < 0 or not any(isinstance(f.module, LIF) for f in frames[: j + 1]):
        return None
    m = frames[j].module
    if not isinstance(m, LIF):
        raise ValueError(
            f"membrane_share: layer {frames[i].name!r} takes its input from {type(m).__name__} "
            f"{frames[j].name!r}, not directly from a LIF layer (only Flatten/Unflatten/Identity may sit "
            "between them); turn membrane_share off for this model"
        )
    if not isinstance(rule, Epsilon):
        raise ValueError(
            f"membrane_share is a variant of the ε rule; layer {frames[i].name!r} uses {rule.name!r}"
        )
    return j


def _near_firing(fr: _Frame, share: MembraneShare, frames: list[_Frame], j: int, T: int) -> Tensor:
    """a [T, B, ...] of LIF frame j; its potential is kept in the frame for the LIF's own feedback."""
    if "pot" not in fr.saved:
        fr.saved["pot"] = _potential(frames, j, T)
    return share.near_firing(fr.saved["pot"], fr.saved["thr"])


def _backward_simple(fr: _Frame, r: Tensor, eps: float) -> Tensor:
    m, s = fr.module, fr.saved
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):  # route to the arg-max (torch's choice on ties)
        shape, idx = s["shape"], s["idx"]
        out = r.new_zeros(shape[0], shape[1], idx.new_tensor(shape[2:]).prod().item())
        return out.scatter_add_(2, idx.flatten(2), r.flatten(2)).reshape(shape)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):  # a parameter-free ε layer
        x = _load(s["x"], r.dtype).detach().requires_grad_(True)
        with torch.enable_grad():
            z = m(x)
            (grad,) = torch.autograd.grad(z, x, r / stabilize(z.detach(), eps))
        return x.detach() * grad
    if isinstance(m, SHAPE_ONLY):
        return r.reshape(s["shape"])
    if isinstance(m, nn.Dropout) and "mask" in s:
        return r * s["mask"] * s["scale"]
    return r  # element-wise activations (and dropout in eval mode) pass the reward through


def feedback_result(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    reward: Callable | str = "auto",
    rule: str | Rule | Composite = "epsilon",
    *,
    steps: int | None = None,
    eps: float = 1e-6,
    input_reward: bool = False,
    write_grad: bool = False,
    input_noise: float = 0.0,
    generator: torch.Generator | None = None,
    matmul_dtype: torch.dtype | None = None,
    micro_batch: int | None = None,
    recompute: bool = False,
    membrane_share: MembraneShare | float | None = None,
    time_chunk: int | None = None,
) -> FeedbackResult:
    """Forward, reward and reverse pass in one call; see :func:`feedback`. Also returns the outputs, the
    reward, the reward at the input (with ``input_reward=True``) and spike counts per LIF layer.

    ``micro_batch=m`` runs the batch in slices of m samples and sums their feedback: the feedback is a sum
    over samples, so the result is the same (up to float summation order) while the memory for activations
    shrinks by B/m. The reward must then be per sample (all rewards here are). ``recompute=True`` keeps
    spikes only and recomputes currents and membranes in the feedback (see :func:`forward_trace`).
    ``membrane_share`` (a :class:`lfp_snn.small_beta.MembraneShare`, or a number λ for its input share)
    turns on the membrane-aware ε rule for spiking models: silent steps that came close to firing get a
    share of the reward (off by default: the reference rule).

    ``time_chunk=K`` (spiking models) runs the sequence in stretches of K steps and keeps only the LIF
    membranes at the stretch boundaries: a first forward pass over all stretches gives the outputs (the
    reward needs all of them), then, from the last stretch to the first, each stretch's forward is run
    again and its feedback taken, the membrane's share C crossing each boundary backwards. The result is
    the same (up to float summation order) for one more forward pass; activation memory falls from
    O(T·B·N) to O(K·B·N + (T/K)·B·N). Combines with ``micro_batch``.
    """
    composite = get_composite(rule, eps)
    membrane_share = as_membrane_share(membrane_share)
    batch_axis = 1 if (is_spiking(model) and steps is None) else 0
    B = inputs.shape[batch_axis] if inputs.dim() > batch_axis else 0
    if micro_batch is not None and (
        isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1
    ):
        raise ValueError(f"micro_batch must be an integer >= 1, got {micro_batch!r}")
    if time_chunk is not None:
        _check_time_chunk(model, time_chunk, input_noise)
    opts = dict(
        reward=reward,
        composite=composite,
        steps=steps,
        eps=eps,
        input_reward=input_reward,
        input_noise=input_noise,
        generator=generator,
        matmul_dtype=matmul_dtype,
        recompute=recompute,
        membrane_share=membrane_share,
        time_chunk=time_chunk,
    )
    if micro_batch is None or micro_batch >= B:
        res = _feedback_once(model, inputs, labels, **opts)
    else:
        parts = [
            _feedback_once(
                model,
                inputs.narrow(batch_axis, a, min(micro_batch, B - a)),
                labels[a : a + micro_batch],
                **opts,
            )
            for a in range(0, B, micro_batch)
        ]
        spiking = is_spiking(model)
        res = _merge(
            parts, 1 if spiking else 0, 1 if spiking and steps is None and not _time_constant(inputs) else 0
        )
    if write_grad:
        write_gradients(model, res.feedback)
    return res


def _merge(parts: list[FeedbackResult], out_axis: int, rin_axis: int) -> FeedbackResult:
    """One result from micro-batch results: feedback and spike counts summed, the rest concatenated."""
    fb = parts[0].feedback
    for p in parts[1:]:
        for k, v in p.feedback.items():
            fb[k].add_(v)
    sizes = [p.output.shape[out_axis] for p in parts]
    counts = {k: sum(p.spike_counts[k] for p in parts) for k in parts[0].spike_counts}
    rates = {
        k: sum(p.spike_rate[k] * n for p, n in zip(parts, sizes)) / sum(sizes) for k in parts[0].spike_rate
    }
    rin = None
    if parts[0].input_reward is not None:
        rin = torch.cat([p.input_reward for p in parts], dim=rin_axis)
    return FeedbackResult(
        fb,
        torch.cat([p.output for p in parts], out_axis),
        torch.cat([p.reward for p in parts], out_axis),
        rin,
        counts,
        rates,
    )


def _feedback_once(
    model,
    inputs,
    labels,
    *,
    reward,
    composite,
    steps,
    eps,
    input_reward,
    input_noise,
    generator,
    matmul_dtype,
    recompute,
    membrane_share,
    time_chunk=None,
) -> FeedbackResult:
    T = steps if steps is not None else inputs.shape[0]
    if time_chunk is not None and time_chunk < T:
        return _feedback_chunked(
            model,
            inputs,
            labels,
            time_chunk,
            reward=reward,
            composite=composite,
            steps=steps,
            eps=eps,
            input_reward=input_reward,
            matmul_dtype=matmul_dtype,
            recompute=recompute,
            membrane_share=membrane_share,
        )
    trace = forward_trace(
        model,
        inputs,
        steps,
        input_noise=input_noise,
        generator=generator,
        composite=composite,
        recompute=recompute,
    )
    r = _reward(reward, trace.steps is not None, trace.output, labels)
    fb, rin = propagate(
        trace,
        r,
        composite,
        eps,
        need_input_reward=input_reward,
        matmul_dtype=matmul_dtype,
        release=True,
        membrane_share=membrane_share,
    )
    if rin is not None and trace.steps is not None and not trace.input_constant:
        rin = rin.reshape(trace.steps, -1, *rin.shape[1:])  # time-varying input: [T, B, ...] like the input
    check_finite_feedback(fb)
    return FeedbackResult(
        fb, trace.output, r, rin if input_reward else None, trace.spike_counts, trace.spike_rate
    )


def _check_time_chunk(model: nn.Module, time_chunk, input_noise: float) -> None:
    if isinstance(time_chunk, bool) or not isinstance(time_chunk, int) or time_chunk < 1:
        raise ValueError(f"time_chunk must be an integer >= 1 (steps per stretch), got {time_chunk!r}")
    if not is_spiking(model):
        raise ValueError("time_chunk is for spiking models (with LIF layers); this model has none")
    if input_noise > 0:
        raise ValueError(
            f"time_chunk cannot be combined with input_noise={input_noise} (each stretch would draw other "
            "noise on its second forward pass); use micro_batch to save memory instead"
        )
    for name, m in leaves(model):
        if isinstance(m, nn.Dropout) and m.training and m.p > 0:
            raise ValueError(
                f"time_chunk cannot be combined with active dropout (layer {name!r}, p={m.p}): the second "
                "forward pass would draw other masks; call model.eval() or use micro_batch instead"
            )


def _feedback_chunked(
    model,
    inputs,
    labels,
    K,
    *,
    reward,
    composite,
    steps,
    eps,
    input_reward,
    matmul_dtype,
    recompute,
    membrane_share,
) -> FeedbackResult:
    """:func:`feedback_result` with ``time_chunk=K``: see there."""
    constant = steps is not None or _time_constant(inputs)
    T = steps if steps is not None else inputs.shape[0]
    x0 = inputs if steps is not None else inputs[0] if constant else None
    starts = list(range(0, T, K))

    def piece(t0: int):  # (input, steps= for forward_trace, number of steps)
        n = min(K, T - t0)
        return (x0, n, n) if constant else (inputs[t0 : t0 + n], None, n)

    # pass 1: outputs and spike counts; keep the membranes where stretches begin
    state: dict[str, Tensor] = {}
    cache: dict[str, Tensor] = {}  # currents of layers with a constant input: the same in every stretch
    kept: dict[int, dict[str, Tensor]] = {}
    outputs, counts, rates = [], {}, {}
    for t0 in starts:
        x, st, n = piece(t0)
        tr = forward_trace(model, x, st, keep=False, state=state, start=t0, cache=cache)
        if t0 + n < T:  # a LIF on a constant current recomputes its start cheaply: not kept
            on_constant = {f.name for f in tr.frames if isinstance(f.module, LIF) and f.saved["constant"]}
            kept[t0 + n] = {k: v for k, v in state.items() if k not in on_constant}
        outputs.append(tr.output)
        for k, c in tr.spike_counts.items():
            counts[k] = counts[k] + c if k in counts else c
            rates[k] = rates.get(k, 0.0) + tr.spike_rate[k] * n / T
        del tr
    del state
    output = torch.cat(outputs)
    del outputs
    r = _reward(reward, True, output, labels)
    if r.shape != output.shape:
        raise ValueError(f"the reward must have the outputs' shape {list(output.shape)}, got {list(r.shape)}")
    # pass 2: from the last stretch to the first, forward again and take the feedback
    carry: dict[str, Tensor] = {}
    fb: dict[str, Tensor] = {}
    rins: list[Tensor] = []
    for t0 in reversed(starts):
        x, st, n = piece(t0)
        tr = forward_trace(
            model,
            x,
            st,
            composite=composite,
            recompute=recompute,
            state=kept.pop(t0, {}),
            start=t0,
            cache=cache,
        )
        _, rin = propagate(
            tr,
            r[t0 : t0 + n],
            composite,
            eps,
            need_input_reward=input_reward,
            matmul_dtype=matmul_dtype,
            release=True,
            membrane_share=membrane_share,
            carry=carry,
            into=fb,
        )
        del tr
        if input_reward and rin is not None:
            if not constant:
                rins.append(rin.reshape(n, -1, *rin.shape[1:]))
            elif rins:  # a constant input's reward is summed over time
                rins[0].add_(rin)
            else:
                rins.append(rin)
    rin = None
    if input_reward and rins:
        rin = rins[0] if constant else torch.cat(rins[::-1])
    check_finite_feedback(fb)
    return FeedbackResult(fb, output, r, rin, counts, rates)


def _reward(reward, spiking: bool, output: Tensor, labels: Tensor) -> Tensor:
    """The reward tensor for ``output``; ``"auto"``: the sequence reward for SNNs, the sigmoid one for ANNs."""
    r = get_reward(("sequence" if spiking else "sigmoid") if reward == "auto" else reward)(output, labels)
    if not isinstance(r, Tensor):
        raise TypeError(f"the reward callable must return a tensor, got {type(r).__name__}")
    return r


def check_finite_feedback(fb: dict[str, Tensor]) -> None:
    """LFP-0 (ε = 0) divides by zero where a pre-activation is exactly 0: say so instead of training on NaN."""
    for k, v in fb.items():
        if not all_finite(v):
            raise ValueError(
                f"the feedback for {k!r} contains NaN or inf; with LFP-0 (eps=0) a pre-activation of "
                "exactly 0 divides by zero: use a small eps (rule 'epsilon')"
            )


def feedback(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    reward: Callable | str = "auto",
    rule: str | Rule | Composite = "epsilon",
    *,
    steps: int | None = None,
    eps: float = 1e-6,
    write_grad: bool = False,
) -> dict[str, Tensor]:
    """LFP feedback for every parameter of ``model``, summed over the batch (and positions and time).

    Args:
        model: ``nn.Sequential`` of supported layers (see :func:`supported_layers`); with LIF layers it is a
            spiking network and ``inputs`` are [T, B, ...].
        labels: [B] class indices.
        reward: a callable ``(outputs, labels) -> reward`` shaped like the outputs, a name from
            :data:`lfp_snn.rewards.REWARDS`, or ``"auto"``: the sequence reward (Eq. A.16) for spiking models,
            the sigmoid reward (Eq. 7) for ANNs.
        rule: a preset name (``"epsilon"``, ``"zplus-zminus"``, ``"alpha2-beta1"``, ...), a Rule or a Composite.
        write_grad: also set ``p.grad = -feedback`` so that any ``torch.optim`` optimiser takes the step.
    Returns:
        ``{name: feedback}`` keyed like ``model.named_parameters()``.
    """
    return feedback_result(
        model, inputs, labels, reward, rule, steps=steps, eps=eps, write_grad=write_grad
    ).feedback


def write_gradients(model: nn.Module, fb: dict[str, Tensor], consume: bool = False) -> None:
    """Set ``p.grad = -feedback`` (LFP maximises the reward; optimisers minimise).

    ``consume=True`` negates the feedback tensors in place and uses them as the gradients (no copy; ``fb``
    then holds the gradients)."""
    for name, p in model.named_parameters():
        if name not in fb:
            continue
        f = fb[name]
        if p.grad is None:
            p.grad = f.neg_() if consume and f.dtype == p.dtype else -f.to(p.dtype)
        else:
            torch.neg(f.to(p.dtype), out=p.grad)
