"""Argument handling shared by the compiled scan backends (native and triton): the layouts they accept and
the errors they raise, written once so the two cannot drift apart."""

from __future__ import annotations

import torch
from torch import Tensor


def forward_layout(current: Tensor, steps: int | None) -> tuple[Tensor, bool, int, torch.Size]:
    """(current, constant, T, one step's shape): a [B, ...] current with ``steps=T`` or a [T, B, ...] one
    expanded from one step (stride 0 on T) is constant and is returned as its [B, ...] step."""
    if steps is not None:
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        return current, True, int(steps), current.shape
    if current.dim() < 2:
        raise ValueError(f"expected a current of shape [T, B, ...], got {list(current.shape)}")
    T, step_shape = current.shape[0], current.shape[1:]
    if T > 1 and current.stride(0) == 0:  # one step expanded over T: read it once
        return current[0], True, T, step_shape
    return current, False, T, step_shape


def spike_dtype_of(current: Tensor, spike_dtype: torch.dtype | None, accepted: tuple) -> torch.dtype:
    sdt = current.dtype if spike_dtype is None else spike_dtype
    if sdt not in accepted:
        raise TypeError(f"spike_dtype must be one of {accepted}, got {spike_dtype}")
    return sdt


def check_potential_out(out: Tensor | None, potential: bool) -> None:
    """A forward scan told not to write the firing potential has nowhere to put it: ``out`` does not apply."""
    if out is not None and not potential:
        raise ValueError("potential=False writes no firing potential; out (where it would go) does not apply")


def check_forward_out(
    out: Tensor | None, T: int, step_shape: torch.Size, device: torch.device, potential: bool = True
) -> None:
    check_potential_out(out, potential)
    if out is not None and (out.shape != (T, *step_shape) or out.device != device):
        raise ValueError(
            f"out is a {list(out.shape)} tensor on {out.device}; expected {[T, *step_shape]} on {device}"
        )


def check_summed_out(out: Tensor | None, summed: bool) -> None:
    """A feedback scan returning g summed over time makes its own [B, ...] result: ``out`` does not apply."""
    if summed and out is not None:
        raise ValueError("summed=True returns a new [B, ...] sum; out (a [T, B, ...] buffer) does not apply")


def check_feedback_args(reward: Tensor, pot: Tensor, out: Tensor | None, summed: bool = False) -> None:
    check_summed_out(out, summed)
    if pot.dim() < 2:
        raise ValueError(f"expected a firing potential of shape [T, B, ...], got {list(pot.shape)}")
    if reward.shape != pot.shape:
        raise ValueError(f"the reward has shape {list(reward.shape)}; expected {list(pot.shape)}")
    if out is not None and out.shape != pot.shape:
        raise ValueError(f"out has shape {list(out.shape)}; expected {list(pot.shape)}")
    if reward.device != pot.device or (out is not None and out.device != pot.device):
        raise ValueError(
            f"reward, firing potential and out must be on one device, the potential is on {pot.device}"
        )


def check_constant_feedback_args(reward: Tensor, current: Tensor, out: Tensor | None, summed: bool) -> None:
    """The feedback of a LIF layer from its constant current [B, ...] (instead of its potential): the reward
    is [T, B, ...] with the current's step shape."""
    check_summed_out(out, summed)
    if reward.dim() < 2 or reward.shape[1:] != current.shape:
        raise ValueError(
            f"the reward has shape {list(reward.shape)}; expected [T, {', '.join(map(str, current.shape))}] "
            f"for a constant current of shape {list(current.shape)}"
        )
    if out is not None and out.shape != reward.shape:
        raise ValueError(f"out has shape {list(out.shape)}; expected {list(reward.shape)}")
    if reward.device != current.device or (out is not None and out.device != current.device):
        raise ValueError(f"reward, current and out must be on one device, the current is on {current.device}")


def step_param(v, step_shape: torch.Size, dtype: torch.dtype, device, name: str) -> tuple[Tensor, bool]:
    """β or θ as (tensor, per_neuron): contiguous [M] in ``dtype`` (per neuron), or [1] in ``dtype``."""
    if not isinstance(v, Tensor):
        return torch.tensor([float(v)], dtype=dtype, device=device), False
    try:
        shape = torch.broadcast_shapes(v.shape, step_shape)
    except RuntimeError as e:
        raise ValueError(
            f"{name} of shape {list(v.shape)} does not broadcast to one step's shape {list(step_shape)}"
        ) from e
    if shape != step_shape:
        raise ValueError(
            f"{name} of shape {list(v.shape)} would broadcast one step's shape {list(step_shape)} to "
            f"{list(shape)}"
        )
    v = v.detach().to(device=device, dtype=dtype)
    if v.numel() == 1:
        return v.reshape(1).contiguous(), False
    return torch.broadcast_to(v, step_shape).contiguous().reshape(-1), True


def output(out: Tensor | None, result: Tensor, direct: bool) -> Tensor:
    """``result``, copied into ``out`` when the kernel could not write there directly."""
    if out is not None and not direct:
        out.copy_(result)
        return out
    return result
