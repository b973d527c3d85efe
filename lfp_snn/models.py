"""Reference architectures built from the toolkit's layers, and a config that rebuilds them.

Spiking models are :class:`lfp_snn.SpikingSequential` (input [T, B, C, H, W] or [T, B, F]); ANNs are
``nn.Sequential``. :func:`build_model` turns a plain dict (as stored beside checkpoints) into a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .network import SpikingSequential
from .neurons import LIF, Heaviside

ARCHS = ("spiking-mlp", "spiking-lenet", "spiking-small", "mlp", "lenet")
RESETS = ("subtract", "zero")  # what the LIF layer accepts for reset


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored as JSON next to checkpoints)."""

    arch: str = "spiking-small"
    input_shape: tuple[int, ...] = (1, 8, 8)  # one sample: (C, H, W) or (F,)
    classes: int = 10
    hidden: tuple[int, ...] | None = None  # widths of the hidden dense layers (MLPs)
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "subtract"
    reset_delay: bool = True
    activation: str = "relu"  # ANNs: relu | heaviside | tanh | sigmoid | silu | elu | leaky-relu
    backend: str = "auto"  # LIF scan kernels: auto | torch | native | triton (lfp_snn.kernels)
    weight_scale: float = 1.0  # multiplies the default initialisation of every weight
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; expected some of {sorted(known)}")
        known["input_shape"] = tuple(known.get("input_shape", (1, 8, 8)))
        if known.get("hidden") is not None:
            known["hidden"] = tuple(known["hidden"])
        return cls(**known)


ACTIVATIONS = {
    "relu": nn.ReLU,
    "heaviside": Heaviside,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky-relu": nn.LeakyReLU,
}


def _lif(cfg: ModelConfig) -> LIF:
    return LIF(cfg.beta, cfg.threshold, cfg.reset, cfg.reset_delay, cfg.backend)


def _features(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def spiking_mlp(cfg: ModelConfig) -> SpikingSequential:
    """Dense layers, each followed by a LIF layer (App. A.6.3: hidden 1000-1000)."""
    widths = [_features(cfg.input_shape), *(cfg.hidden or (1000, 1000)), cfg.classes]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), _lif(cfg)]
    return SpikingSequential(*layers)


def _lenet_padding(cfg: ModelConfig) -> int:
    if len(cfg.input_shape) != 3:
        raise ValueError(f"LeNet needs a (C, H, W) input shape, got {tuple(cfg.input_shape)}")
    return 0 if min(cfg.input_shape[1:]) >= 28 else 2  # small inputs (8x8 digits) keep their size


def _conv_out(shape, layers) -> int:
    with torch.no_grad():
        x = torch.zeros(1, *shape)
        for m in layers:
            x = m(x)
    return x.numel()


def spiking_lenet(cfg: ModelConfig) -> SpikingSequential:
    """Conv 12 k5 -> LIF -> MaxPool 2 -> Conv 64 k5 -> LIF -> MaxPool 2 -> Flatten -> dense -> LIF."""
    pad = _lenet_padding(cfg)
    c = cfg.input_shape[0]
    convs = [
        nn.Conv2d(c, 12, 5, padding=pad),
        nn.MaxPool2d(2),
        nn.Conv2d(12, 64, 5, padding=pad),
        nn.MaxPool2d(2),
    ]
    n = _conv_out(cfg.input_shape, convs)
    return SpikingSequential(
        convs[0],
        _lif(cfg),
        convs[1],
        convs[2],
        _lif(cfg),
        convs[3],
        nn.Flatten(),
        nn.Linear(n, cfg.classes),
        _lif(cfg),
    )


def spiking_small(cfg: ModelConfig) -> SpikingSequential:
    """The fast default: Flatten -> dense (256) -> LIF -> dense -> LIF."""
    hidden = cfg.hidden or (256,)
    return spiking_mlp(ModelConfig(**{**cfg.__dict__, "hidden": hidden}))


def mlp(cfg: ModelConfig) -> nn.Sequential:
    widths = [_features(cfg.input_shape), *(cfg.hidden or (256, 128)), cfg.classes]
    act = ACTIVATIONS[cfg.activation]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def lenet(cfg: ModelConfig) -> nn.Sequential:
    """The paper's LeNet (App. A.6.1): Conv 6 k5 - act - MaxPool 2 - Conv 16 k5 - act - MaxPool 2 - 120 - 84 - C."""
    pad = _lenet_padding(cfg)
    act = ACTIVATIONS[cfg.activation]
    convs = [
        nn.Conv2d(cfg.input_shape[0], 6, 5, padding=pad),
        act(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    n = _conv_out(cfg.input_shape, convs)
    return nn.Sequential(
        *convs, nn.Linear(n, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, cfg.classes)
    )


_BUILDERS = {
    "spiking-mlp": spiking_mlp,
    "spiking-lenet": spiking_lenet,
    "spiking-small": spiking_small,
    "mlp": mlp,
    "lenet": lenet,
}


def build_model(cfg: ModelConfig | dict, seed: int | None = None) -> nn.Module:
    """Build the model a config describes (initialised from ``seed`` when given)."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    if cfg.arch not in _BUILDERS:
        raise ValueError(f"unknown architecture {cfg.arch!r}; expected one of {ARCHS}")
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {cfg.activation!r}; expected one of {sorted(ACTIVATIONS)}")
    if cfg.classes < 2:
        raise ValueError(f"classes must be >= 2, got {cfg.classes}")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _BUILDERS[cfg.arch](cfg)
    else:
        model = _BUILDERS[cfg.arch](cfg)
    if cfg.weight_scale != 1.0:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("weight"):
                    p.mul_(cfg.weight_scale)
    return model


def is_spiking_arch(arch: str) -> bool:
    return arch.startswith("spiking")
