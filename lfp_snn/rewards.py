"""Rewards: callables ``(outputs, labels) -> reward`` shaped like ``outputs``.

ANN rewards see logits [B, C]; SNN rewards see output spikes [T, B, C]. Any callable with that signature
works; these are the ones from the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def check_labels(labels: Tensor, batch: int, classes: int | None) -> None:
    """Raise ValueError unless ``labels`` are ``batch`` integer class indices in [0, classes) (any
    non-negative index when ``classes`` is None)."""
    if (
        labels.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        or labels.dtype == torch.bool
    ):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"expected labels of shape [{batch}], got {list(labels.shape)}")
    if classes is None:
        return
    if batch and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"labels must lie in [0, {classes - 1}] for {classes} outputs, got min {int(labels.min())} "
            f"and max {int(labels.max())}"
        )


def _onehot(outputs: Tensor, labels: Tensor) -> Tensor:
    check_labels(labels, outputs.shape[-2], outputs.shape[-1])
    return torch.nn.functional.one_hot(labels.long(), outputs.shape[-1]).to(outputs.dtype)


def sigmoid_reward(outputs: Tensor, labels: Tensor) -> Tensor:
    """Eq. 7: r_c = o_c (y_c - σ(o_c)), the negative gradient-times-output of the binary cross-entropy."""
    return outputs * (_onehot(outputs, labels) - torch.sigmoid(outputs))


def softmax_reward(outputs: Tensor, labels: Tensor) -> Tensor:
    """r = o (onehot(y) - softmax(o)) over the class axis."""
    return outputs * (_onehot(outputs, labels) - torch.softmax(outputs, dim=-1))


def correct_class_reward(outputs: Tensor, labels: Tensor) -> Tensor:
    """App. A.1: +1 at the true class, -1 at the others (times the sign of the output, so r·o >= 0 means
    "agrees"): r_c = o_c (2 y_c - 1) / |o_c| where o_c != 0, and 2 y_c - 1 where o_c = 0."""
    sign = torch.where(outputs == 0, torch.ones_like(outputs), outputs.sign())
    return (2 * _onehot(outputs, labels) - 1) * sign


@dataclass(frozen=True)
class SequenceReward:
    """Eq. A.16 as the reference implements it, on output spikes o ∈ {0,1}^{T×B×C}:

        true class:   r_t = 1 - σ(Σ_t o_t - T//2)                      (at every t)
        other class:  r_t = -o_t (1 - σ(Σ_t |o_t - 1| - T//2))

    ``scale_by_steps=True`` divides by T (the reference's notebook does; its experiments do not).
    """

    scale_by_steps: bool = False

    def __call__(self, spikes: Tensor, labels: Tensor) -> Tensor:
        if spikes.dim() != 3:
            raise ValueError(f"expected output spikes of shape [T, B, C], got {list(spikes.shape)}")
        T = spikes.shape[0]
        onehot = _onehot(spikes[0], labels)
        half = T // 2
        true_r = (1 - torch.sigmoid(spikes.sum(0) - half)).expand_as(spikes)
        other_r = -spikes * (1 - torch.sigmoid((spikes - 1).abs().sum(0) - half))
        r = torch.where(onehot.bool(), true_r, other_r)
        return r / T if self.scale_by_steps else r


sequence_reward = SequenceReward()


@dataclass(frozen=True)
class SpikeCountSoftmaxReward:
    """Softmax reward on spike counts n = Σ_t o_t: r_c = (y_c - softmax(n / τ)_c), spread over the steps at
    which the neuron spiked (r_t = r o_t / max(n, 1)) for the wrong classes and evenly over all steps for
    the true class (so a silent true-class neuron is still pushed up)."""

    temperature: float = 1.0

    def __call__(self, spikes: Tensor, labels: Tensor) -> Tensor:
        if spikes.dim() != 3:
            raise ValueError(f"expected output spikes of shape [T, B, C], got {list(spikes.shape)}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        T = spikes.shape[0]
        counts = spikes.sum(0)
        onehot = _onehot(counts, labels)
        r = onehot - torch.softmax(counts / self.temperature, dim=-1)
        per_spike = spikes * (r / counts.clamp(min=1))
        return torch.where(onehot.bool(), (r / T).expand_as(spikes), per_spike)


def spike_count_predictions(spikes: Tensor) -> Tensor:
    """Class predicted by the most output spikes over time ([T, B, C] -> [B]); ties go to the lower index."""
    return spikes.sum(0).argmax(-1)


REWARDS = {
    "sigmoid": sigmoid_reward,
    "softmax": softmax_reward,
    "correct-class": correct_class_reward,
    "sequence": sequence_reward,
    "sequence-scaled": SequenceReward(scale_by_steps=True),
    "spike-count-softmax": SpikeCountSoftmaxReward(),
}


def get_reward(spec):
    """A reward from a name in ``REWARDS`` or any callable."""
    if callable(spec):
        return spec
    if spec in REWARDS:
        return REWARDS[spec]
    raise ValueError(f"unknown reward {spec!r}; expected a callable or one of {sorted(REWARDS)}")
