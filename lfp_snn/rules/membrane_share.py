"""Membrane-aware LFP-ε: a share of the reward for neurons that came close to firing but did not.

Why. In the reference rule the reward handed to a layer's input is multiplied by that input, and for a
spiking layer the input is the spikes S of the LIF layer below (docs/engine.md):

    R_in = S ⊙ (g W),        F_W = |W| ⊙ (gᵀ S)

A hidden neuron that never spikes gets R_in = 0 at every step, so its reverse scan yields g = 0, its incoming
weights get no feedback, and its outgoing weights get none either (their column of gᵀ S is zero): it stays
silent forever. At small β (or short T) a LIF needs a large current to reach θ (a constant current I fires
only if I > (1 - β) θ in the steady state), so many neurons start silent and LFP trails surrogate-gradient
BPTT, whose surrogate ∂S/∂V is non-zero below the threshold.

The variant. With the firing potential V_t of the LIF layer below (the value compared with θ; see
:mod:`lfp_snn.kernels.torch_scan`) and S_t = H(V_t - θ), define the *near-firing activity* of silent steps

    power:    a_t = (1 - S_t) · clamp(V_t / θ, 0, 1)^k                (k = 1 by default)
    sigmoid:  a_t = (1 - S_t) · σ((V_t - θ) / (τ θ))

(a_t ∈ [0, 1), zero at spiking steps and wherever V_t <= 0 for ``power``) and use S + λ a in place of S:

    R_in = (S + λ a) ⊙ (g W)                       (λ = ``input``, the reward share)
    F_W  = |W| ⊙ (gᵀ (S + λ_W a))                   (λ_W = ``weight``, optional)

so a silent neuron receives a reward proportional to how close it came to firing, weighted by what its
outgoing weights would have contributed (g W). The LIF scan below turns that reward into g for the neuron
and its incoming weights get F_W = |W| ⊙ (gᵀ X) ≠ 0: if firing would have helped (positive reward), the
weights move so that its current grows and it starts spiking, the way a surrogate gradient revives it. With
λ_W > 0 its outgoing weights learn as well, towards what they should carry once it fires.

At spiking steps a_t = 0, so for a neuron that spikes at every step nothing changes; in general the
difference from the reference is exactly λ a ⊙ (g W) in R_in and λ_W |W| ⊙ (gᵀ a) in F_W. With λ = λ_W = 0
the engine does not compute a at all: the reference rule, bit for bit.

It applies in the ε rule at every parametric layer whose input comes from a LIF layer (directly or through
Flatten / Unflatten / Identity). A pooling or dropout layer between them is an error (the activity of the
pooled neurons is not defined here), and so is a non-ε rule on such a layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ACTIVITIES = ("power", "sigmoid")


@dataclass(frozen=True)
class MembraneShare:
    """Options of the membrane-aware ε rule (see the module docstring).

    Attributes:
        input: λ, the share of the reward at the input given to near-firing silent steps (0: off).
        weight: λ_W, the same activity added to the spikes in the weight feedback F_W (0: off).
        activity: ``"power"`` (a = (1 - S) clamp(V/θ, 0, 1)^k) or ``"sigmoid"`` (a = (1 - S) σ((V - θ)/(τθ))).
        power: k of ``"power"``.
        tau: τ of ``"sigmoid"``, in units of θ.
    """

    input: float = 0.0
    weight: float = 0.0
    activity: str = "power"
    power: float = 1.0
    tau: float = 0.25

    def __post_init__(self) -> None:
        for name in ("input", "weight"):
            v = getattr(self, name)
            if not (v >= 0 and v < float("inf")):
                raise ValueError(f"membrane share {name} must be a finite number >= 0, got {v!r}")
        if self.activity not in ACTIVITIES:
            raise ValueError(f"membrane activity must be one of {ACTIVITIES}, got {self.activity!r}")
        if not (self.power > 0 and self.power < float("inf")):
            raise ValueError(f"membrane power k must be > 0, got {self.power!r}")
        if not (self.tau > 0 and self.tau < float("inf")):
            raise ValueError(f"membrane tau must be > 0, got {self.tau!r}")

    @property
    def active(self) -> bool:
        return self.input > 0 or self.weight > 0

    def near_firing(self, pot: Tensor, threshold: Tensor | float) -> Tensor:
        """a = (1 - S) · f(V): the near-firing activity of silent steps (a new tensor shaped like ``pot``)."""
        return near_firing(pot, threshold, self.activity, self.power, self.tau)


def near_firing(
    pot: Tensor, threshold: Tensor | float, activity: str = "power", power: float = 1.0, tau: float = 0.25
) -> Tensor:
    """The near-firing activity a_t of silent steps from the firing potential V [T, B, ...].

    ``threshold`` is θ (a scalar or per-neuron tensor broadcastable to one step). S_t = H(V_t - θ).
    """
    thr = torch.as_tensor(threshold, dtype=pot.dtype, device=pot.device)
    if activity == "power":
        a = torch.div(pot, thr).clamp_(0, 1)
        if power != 1:
            a.pow_(power)
    elif activity == "sigmoid":
        a = torch.sub(pot, thr).div_(thr * tau).sigmoid_()
    else:
        raise ValueError(f"membrane activity must be one of {ACTIVITIES}, got {activity!r}")
    return a.masked_fill_(pot > thr, 0)


def as_membrane_share(spec) -> MembraneShare | None:
    """None, a :class:`MembraneShare`, or a number λ (the input share alone) -> a MembraneShare or None
    (None when off, so the engine runs the reference path)."""
    if spec is None:
        return None
    if isinstance(spec, MembraneShare):
        return spec if spec.active else None
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        share = MembraneShare(input=float(spec))
        return share if share.active else None
    raise TypeError(f"membrane_share must be None, a number or a MembraneShare, got {type(spec).__name__}")
