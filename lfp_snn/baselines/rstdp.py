"""Reward-modulated STDP (R-STDP): a gradient-free baseline that trains the same spiking networks.

A three-factor local rule: a pre/post spike-timing term (STDP) per synapse, gated by a reward that says
whether the network classified the sample correctly. No gradient, no surrogate and no feedback through the
network: each layer learns from its own input, its own output spikes and one number per sample (per output
neuron at the read-out).

The rule, per plastic layer ℓ (a Linear or Conv layer whose output drives a LIF layer; x_t its input at step
t, spikes or the encoded input; s_t the spikes of the LIF it drives) and per sample b, traces starting at 0:

    pre-synaptic trace    a_t = λ a_{t-1} + x_t
    post-synaptic trace   q_t = λ q_{t-1} + s_t
    eligibility (Linear)  e_ij = Σ_t ( A₊ s_{t,i} a_{t,j}  −  A₋ q_{t-1,i} x_{t,j} )

The input at the same step counts as causal (in the discrete LIF the input at t causes the spike at t), so
potentiation pairs s_t with a_t, which holds x_t, and depression pairs x_t with the post trace up to t-1
only. For a convolution the same with the convolution's correlation structure,

    e = Σ_t A₊ (∂(W * a_t)/∂W)ᵀ s_t  −  A₋ (∂(W * x_t)/∂W)ᵀ q_{t-1},

the weight gradient of the convolution with "input" a_t and "output gradient" s_t (summed over positions;
for a 1x1 convolution the Linear formula at every position).

Reward: r_b = +1 when the prediction ŷ_b (the argmax of the output spike counts Σ_t S_t, as in evaluation; a
sample whose read-out is silent counts as wrong) equals the label y_b, else −1. Modulators:

    output layer:   M_{b,i} = r_b [i = ŷ_b]         only the decision neuron's synapses change: reinforced
                                                    when right, depressed when wrong (Mozafari et al. 2018)
    hidden layers:  M_b = r_b − r̄,  r̄ = (1/B) Σ_b r_b     (``rstdp_baseline``, default; off: M_b = r_b)

    ΔW_ij = (1/B) Σ_b ( M_{b,i} e_{b,ij} + τ_{b,i} e_{b,ŷ_b j} )       (hidden layers: τ = 0; for a
            convolution i is the output channel and position, M per sample)

with the target term τ_{b,i} = [r_b = −1] [i = y_b] (``rstdp_target``):

- ``"decision"`` (default; ``true`` means the same): on a wrong sample the target neuron's synapses are
  potentiated with the *decision neuron's* eligibility e_{b,ŷ_b j}, i.e. as if the target had fired the
  decision neuron's spike train (a teacher spike train). What the wrong neuron loses the right one gains,
  and a target that has never fired can start to fire.
- ``"own"``: the target neuron's own eligibility, M_{b,y_b} = +1 on a wrong sample (and τ = 0). This does
  nothing for a target that did not fire (its eligibility is zero).
- ``"none"`` (``false``): pure R-STDP, τ = 0.

Two choices depart from the plain form (hidden M_b = r_b, the target's own eligibility), each an option that
restores it: on the default digits network (64-256-10, T = 10) the plain form went silent within the first
epoch at every learning rate tried (1e-4 to 1e-2, Adam and SGD; test accuracy 0.10): while most samples
are wrong, a global reward r_b = −1 depresses every active hidden synapse (an uncentred reward makes R-STDP
anti-Hebbian; subtracting its mean is the usual remedy, Frémaux et al. 2010), and half the output neurons
never fired at initialisation, so their own eligibility stayed zero and the target term could not reach them.

The step writes ``p.grad = −ΔW`` for every weight, as LFP writes ``p.grad = −F``: the run's optimiser (Adam
or SGD with its learning rate, after the trainer's update clipping) then moves the weights along ΔW, so
R-STDP gets the same tuning machinery as LFP. Biases are not plastic under R-STDP: their ``grad`` is set to
zero (an optimiser with weight decay still decays them, as it decays the weights).

Options (``TrainConfig.extra``): ``stdp_decay`` λ in [0, 1) (default 0.8), ``stdp_a_plus`` A₊ >= 0 (1.0),
``stdp_a_minus`` A₋ >= 0 (1.0), ``rstdp_target`` ("decision", "own" or "none"; default "decision"),
``rstdp_baseline`` (true/false, default true).

The forward pass runs the model's own modules: every parametric, pooling and shape layer on all T·B rows at
once, each LIF layer through its own scan (``LIF.__call__``, the kernels of lfp-snn's engine), keeping the
per-step input of each plastic layer and the per-step spikes of each LIF layer; the traces are a loop over
t, everything else is vectorised over the batch and the neurons. Models: an ``nn.Sequential`` (e.g.
:class:`lfp_snn.SpikingSequential`, nested allowed) of Linear/Conv1d/Conv2d, MaxPool/AvgPool, Flatten/
Unflatten and :class:`lfp_snn.LIF` layers in which every Linear/Conv drives a LIF directly, every LIF is
driven by one, and the last layer is the read-out LIF with output [T, B, classes]. Other neurons (CubaLIF,
AdaptiveLIF, RecurrentLIF), other layers (BatchNorm, Dropout, activations) and residual graphs are refused
with an error naming the layer.

Limits: the eligibility of a synapse is non-zero only where its post-synaptic neuron fires, so a hidden
neuron that never fires never learns, and a sample with a silent read-out changes no output weight; the
hidden layers get one scalar per sample, with no credit assignment per neuron beyond its own timing; with
A₊ = A₋ and a constant input the potentiation and depression of a regularly firing neuron nearly cancel,
so the hidden layers learn from spike timing only; nothing bounds the weights, so with a long run the
reinforced read-out neurons saturate (fire at every step, tying the counts) and the accuracy falls again;
the rule is not the gradient of any loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..engine import SHAPE_ONLY, leaves
from ..neurons import LIF
from ..ops import PARAMETRIC
from ..rewards import check_labels

POOLING = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
STATELESS = (*POOLING, *SHAPE_ONLY)
"""Layers R-STDP runs between the plastic blocks, on all T·B rows at once."""

ACCEPTED = "Linear, Conv1d, Conv2d, MaxPool1d/2d, AvgPool1d/2d, Flatten, Unflatten and LIF"

OPTIONS = {
    "stdp_decay": 0.8,
    "stdp_a_plus": 1.0,
    "stdp_a_minus": 1.0,
    "rstdp_target": "decision",
    "rstdp_baseline": True,
}
"""The ``TrainConfig.extra`` keys of R-STDP and their defaults."""

TARGETS = {"decision": "decision", "own": "own", "none": "none", True: "decision", False: "none"}
"""The values ``rstdp_target`` takes -> the target term they name."""


@dataclass(frozen=True)
class RSTDPOptions:
    """The constants of the rule: λ (``stdp_decay``), A₊ (``stdp_a_plus``), A₋ (``stdp_a_minus``), the
    target-neuron term (``rstdp_target``: "decision", "own" or "none") and the hidden layers' reward baseline
    (``rstdp_baseline``)."""

    decay: float = OPTIONS["stdp_decay"]
    a_plus: float = OPTIONS["stdp_a_plus"]
    a_minus: float = OPTIONS["stdp_a_minus"]
    target: str = OPTIONS["rstdp_target"]
    baseline: bool = OPTIONS["rstdp_baseline"]

    def __post_init__(self) -> None:
        for key, v in (
            ("stdp_decay", self.decay),
            ("stdp_a_plus", self.a_plus),
            ("stdp_a_minus", self.a_minus),
        ):
            if not _finite(v):
                raise ValueError(f"{key} must be a finite number, got {v!r}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"stdp_decay (λ) must lie in [0, 1), got {self.decay!r}")
        for key, v in (("stdp_a_plus", self.a_plus), ("stdp_a_minus", self.a_minus)):
            if v < 0:
                raise ValueError(f"{key} must be >= 0, got {v!r}")
        if not isinstance(self.target, (str, bool)) or self.target not in TARGETS:
            raise ValueError(
                f"rstdp_target must be 'decision', 'own' or 'none' (true: 'decision', false: 'none'), got "
                f"{self.target!r}"
            )
        object.__setattr__(self, "target", TARGETS[self.target])
        if not isinstance(self.baseline, bool):
            raise ValueError(f"rstdp_baseline must be true or false, got {self.baseline!r}")


def rstdp_options(extra: dict) -> RSTDPOptions:
    """The options in a ``TrainConfig.extra`` dict (missing keys take their defaults); a bad value is a
    ValueError naming its key and the value."""
    return RSTDPOptions(
        decay=extra.get("stdp_decay", OPTIONS["stdp_decay"]),
        a_plus=extra.get("stdp_a_plus", OPTIONS["stdp_a_plus"]),
        a_minus=extra.get("stdp_a_minus", OPTIONS["stdp_a_minus"]),
        target=extra.get("rstdp_target", OPTIONS["rstdp_target"]),
        baseline=extra.get("rstdp_baseline", OPTIONS["rstdp_baseline"]),
    )


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def rstdp_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of ``model`` in order (names as in ``named_modules``), checked for R-STDP (see the module
    docstring); a ValueError names the first layer it cannot train, or the structure it needs."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"R-STDP trains sequential spiking models (nn.Sequential / SpikingSequential of {ACCEPTED}); "
            f"{type(model).__name__} is not one (residual and other graphs are not supported)"
        )
    layers = leaves(model, check=False)
    for name, m in layers:
        if not isinstance(m, (*PARAMETRIC, *STATELESS, LIF)):
            raise ValueError(
                f"layer {name!r} ({type(m).__name__}) is not supported by R-STDP; it accepts {ACCEPTED} "
                "layers (LIF neurons only)"
            )
    if not any(isinstance(m, LIF) for _, m in layers):
        raise ValueError("R-STDP trains spiking models (with LIF layers); this model has none")
    for k, (name, m) in enumerate(layers):
        if isinstance(m, PARAMETRIC) and (k + 1 == len(layers) or not isinstance(layers[k + 1][1], LIF)):
            nxt = (
                f"{layers[k + 1][0]!r} ({type(layers[k + 1][1]).__name__})"
                if k + 1 < len(layers)
                else "nothing"
            )
            raise ValueError(
                f"R-STDP: layer {name!r} ({type(m).__name__}) must drive a LIF layer directly, but {nxt} "
                "follows it"
            )
        if isinstance(m, LIF) and (k == 0 or not isinstance(layers[k - 1][1], PARAMETRIC)):
            raise ValueError(
                f"R-STDP: LIF layer {name!r} must be driven directly by a Linear or Conv layer (its synapses)"
            )
    if not isinstance(layers[-1][1], LIF):
        name, m = layers[-1]
        raise ValueError(
            f"R-STDP: the last layer must be the read-out LIF (its spikes are the output); it is {name!r} "
            f"({type(m).__name__})"
        )
    return layers


@dataclass
class RSTDPTrace:
    """One forward pass: the output spikes [T, B, C], and per plastic layer (keyed by its module path) its
    input x_t [T, B, ...] and the spikes s_t [T, B, ...] of the LIF it drives (keyed by the LIF's path in
    ``lif_names``)."""

    output: Tensor
    inputs: dict[str, Tensor]
    spikes: dict[str, Tensor]
    lif_names: dict[str, str]

    @property
    def spike_counts(self) -> dict[str, Tensor]:
        """Σ over time and batch of each LIF layer's spikes per neuron, keyed by the LIF's module path."""
        return {self.lif_names[k]: s.sum(dim=(0, 1)) for k, s in self.spikes.items()}


def _rows(m: nn.Module, h: Tensor) -> Tensor:
    """A stateless or parametric layer on all T·B rows of ``h`` [T, B, ...] at once."""
    T, B = h.shape[:2]
    out = m(h.reshape(T * B, *h.shape[2:]))
    return out.reshape(T, B, *out.shape[1:])


def _trace(seq: Tensor, decay: float) -> Tensor:
    """z_t = λ z_{t-1} + seq_t over axis 0, z_0 = 0."""
    out = torch.empty_like(seq)
    acc = torch.zeros_like(seq[0])
    for t in range(seq.shape[0]):
        acc = acc * decay + seq[t]
        out[t] = acc
    return out


def _previous(seq: Tensor) -> Tensor:
    """seq shifted one step later along axis 0 (z_{t-1}, with z_0 = 0)."""
    return torch.cat([torch.zeros_like(seq[:1]), seq[:-1]])


def _weight_vjp(layer: nn.Module, inputs: Tensor, post: Tensor) -> Tensor:
    """Σ over rows of (∂(W * inputs)/∂W)ᵀ post: for a Linear postᵀ inputs over all rows, for a convolution
    its weight gradient with input ``inputs`` and output gradient ``post`` (rows [N, ...] each)."""
    if isinstance(layer, nn.Linear):
        return post.reshape(-1, post.shape[-1]).T @ inputs.reshape(-1, inputs.shape[-1])
    w = layer.weight.detach().requires_grad_(True)
    with torch.enable_grad():
        out = layer._conv_forward(inputs, w, None)
        (g,) = torch.autograd.grad(out, w, post)
    return g


class RSTDP:
    """R-STDP for one lfp-snn spiking model (see the module docstring): :meth:`step` runs the forward pass,
    computes ΔW for every plastic layer and writes ``p.grad = −ΔW`` (biases: zero)."""

    def __init__(self, model: nn.Module, options: RSTDPOptions | None = None) -> None:
        self.model = model
        self.options = options if options is not None else RSTDPOptions()
        self.layers = rstdp_layers(model)

    @torch.no_grad()
    def forward(self, x: Tensor) -> RSTDPTrace:
        """Run the model on time-first input ``x`` [T, B, ...], keeping what the rule needs."""
        if not isinstance(x, Tensor) or x.dim() < 3 or x.shape[0] < 1:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"R-STDP expects a time-first input [T, B, ...] with T >= 1, got {shape}")
        dtype = next(self.model.parameters()).dtype
        h = x.to(dtype)
        inputs: dict[str, Tensor] = {}
        spikes: dict[str, Tensor] = {}
        lif_names: dict[str, str] = {}
        plastic = None
        for name, m in self.layers:
            if isinstance(m, PARAMETRIC):
                inputs[name], plastic = h, name
                h = _rows(m, h)
            elif isinstance(m, LIF):
                h = m(h)
                spikes[plastic], lif_names[plastic] = h, name
            else:
                h = _rows(m, h)
        if h.dim() != 3:
            raise ValueError(
                f"R-STDP: the read-out LIF {self.layers[-1][0]!r} gives spikes of shape {list(h.shape)}; "
                "expected [T, B, classes]"
            )
        return RSTDPTrace(h, inputs, spikes, lif_names)

    def reward(self, output: Tensor, labels: Tensor) -> Tensor:
        """r_b = +1 for a correct prediction (argmax of Σ_t S_t; a silent read-out is wrong), else −1."""
        counts = output.sum(0)
        correct = (counts.argmax(-1) == labels) & (counts.sum(-1) > 0)
        return torch.where(correct, 1.0, -1.0).to(output.dtype)

    def modulators(self, trace: RSTDPTrace, labels: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The modulator M per plastic layer (broadcastable to its output [T, B, ...]), the target term τ of
        the output layer [B, C] (zero unless ``rstdp_target`` is "decision") and the reward r [B]."""
        out = trace.output
        r = self.reward(out, labels)
        pred = out.sum(0).argmax(-1)
        C = out.shape[-1]
        m_out = r[:, None] * nn.functional.one_hot(pred, C).to(out.dtype)
        tau = torch.zeros_like(m_out)
        wrong = (r < 0).nonzero().squeeze(1)
        if self.options.target == "own":
            m_out[wrong, labels[wrong]] = 1.0
        elif self.options.target == "decision":
            tau[wrong, labels[wrong]] = 1.0
        hidden = r - r.mean() if self.options.baseline else r
        last = self.layers[-2][0]
        mods = {}
        for name, s in trace.spikes.items():
            mods[name] = m_out[None] if name == last else hidden.view(1, -1, *[1] * (s.dim() - 2))
        return mods, tau, r

    def updates(self, trace: RSTDPTrace, labels: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """ΔW per plastic layer (keyed by its module path) and the reward r [B]."""
        o = self.options
        mods, tau, r = self.modulators(trace, labels)
        B = trace.output.shape[1]
        pred = trace.output.sum(0).argmax(-1)
        last = self.layers[-2][0]
        layers = dict(self.layers)
        out = {}
        for name, x in trace.inputs.items():
            s = trace.spikes[name]
            a = _trace(x, o.decay)
            q_prev = _previous(_trace(s, o.decay))
            post_plus, post_minus = mods[name] * s, mods[name] * q_prev
            if name == last and o.target == "decision":  # the decision neuron's spikes at the target
                rows = torch.arange(B, device=s.device)
                post_plus = post_plus + tau[None] * s[:, rows, pred].unsqueeze(-1)
                post_minus = post_minus + tau[None] * q_prev[:, rows, pred].unsqueeze(-1)
            post = torch.cat([o.a_plus * post_plus, -o.a_minus * post_minus])
            pre = torch.cat([a, x])
            out[name] = _weight_vjp(layers[name], pre.flatten(0, 1), post.flatten(0, 1)) / B
        return out, r

    def step(self, x: Tensor, labels: Tensor) -> tuple[RSTDPTrace, Tensor]:
        """Forward, reward and update for one batch: writes ``p.grad = −ΔW`` into every weight and zero into
        every bias; returns the trace and the reward r [B]."""
        trace = self.forward(x)
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be a tensor of class indices, got {type(labels).__name__}")
        check_labels(labels, trace.output.shape[1], trace.output.shape[-1])
        labels = labels.to(trace.output.device).long()
        deltas, r = self.updates(trace, labels)
        layers = dict(self.layers)
        for name, dw in deltas.items():
            layer = layers[name]
            _set_grad(layer.weight, -dw)
            if layer.bias is not None:
                _set_grad(layer.bias, torch.zeros_like(layer.bias))
        return trace, r


def _set_grad(p: nn.Parameter, g: Tensor) -> None:
    g = g.to(p.dtype)
    if p.grad is None or p.grad.shape != p.shape:
        p.grad = g
    else:
        p.grad.copy_(g)


__all__ = ["OPTIONS", "RSTDP", "TARGETS", "RSTDPOptions", "RSTDPTrace", "rstdp_layers", "rstdp_options"]
