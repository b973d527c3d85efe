"""Training methods: how one step turns a batch into an update in ``p.grad``.

:data:`METHODS` names every method a :class:`~lfp_snn.training.Trainer` can run: a factory
``(trainer) -> step`` with ``step(x, y) -> StepOutput`` per name. The table is written out here, baselines
included; the surrogate-gradient baselines' libraries (snntorch, norse) are imported only when such a step is
built. Users add a method by adding a factory to the table.

On the command line a method is named ``lfp-<rule>`` (LFP with a rule or composite preset, e.g.
``lfp-zplus-zminus``), ``gradient`` or a baseline (``bptt-snntorch``, ``bptt-norse``, and ``rstdp``, the
gradient-free reward-modulated STDP of :mod:`lfp_snn.baselines.rstdp`): :func:`resolve_method` turns such a
name into ``(method, rule)``.

Method options live in ``TrainConfig.extra`` (:data:`EXTRA_OPTIONS` names the keys this module knows and the
method each belongs to); a known key given to another method is an error (:func:`check_extra`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..engine import FeedbackPlan, feedback_result, write_gradients
from ..rules import get_composite, presets
from .step import Step, StepOutput

if TYPE_CHECKING:
    from ..baselines import StepNetwork
    from .trainer import Trainer

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
"""Names of the precisions of the LFP feedback GEMMs -> the ``matmul_dtype`` the engine takes."""

REWARD_NORMS = {"none": None, "maxabs": "maxabs"}
"""``TrainConfig.reward_norm`` -> the engine's ``FeedbackPlan.reward_norm``."""

LIBRARIES = {"bptt-snntorch": "snntorch", "bptt-norse": "norse"}
"""The package each baseline method needs."""

EXTRA_OPTIONS = {
    "surrogate_slope": "bptt-snntorch",
    "norse_slope": "bptt-norse",
    "stdp_decay": "rstdp",
    "stdp_a_plus": "rstdp",
    "stdp_a_minus": "rstdp",
    "rstdp_target": "rstdp",
    "rstdp_baseline": "rstdp",
}
"""The ``TrainConfig.extra`` keys of the methods here -> the method that reads each."""

TRAINED_BY = {"rstdp": "a local rule (reward-modulated STDP)"}
"""How a method other than LFP trains, for messages about options it does not use (default: a loss)."""


def trained_by(method: str) -> str:
    """``"trains by a loss"`` or, for a method in :data:`TRAINED_BY`, what it trains by instead."""
    return f"trains by {TRAINED_BY.get(method, 'a loss')}"


def check_extra(method: str, extra: dict) -> None:
    """ValueError naming the first key of ``extra`` that :data:`EXTRA_OPTIONS` assigns to another method
    than ``method`` (such a key would otherwise be silently ignored), and for ``rstdp`` its values' checks."""
    for key in extra:
        owner = EXTRA_OPTIONS.get(key)
        if owner is not None and owner != method:
            raise ValueError(
                f"extra[{key!r}]={extra[key]!r} does not apply: it is an option of method {owner!r}; method "
                f"{method!r} does not use it"
            )
    if method == "rstdp":
        from ..baselines.rstdp import rstdp_options

        rstdp_options(extra)


def feedback_plan(cfg, input_noise: float = 0.0) -> FeedbackPlan:
    """The engine's plan for a run's LFP options (validated against the model at the first step)."""
    return FeedbackPlan(
        rule=get_composite(cfg.rule, cfg.eps),
        eps=cfg.eps,
        storage="recompute" if cfg.recompute else "keep",
        micro_batch=cfg.micro_batch,
        time_chunk=cfg.time_chunk,
        gemm_dtype=PRECISIONS[cfg.feedback_precision],
        membrane_share=cfg.membrane(),
        reward_norm=REWARD_NORMS[cfg.reward_norm],
        input_noise=input_noise,
        fixed_point=cfg.fixed_point(),
    )


def lfp_method(trainer: Trainer) -> Step:
    """LFP: the engine's feedback for the batch, written as ``p.grad = -F`` (the optimiser then maximises
    the reward)."""
    cfg = trainer.config
    reward = trainer.reward
    plans: dict[float, FeedbackPlan] = {}  # by input noise (a schedule changes it per epoch)

    def step(x: Tensor, y: Tensor) -> StepOutput:
        trainer.optimizer.zero_grad(set_to_none=True)  # the old gradients go before the feedback's buffers
        noise = trainer.noise_std()
        if noise not in plans:
            plans[noise] = feedback_plan(cfg, noise)
        res = feedback_result(trainer.model, x, y, reward, plan=plans[noise], generator=trainer.generator)
        write_gradients(trainer.model, res.feedback, consume=True)
        return StepOutput(res.output, float(res.reward.mean()), res.spike_counts)

    return step


def gradient_method(trainer: Trainer) -> Step:
    """Backpropagation with cross-entropy (the ANN gradient baseline)."""
    if trainer.spiking:
        raise ValueError(
            "method 'gradient' trains ANNs; for spiking models use a surrogate-gradient baseline "
            "(bptt-snntorch, bptt-norse), the gradient-free rstdp, or LFP"
        )
    loss_fn = nn.CrossEntropyLoss()

    def step(x: Tensor, y: Tensor) -> StepOutput:
        trainer.optimizer.zero_grad()
        out = trainer.model(x)
        loss = loss_fn(out, y)
        loss.backward()
        return StepOutput(out.detach(), float(loss.detach()))

    return step


def bptt_method(trainer: Trainer, net: StepNetwork, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Step:
    """A surrogate-gradient step: forward through ``net`` (a baseline's time loop around the trainer's own
    layers, so the parameters are shared), the loss on the output spikes, ``loss.backward()`` into ``.grad``;
    the trainer then clips and steps its optimiser."""

    def step(x: Tensor, y: Tensor) -> StepOutput:
        trainer.optimizer.zero_grad(set_to_none=False)
        spikes = net(x)
        loss = loss_fn(spikes, y)
        loss.backward()
        return StepOutput(spikes.detach(), float(loss.detach()), dict(net.spike_counts))

    step.network = net  # type: ignore[attr-defined]  # for inspection and tests
    return step


def _require_spiking(trainer: Trainer, name: str) -> None:
    if not trainer.spiking:
        raise ValueError(
            f"method {name!r} trains spiking models; arch {trainer.model_config.arch!r} is an ANN"
        )


def surrogate_slope(trainer: Trainer, key: str, default: float) -> float:
    """A surrogate slope k from ``TrainConfig.extra[key]`` (snntorch: ``surrogate_slope``, default 25;
    norse: ``norse_slope``, default 1)."""
    k = float(trainer.config.extra.get(key, default))
    if not k > 0 or k != k or k == float("inf"):
        raise ValueError(f"{key} must be a finite number > 0, got {k}")
    return k


def snntorch_method(trainer: Trainer) -> Step:
    """BPTT in snntorch (:mod:`lfp_snn.baselines.snntorch_bptt`): ``snn.Leaky`` with the fast-sigmoid
    surrogate, loss ``ce_count_loss``."""
    _require_spiking(trainer, "bptt-snntorch")
    from ..baselines import DEFAULT_SLOPE
    from ..baselines.snntorch_bptt import snntorch_loss, snntorch_network

    slope = surrogate_slope(trainer, "surrogate_slope", DEFAULT_SLOPE)
    net = snntorch_network(trainer.model, slope=slope).to(trainer.device)
    return bptt_method(trainer, net, snntorch_loss())


def norse_method(trainer: Trainer) -> Step:
    """BPTT in norse (:mod:`lfp_snn.baselines.norse_bptt`): ``LIFBoxCell`` with SuperSpike, cross-entropy
    on the spike counts."""
    _require_spiking(trainer, "bptt-norse")
    from ..baselines import ce_count_loss
    from ..baselines.norse_bptt import NORSE_SLOPE, norse_network

    net = norse_network(trainer.model, slope=surrogate_slope(trainer, "norse_slope", NORSE_SLOPE))
    return bptt_method(trainer, net.to(trainer.device), ce_count_loss)


def rstdp_method(trainer: Trainer) -> Step:
    """Reward-modulated STDP (:mod:`lfp_snn.baselines.rstdp`): one forward pass through the model's own
    layers, the three-factor rule per layer, ``p.grad = −ΔW`` (biases: zero); options ``stdp_decay``,
    ``stdp_a_plus``, ``stdp_a_minus``, ``rstdp_target``, ``rstdp_baseline`` in ``TrainConfig.extra``."""
    _require_spiking(trainer, "rstdp")
    from ..baselines.rstdp import RSTDP, rstdp_options

    learner = RSTDP(trainer.model, rstdp_options(trainer.config.extra))

    def step(x: Tensor, y: Tensor) -> StepOutput:
        trace, r = learner.step(x, y)
        return StepOutput(trace.output, float(r.mean()), trace.spike_counts)

    step.learner = learner  # type: ignore[attr-defined]  # for inspection and tests
    return step


METHODS: dict[str, Callable[[Trainer], Step]] = {
    "lfp": lfp_method,
    "gradient": gradient_method,
    "bptt-snntorch": snntorch_method,
    "bptt-norse": norse_method,
    "rstdp": rstdp_method,
}
"""Method name -> step factory; ``TrainConfig.method`` is one of these names."""


def known_methods() -> list[str]:
    """The method names of the command line: ``lfp-<preset>`` for every LFP rule or composite preset and
    every other method in :data:`METHODS`."""
    return [f"lfp-{p}" for p in presets()] + sorted(m for m in METHODS if m != "lfp")


def resolve_method(name: str) -> tuple[str, str]:
    """A command-line method name -> ``(TrainConfig.method, TrainConfig.rule)``: ``lfp-<rule>`` -> ("lfp",
    rule), ``lfp`` -> ("lfp", "epsilon"), another method of :data:`METHODS` -> (name, "epsilon"). Anything
    else is a ValueError that lists the accepted names."""
    if name.startswith("lfp-") and name[4:] in presets():
        return "lfp", name[4:]
    if name in METHODS:
        return name, "epsilon"
    raise ValueError(f"unknown method {name!r}; expected one of {', '.join(known_methods())}")


def check_methods(methods: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(name, method, rule)`` for every name, after checking them all (known, listed once, the baselines'
    libraries installed) before anything runs."""
    if not methods:
        raise ValueError(f"no methods given; expected some of {', '.join(known_methods())}")
    dup = sorted({m for m in methods if list(methods).count(m) > 1})
    if dup:
        raise ValueError(f"methods listed twice: {dup}")
    out = []
    for name in methods:
        method, rule = resolve_method(name)
        lib = LIBRARIES.get(method)
        if lib is not None and importlib.util.find_spec(lib) is None:
            raise ImportError(
                f"method {name!r} needs the {lib!r} package, which is not installed; install it (without "
                f"letting pip replace torch: `pip install --no-deps {lib}`) or leave {name!r} out"
            )
        out.append((name, method, rule))
    return out
