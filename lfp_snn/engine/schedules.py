"""Schedules: the whole batch at once, micro-batches, and stretches of time, as compositions of the forward
(:func:`~lfp_snn.engine.forward.run_forward`) and reverse (:func:`~lfp_snn.engine.reverse.propagate`) passes.

- full: forward, reward on the output, reverse.
- micro-batches of m samples: each slice on its own, feedback summed (LFP feedback is a sum over samples:
  the same result up to float summation order, activation memory B/m of the full pass).
- stretches of K steps (spiking models): a first forward over all stretches gives the outputs (the reward
  needs all of them) and the neuron states at each boundary; then, from the last stretch to the first, each
  stretch is run forward again from its kept states and its feedback taken, the neurons' carries crossing
  each boundary backwards. The same result up to summation order for one more forward pass; activation
  memory O(K·B·N + (T/K)·B·N) instead of O(T·B·N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..checks import all_finite
from ..rewards import get_reward
from .forward import run_forward
from .plan import CompiledPlan
from .reverse import propagate


@dataclass
class FeedbackResult:
    """Feedback per parameter name, plus what the trainer reports."""

    feedback: dict[str, Tensor]
    output: Tensor
    reward: Tensor
    input_reward: Tensor | None
    spike_counts: dict[str, Tensor]
    spike_rate: dict[str, float]


def reward_for(reward: Callable | str, spiking: bool, output: Tensor, labels: Tensor) -> Tensor:
    """The reward tensor for ``output``; ``"auto"``: the sequence reward for SNNs, the sigmoid one for ANNs."""
    r = get_reward(("sequence" if spiking else "sigmoid") if reward == "auto" else reward)(output, labels)
    if not isinstance(r, Tensor):
        raise TypeError(f"the reward callable must return a tensor, got {type(r).__name__}")
    if r.shape != output.shape:
        raise ValueError(f"the reward must have the outputs' shape {list(output.shape)}, got {list(r.shape)}")
    return r


def check_finite_feedback(fb: dict[str, Tensor], eps: float) -> None:
    """LFP-0 (ε = 0) divides by zero where a pre-activation is exactly 0: say so instead of training on NaN."""
    for k, v in fb.items():
        if not all_finite(v):
            raise ValueError(
                f"the feedback for {k!r} contains NaN or inf; with ε = 0 (LFP-0, or FeedbackPlan(eps=0) for the "
                "neuron scans) a pre-activation or membrane of exactly 0 divides by zero: use a small ε "
                f"(ε here: {eps})"
            )


def run_schedule(
    cp: CompiledPlan, inputs: Tensor, labels: Tensor, reward, steps, generator
) -> FeedbackResult:
    """The plan's schedule: micro-batches (of stretches of time, where asked) or the whole batch."""
    p = cp.plan
    spiking = cp.spiking
    batch_axis = 1 if (spiking and steps is None) else 0
    B = inputs.shape[batch_axis]
    if p.micro_batch is None or p.micro_batch >= B:
        return _once(cp, inputs, labels, reward, steps, generator)
    parts = [
        _once(
            cp,
            inputs.narrow(batch_axis, a, min(p.micro_batch, B - a)),
            labels[a : a + p.micro_batch],
            reward,
            steps,
            generator,
        )
        for a in range(0, B, p.micro_batch)
    ]
    constant_input = steps is not None or (spiking and inputs.shape[0] > 1 and inputs.stride(0) == 0)
    return _merge(parts, 1 if spiking else 0, 1 if spiking and not constant_input else 0)


def _once(cp: CompiledPlan, inputs, labels, reward, steps, generator) -> FeedbackResult:
    T = steps if steps is not None else (inputs.shape[0] if cp.spiking else None)
    if cp.plan.time_chunk is not None and T is not None and cp.plan.time_chunk < T:
        return _chunked(cp, inputs, labels, reward, steps)
    trace = run_forward(cp, inputs, steps, generator=generator, noise=cp.plan.input_noise)
    r = reward_for(reward, cp.spiking, trace.output, labels)
    fb, rin = propagate(trace, r)
    check_finite_feedback(fb, cp.eps)
    return FeedbackResult(fb, trace.output, r, rin, trace.spike_counts, trace.spike_rate)


def _merge(parts: list[FeedbackResult], out_axis: int, rin_axis: int) -> FeedbackResult:
    """One result from micro-batch results: feedback and spike counts summed, the rest concatenated."""
    fb = parts[0].feedback
    for p in parts[1:]:
        for k, v in p.feedback.items():
            if k in fb:
                fb[k].add_(v)
            else:
                fb[k] = v
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


def _chunked(cp: CompiledPlan, inputs, labels, reward, steps) -> FeedbackResult:
    K = cp.plan.time_chunk
    constant = steps is not None or (inputs.shape[0] > 1 and inputs.stride(0) == 0)
    T = steps if steps is not None else inputs.shape[0]
    x0 = inputs if steps is not None else inputs[0] if constant else None
    starts = list(range(0, T, K))

    def piece(t0: int):  # (input, steps= for the forward, number of steps)
        n = min(K, T - t0)
        return (x0, n, n) if constant else (inputs[t0 : t0 + n], None, n)

    # pass 1: outputs and spike counts; keep the neuron states where stretches begin
    state: dict[str, Tensor] = {}
    cache: dict = {}  # outputs of layers with a constant input: the same in every stretch
    kept: dict[int, dict[str, Tensor]] = {}
    outputs, counts, rates = [], {}, {}
    for t0 in starts:
        x, st, n = piece(t0)
        tr = run_forward(cp, x, st, keep=False, state=state, start=t0, cache=cache)
        if t0 + n < T:  # a neuron on a constant current recomputes its start cheaply: not kept
            on_constant = {
                node.name
                for node in cp.graph.nodes[1:]
                if getattr(node.handler, "advances_constant", False) and tr.layouts[node.inputs[0]]
            }
            kept[t0 + n] = {k: v for k, v in state.items() if k not in on_constant}
        outputs.append(tr.output)
        for k, c in tr.spike_counts.items():
            counts[k] = counts[k] + c if k in counts else c
            rates[k] = rates.get(k, 0.0) + tr.spike_rate[k] * n / T
        del tr
    del state
    output = torch.cat(outputs)
    del outputs
    r = reward_for(reward, True, output, labels)
    # pass 2: from the last stretch to the first, forward again and take the feedback
    carry: dict[str, Tensor] = {}
    fb: dict[str, Tensor] = {}
    rins: list[Tensor] = []
    for t0 in reversed(starts):
        x, st, n = piece(t0)
        tr = run_forward(cp, x, st, state=kept.pop(t0, {}), start=t0, cache=cache)
        _, rin = propagate(tr, r[t0 : t0 + n], carry=carry, into=fb)
        del tr
        if rin is not None:
            if not constant:
                rins.append(rin)
            elif rins:  # a constant input's reward is summed over time
                rins[0].add_(rin)
            else:
                rins.append(rin)
    rin = None
    if rins:
        rin = rins[0] if constant else torch.cat(rins[::-1])
    check_finite_feedback(fb, cp.eps)
    return FeedbackResult(fb, output, r, rin, counts, rates)
