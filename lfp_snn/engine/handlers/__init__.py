"""The handler registry: module types and graph functions/methods -> the handler that runs them.

The default table below is written out explicitly (no registration by import side effects). Users add
their own with :func:`register_handler` (docs/handlers.md).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...neurons import LIF, AdaptiveLIF, CubaLIF, MultiSpikeLIF, RecurrentLIF
from ...ops import PARAMETRIC
from .adaptive import AdaptiveLIFHandler
from .base import Back, Handler
from .batchnorm import BatchNormHandler
from .cuba import CubaLIFHandler
from .elementwise import (
    ACTIVATIONS,
    ActivationFunctionHandler,
    ActivationHandler,
    DropoutHandler,
    IdentityHandler,
    ScaleHandler,
)
from .lif import LIFHandler
from .merge import AddHandler, CatHandler, MaxHandler
from .multispike import MultiSpikeLIFHandler
from .parametric import AffineHandler
from .pooling import AvgPoolHandler, MaxPoolHandler
from .recurrent import RecurrentLIFHandler
from .shape import MetaHandler, ShapeFunctionHandler, ShapeModuleHandler

SHAPE_ONLY = (nn.Flatten, nn.Unflatten)


def _default_modules() -> dict[type, Handler]:
    affine, act = AffineHandler(), ActivationHandler()
    table: dict[type, Handler] = {cls: affine for cls in PARAMETRIC}
    table.update({cls: act for cls in ACTIVATIONS if cls is not nn.Identity})
    maxpool, avgpool, shape = MaxPoolHandler(), AvgPoolHandler(), ShapeModuleHandler()
    table.update(
        {
            LIF: LIFHandler(),
            CubaLIF: CubaLIFHandler(),
            AdaptiveLIF: AdaptiveLIFHandler(),
            RecurrentLIF: RecurrentLIFHandler(),
            MultiSpikeLIF: MultiSpikeLIFHandler(),
            nn.Identity: IdentityHandler(),
            nn.MaxPool1d: maxpool,
            nn.MaxPool2d: maxpool,
            nn.AvgPool1d: avgpool,
            nn.AvgPool2d: avgpool,
            nn.Flatten: shape,
            nn.Unflatten: shape,
            nn.Dropout: DropoutHandler(),
            nn.BatchNorm1d: BatchNormHandler(),
            nn.BatchNorm2d: BatchNormHandler(),
        }
    )
    return table


def _default_functions() -> dict[Any, Handler]:
    table: dict[Any, Handler] = {}
    add = AddHandler("a + b")
    for key in (operator.add, operator.iadd, torch.add, "add", "__add__"):
        table[key] = add
    table[torch.cat] = CatHandler()
    maximum = MaxHandler()
    for key in (torch.max, torch.maximum, "maximum"):
        table[key] = maximum
    flatten, reshape = ShapeFunctionHandler("flatten"), ShapeFunctionHandler("reshape / view")
    for key in (torch.flatten, "flatten"):
        table[key] = flatten
    for key in (torch.reshape, "reshape", "view"):
        table[key] = reshape
    for label, keys, binary in (
        ("relu", (F.relu, torch.relu, "relu"), True),
        ("sigmoid", (torch.sigmoid, F.sigmoid, "sigmoid"), False),
        ("tanh", (torch.tanh, F.tanh, "tanh"), False),
        ("leaky_relu", (F.leaky_relu,), False),
        ("silu", (F.silu,), False),
        ("elu", (F.elu,), False),
    ):
        h = ActivationFunctionHandler(label, binary)
        for key in keys:
            table[key] = h
    scale = ScaleHandler("x * c, x / c")
    for key in (operator.mul, operator.truediv, "mul", "div"):
        table[key] = scale
    meta = MetaHandler("x.size(), x.shape, x.dim()")
    for key in ("size", "dim", getattr, operator.getitem):
        table[key] = meta
    return table


_MODULES: dict[type, Handler] = _default_modules()
_FUNCTIONS: dict[Any, Handler] = _default_functions()


def register_handler(key: type | Any, handler: Handler, *, overwrite: bool = False) -> None:
    """Run modules of type ``key`` (an ``nn.Module`` subclass), or a graph function / method name (``key`` a
    callable or a string), with ``handler``. A module type with a handler is one node of the graph (its
    forward is not traced). Replacing an existing entry needs ``overwrite=True``."""
    if not isinstance(handler, Handler):
        raise TypeError(f"handler must be an lfp_snn.engine.Handler, got {type(handler).__name__}")
    if isinstance(key, type) and issubclass(key, nn.Module):
        table = _MODULES
    elif callable(key) or isinstance(key, str):
        table = _FUNCTIONS
    else:
        raise TypeError(f"key must be an nn.Module subclass, a function or a method name, got {key!r}")
    if key in table and not overwrite:
        raise ValueError(
            f"{getattr(key, '__name__', key)!r} has a handler already; pass overwrite=True to replace it"
        )
    table[key] = handler


def unregister_handler(key) -> None:
    """Remove the handler registered for ``key`` (a module type, function or method name)."""
    for table in (_MODULES, _FUNCTIONS):
        if key in table:
            del table[key]
            return
    raise KeyError(f"no handler is registered for {key!r}")


def module_handler(m: nn.Module) -> Handler | None:
    """The handler for module ``m``: its type's, or the nearest base class's."""
    for cls in type(m).__mro__:
        h = _MODULES.get(cls)
        if h is not None:
            return h
    return None


def function_handler(target) -> Handler | None:
    try:
        return _FUNCTIONS.get(target)
    except TypeError:  # unhashable target
        return None


def supported() -> tuple[list[str], list[str]]:
    """(module types, functions and methods) the engine runs."""
    mods = sorted({c.__name__ for c in _MODULES})
    fns = sorted({name for h in _FUNCTIONS.values() for name in h.names()})
    return mods, fns


def supported_layers() -> list[str]:
    """Names of the module types the engine runs."""
    return supported()[0]


__all__ = [
    "SHAPE_ONLY",
    "Back",
    "Handler",
    "function_handler",
    "module_handler",
    "register_handler",
    "supported",
    "supported_layers",
    "unregister_handler",
]
