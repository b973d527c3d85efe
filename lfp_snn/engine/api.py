"""The engine's public functions: feedback, feedback_result, write_gradients, run, forward_trace."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..rewards import check_labels
from ..rules import Composite, MembraneShare, Rule
from .forward import Trace, run_forward
from .plan import FeedbackPlan
from .schedules import FeedbackResult, run_schedule

_UNSET = object()


def make_plan(rule, plan: FeedbackPlan | None, **options) -> FeedbackPlan:
    """The plan from either ``plan=`` or the keyword options (not both: an option beside a plan would be
    silently ignored otherwise)."""
    given = {k: v for k, v in options.items() if v is not _UNSET}
    if plan is None:
        return FeedbackPlan(rule=rule, **given)
    if not isinstance(plan, FeedbackPlan):
        raise TypeError(f"plan must be a FeedbackPlan, got {type(plan).__name__}")
    clash = sorted(given) + (["rule"] if rule is not _UNSET else [])
    if clash:
        raise ValueError(
            f"plan= and {', '.join(clash)}= were both given; put every option in the plan "
            f"(plan.replace({clash[0]}=...))"
        )
    return plan


def _check_labels(cp, inputs: Tensor, labels: Tensor, steps: int | None) -> None:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor of class indices, got {type(labels).__name__}")
    spiking = cp.spiking
    axis = 1 if (spiking and steps is None) else 0
    B = inputs.shape[axis]
    if (
        labels.dim() == 1
        and labels.shape[0] != B
        and spiking
        and steps is None
        and labels.shape[0] == inputs.shape[0]
    ):
        raise ValueError(
            f"the input {list(inputs.shape)} has {inputs.shape[0]} entries on axis 0 and {B} on axis 1, and the "
            f"labels have {labels.shape[0]}: a spiking model takes time-first input [T, B, ...], axis 0 is the "
            "time step T and axis 1 the batch. Add the time axis (lfp_snn.encoders.constant_encode(x, T), or "
            "x_seq.transpose(0, 1) for [B, T, ...] sequences), or pass steps=T for a static [B, ...] input"
        )
    if labels.device != inputs.device:
        raise ValueError(f"labels are on {labels.device} but the input is on {inputs.device}; move them")
    check_labels(labels, B, None)


def feedback_result(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    reward: Callable | str = "auto",
    rule: str | Rule | Composite = _UNSET,
    *,
    plan: FeedbackPlan | None = None,
    steps: int | None = None,
    write_grad: bool = False,
    generator: torch.Generator | None = None,
    eps: float | None = _UNSET,
    input_reward: bool = _UNSET,
    input_noise: float = _UNSET,
    matmul_dtype: torch.dtype | None = _UNSET,
    micro_batch: int | None = _UNSET,
    recompute: bool = _UNSET,
    membrane_share: MembraneShare | float | None = _UNSET,
    time_chunk: int | None = _UNSET,
    backend: str | None = _UNSET,
) -> FeedbackResult:
    """Forward, reward and reverse pass in one call; see :func:`feedback`. Also returns the outputs, the
    reward, the reward at the input (with ``input_reward=True``) and spike counts per LIF layer.

    The options are those of :class:`~lfp_snn.engine.FeedbackPlan` (``matmul_dtype`` is its ``gemm_dtype``,
    ``recompute=True`` its ``storage="recompute"``); give them as keywords or as one ``plan=``. The plan is
    validated against the model and input before any compute.
    """
    opts = dict(
        eps=eps,
        input_reward=input_reward,
        input_noise=input_noise,
        gemm_dtype=matmul_dtype,
        micro_batch=micro_batch,
        membrane_share=membrane_share,
        time_chunk=time_chunk,
        backend=backend,
    )
    if recompute is not _UNSET:
        opts["storage"] = "recompute" if recompute else "keep"
    p = make_plan("epsilon" if rule is _UNSET and plan is None else rule, plan, **opts)
    cp = p.validate(model, inputs, steps)
    _check_labels(cp, inputs, labels, steps)
    res = run_schedule(cp, inputs, labels, reward, steps, generator)
    if write_grad:
        write_gradients(model, res.feedback)
    return res


def feedback(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    reward: Callable | str = "auto",
    rule: str | Rule | Composite = _UNSET,
    *,
    plan: FeedbackPlan | None = None,
    steps: int | None = None,
    eps: float | None = _UNSET,
    write_grad: bool = False,
) -> dict[str, Tensor]:
    """LFP feedback for every parameter of ``model``, summed over the batch (and positions and time).

    Args:
        model: any ``nn.Module`` the engine can run (``lfp_snn.supported_layers()``; an ``nn.Sequential`` of
            them, or a module whose forward ``torch.fx`` traces into them, with residual sums, ``torch.cat``
            and reshapes); with neurons (LIF layers) it is a spiking network and ``inputs`` are [T, B, ...].
        labels: [B] class indices.
        reward: a callable ``(outputs, labels) -> reward`` shaped like the outputs, a name from
            :data:`lfp_snn.rewards.REWARDS`, or ``"auto"``: the sequence reward (Eq. A.16) for spiking models,
            the sigmoid reward (Eq. 7) for ANNs.
        rule: a preset name (``"epsilon"``, ``"zplus-zminus"``, ``"alpha2-beta1"``, ...), a Rule or a Composite.
        plan: every engine option in one :class:`~lfp_snn.engine.FeedbackPlan` (instead of ``rule``/``eps``).
        write_grad: also set ``p.grad = -feedback`` so that any ``torch.optim`` optimiser takes the step.
    Returns:
        ``{name: feedback}`` keyed like ``model.named_parameters()``.
    """
    return feedback_result(
        model, inputs, labels, reward, rule, plan=plan, steps=steps, eps=eps, write_grad=write_grad
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


def forward_trace(
    model: nn.Module,
    inputs: Tensor,
    steps: int | None = None,
    *,
    plan: FeedbackPlan | None = None,
    keep: bool = True,
    generator: torch.Generator | None = None,
    observe: Callable | None = None,
) -> Trace:
    """The forward pass alone: outputs, spike counts and (with ``keep``) the records the reverse pass
    (:func:`lfp_snn.engine.propagate`) takes.

    ``observe``: a callable the pass calls right after each node (every node but the input, in the graph's
    order) as ``observe(node, inputs, output)``: the :class:`~lfp_snn.engine.graph.Node`, the
    :class:`~lfp_snn.engine.Act` values it read (rows [T·B, ...], or [B, ...] where ``constant``: the same at
    every step; before the plan's ``input_noise``, which a parametric layer adds inside) and its output (an
    ``Act``, or the value of a shape query). It reads them during the call and changes nothing (a later node
    may write over them); a neuron's input current may already hold its potential when ``keep`` is true.
    Measurements use it (synaptic operations in :mod:`lfp_snn.experiments.efficiency`); None, the default,
    costs one test per node.
    """
    p = plan if plan is not None else FeedbackPlan()
    cp = p.validate(model, inputs, steps)
    return run_forward(
        cp, inputs, steps, keep=keep, generator=generator, noise=p.input_noise, observe=observe
    )


def run(
    model: nn.Module, inputs: Tensor, steps: int | None = None, *, plan: FeedbackPlan | None = None
) -> Tensor:
    """Inference: the model's output (SNN: output spikes [T, B, C]) with nothing kept for feedback; ``plan``
    for a forward other than the float one (``FeedbackPlan(fixed_point=...)``: the integer network)."""
    return forward_trace(model, inputs, steps, plan=plan, keep=False).output
