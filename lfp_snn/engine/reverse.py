"""The reverse pass: the reward at the output -> feedback per parameter (and the reward at the input).

Nodes run in reverse order; each gets the message at its output (the sum of what its readers sent back: a
fork adds the rewards of its branches), put in its output's layout (summed over time where the output is the
same at every step: every rule is linear in the reward).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_finite
from .activations import Reward, add_messages, summed_over_time
from .context import ReverseContext
from .forward import Trace


@torch.no_grad()
def propagate(
    trace: Trace,
    reward: Tensor,
    *,
    release: bool = True,
    carry: dict[str, Tensor] | None = None,
    into: dict[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], Tensor | None]:
    """Feedback for every parameter from the reward at the output (shaped like ``trace.output``), and the
    reward at the model's input when the plan asks for it (``input_reward=True``), shaped like the input
    ([T, B, ...], or [B, ...] summed over time for a constant input).

    ``release=True`` frees each node's record as soon as it is done (the trace is spent). ``carry`` (for a
    trace of one stretch of time) holds per neuron what the later stretch hands back, and on return what this
    stretch hands to the one before. ``into``: feedback summed so far (other stretches); each layer's
    feedback is added to it as soon as it is made, and it is returned.
    """
    cp = trace.plan
    nodes = cp.graph.nodes
    T = trace.steps
    if reward.shape != trace.output.shape:
        raise ValueError(
            f"the reward must have the outputs' shape {list(trace.output.shape)}, got {list(reward.shape)}"
        )
    check_finite(reward, "the reward")
    if T is None:
        first = Reward(reward)
    elif trace.output_constant:
        first = Reward(reward.sum(0), True, True)
    else:
        first = Reward(reward.reshape(-1, *reward.shape[2:]))
    fb: dict[str, Tensor] = {} if into is None else into
    ctx = ReverseContext(cp, T, trace.records, fb, carry)
    pending: dict[int, object] = {cp.graph.output: first}
    for node in reversed(nodes[1:]):
        msg = pending.pop(node.index, None)
        rec = trace.records[node.index]
        if msg is not None and trace.layouts[node.index] is not None:
            if trace.layouts[node.index] and T is not None:
                msg = summed_over_time(msg, T)
            back = node.handler.reverse(node, rec, msg, ctx)
            del msg
            for k, m in enumerate(back.inputs):
                if m is None:
                    continue
                src = node.inputs[k]
                if trace.layouts[src] and T is not None:
                    m = summed_over_time(m, T)
                pending[src] = add_messages(pending.get(src), m)
            for name, value in back.feedback.items():
                key = node.param_key(name)
                if key in fb:
                    fb[key].add_(value)
                else:
                    fb[key] = value
            del back
        del rec
        if release:
            trace.records[node.index] = None
    rin = pending.pop(0, None)
    if rin is None or not cp.plan.input_reward:
        return fb, None
    r = rin.value
    if T is not None and not trace.input_constant:
        r = r.reshape(T, -1, *r.shape[1:])  # time-varying input: [T, B, ...] like the input
    return fb, r
