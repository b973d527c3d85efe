"""A CUDA device without a GPU, for catching tensors made on the wrong device.

Inside :func:`fake_cuda`, a :class:`FakeCudaTensor` is an ordinary CPU tensor (every op computes real values
with the CPU kernels) that says ``device == cuda:0``; factories asked for ``device="cuda"`` (or a fake tensor's
``.device``) make fake-CUDA tensors, results of ops on fake-CUDA tensors are fake-CUDA again, ``.cpu()`` gives a
plain CPU tensor. An op that mixes a fake-CUDA tensor with a plain CPU tensor (other than a 0-d scalar, which
torch allows beside CUDA tensors too) raises :class:`DeviceMixError`, as a real GPU would: code that allocates
an index, a mask or a buffer on the CPU instead of on its input's device fails here.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode, get_default_nowrap_functions
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)


class DeviceMixError(RuntimeError):
    """An op received tensors on cuda and on the cpu."""


class FakeCudaTensor(torch.Tensor):
    """A CPU tensor that reports ``cuda:0`` as its device inside :func:`fake_cuda`."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            ret = func(*args, **(kwargs or {}))
        if func in get_default_nowrap_functions():
            return ret
        return tree_map(_as_fake, ret)


class FakeCudaParameter(FakeCudaTensor, torch.nn.Parameter):
    """A parameter on the fake CUDA device (``isinstance(p, nn.Parameter)`` holds, so modules keep it)."""

    def __new__(cls, data: torch.Tensor, requires_grad: bool = True):
        return torch.Tensor._make_subclass(cls, data, requires_grad)


def _as_fake(t):
    if isinstance(t, torch.Tensor) and not isinstance(t, FakeCudaTensor):
        return t.as_subclass(FakeCudaTensor)
    if type(t) is FakeCudaParameter:  # results of ops on parameters are plain (fake) tensors
        return torch.Tensor.as_subclass(t, FakeCudaTensor)
    return t


def _plain(t):
    return t.as_subclass(torch.Tensor) if isinstance(t, FakeCudaTensor) else t


def _is_cuda(d) -> bool:
    if isinstance(d, str):
        return d.startswith("cuda")
    return isinstance(d, torch.device) and d.type == "cuda"


def _is_cpu(d) -> bool:
    if isinstance(d, str):
        return d.startswith("cpu")
    return isinstance(d, torch.device) and d.type == "cpu"


_GETTERS = {torch.Tensor.device.__get__: lambda t: CUDA, torch.Tensor.is_cuda.__get__: lambda t: True}


class _FakeCudaMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        flat, _ = tree_flatten((args, kwargs))
        fake = [t for t in flat if isinstance(t, FakeCudaTensor)]
        if func in _GETTERS:
            return _GETTERS[func](args[0]) if fake else func(*args, **kwargs)
        if func in (torch.Tensor.cpu,):
            return _plain(func(*args, **kwargs))
        # where the result should live: a device argument (factories, .to, .new_*), else the inputs'
        asked = kwargs.get("device")
        if func is torch.Tensor.to:
            for a in args[1:]:
                if isinstance(a, (str, torch.device)):
                    asked = a
                elif isinstance(a, torch.Tensor):
                    asked = CUDA if isinstance(a, FakeCudaTensor) else torch.device("cpu")
        if func is torch.Tensor.cuda:
            return _as_fake(_plain(args[0]))
        cpu = [
            t
            for t in flat
            if isinstance(t, torch.Tensor) and not isinstance(t, FakeCudaTensor) and t.dim() > 0
        ]
        if fake and cpu and func not in (torch.Tensor.copy_,):
            shapes = [list(t.shape) for t in cpu]
            raise DeviceMixError(
                f"{getattr(func, '__name__', func)}: tensors on cuda:0 and on the cpu (cpu tensors of shapes "
                f"{shapes})"
            )
        if _is_cuda(asked):
            if "device" in kwargs:
                kwargs["device"] = "cpu"
            if func is torch.Tensor.to:
                args = tuple("cpu" if _is_cuda(a) else a for a in args)
            return tree_map(_as_fake, func(*args, **kwargs))
        out = func(*args, **kwargs)
        if _is_cpu(asked) and func in (torch.Tensor.to,):
            return tree_map(_plain, out)
        return out


@contextlib.contextmanager
def fake_cuda():
    """Run a block with a fake CUDA device (see the module docstring)."""
    with _FakeCudaMode():
        yield


def to_fake_cuda(obj):
    """A tensor as a fake-CUDA tensor (the same values and strides: an expanded input stays expanded), or a
    module with every parameter and buffer moved there (in place)."""
    if isinstance(obj, torch.Tensor):
        return _as_fake(obj.detach())
    for m in obj.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = FakeCudaParameter(p.detach().clone(), p.requires_grad)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = _as_fake(b.detach().clone())
    return obj
