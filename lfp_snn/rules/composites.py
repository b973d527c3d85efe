"""Composites: which LFP rule each parametric layer uses (App. A.6.2).

A :class:`Composite` maps layer types (``nn.Linear``, ``nn.Conv2d``, ...) and, with priority, layer names
(as in ``model.named_modules()``) to rules. Presets are registered by name; users add their own with
:func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from .alpha_beta import AlphaBeta
from .base import Rule
from .epsilon import Epsilon
from .zplus_zminus import ZPlusZMinus

CONV = (nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True)
class Composite:
    """Layer type / layer name -> rule. ``default`` serves parametric layers that nothing else matches."""

    by_type: Mapping[type, Rule] = field(default_factory=dict)
    by_name: Mapping[str, Rule] = field(default_factory=dict)
    default: Rule | None = None
    name: str = "custom"

    def rule_for(self, name: str, module: nn.Module) -> Rule:
        if name in self.by_name:
            return self.by_name[name]
        for cls in type(module).__mro__:
            if cls in self.by_type:
                return self.by_type[cls]
        if self.default is not None:
            return self.default
        raise ValueError(
            f"composite {self.name!r} has no rule for layer {name!r} ({type(module).__name__}); it maps "
            f"types {[c.__name__ for c in self.by_type]} and names {list(self.by_name)}"
        )


NORM = (nn.BatchNorm1d, nn.BatchNorm2d)  # the presets give normalisation layers the ε rule (their only one)


def _uniform(rule: Callable[[float], Rule]) -> Callable[[float], Composite]:
    return lambda eps: Composite(by_type={t: Epsilon(eps) for t in NORM}, default=rule(eps))


def _mixed(dense: Callable[[float], Rule], conv: Callable[[float], Rule]) -> Callable[[float], Composite]:
    def make(eps: float) -> Composite:
        c = conv(eps)
        return Composite(
            by_type={nn.Linear: dense(eps), **{t: c for t in CONV}, **{t: Epsilon(eps) for t in NORM}}
        )

    return make


def _ab(eps: float) -> Rule:
    return AlphaBeta(2.0, 1.0, eps)


_PRESETS: dict[str, Callable[[float], Composite]] = {
    "epsilon": _uniform(Epsilon),
    "zero": lambda eps: _uniform(Epsilon)(0.0),
    "zplus-zminus": _uniform(ZPlusZMinus),
    "alpha2-beta1": _uniform(_ab),
    "epsilon-zplus-zminus": _mixed(Epsilon, ZPlusZMinus),
    "epsilon-alpha2-beta1": _mixed(Epsilon, _ab),
}


def presets() -> list[str]:
    """Names accepted by :func:`get_composite`."""
    return sorted(_PRESETS)


def register(name: str, factory: Callable[[float], Composite], overwrite: bool = False) -> None:
    """Register ``factory(eps) -> Composite`` under ``name``."""
    if name in _PRESETS and not overwrite:
        raise ValueError(f"a composite named {name!r} exists; pass overwrite=True to replace it")
    _PRESETS[name] = factory


def get_composite(spec: str | Rule | Composite, eps: float = 1e-6) -> Composite:
    """A composite from a preset name, a single rule (used for every layer) or a composite."""
    if isinstance(spec, Composite):
        return spec
    if isinstance(spec, Rule):
        return Composite(default=spec, name=spec.name)
    if isinstance(spec, str) and spec in _PRESETS:
        c = _PRESETS[spec](eps)
        return Composite(c.by_type, c.by_name, c.default, spec)
    raise ValueError(
        f"unknown rule or composite {spec!r}; expected a Rule, a Composite or one of {presets()}"
    )
