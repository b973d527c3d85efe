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

from . import deep
from .kernels import CHOICES as BACKENDS
from .network import SpikingSequential
from .neurons import LIF, AdaptiveLIF, CubaLIF, Heaviside, RecurrentLIF

ARCHS = (
    "spiking-mlp",
    "spiking-lenet",
    "spiking-small",
    "deeper-snn",
    "resnet-snn",
    "vgg-snn",
    "mlp",
    "lenet",
)
NEURONS = ("lif", "cuba", "adaptive", "recurrent")  # the hidden layers' neuron (lfp_snn.neurons)
RESETS = ("subtract", "zero")  # what the LIF layer accepts for reset


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored as JSON next to checkpoints).

    A field that does not apply to the architecture (β on an ANN, an activation on a spiking model, hidden
    widths of LeNet) must keep its default: :meth:`validate` refuses another value, naming the field.
    """

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
    neuron: str = (
        "lif"  # hidden layers: lif | cuba (CubaLIF) | adaptive (AdaptiveLIF) | recurrent (RecurrentLIF)
    )
    alpha: float = 0.5  # cuba: synaptic decay α in [0, 1)
    rho: float = 0.95  # adaptive: decay ρ of the threshold adaptation, in [0, 1)
    adaptation: float = 0.2  # adaptive: κ, the threshold's rise after a spike (>= 0)
    weight_scale: float = 1.0  # multiplies the default initialisation of every weight
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("input_shape", "hidden"):  # JSON and users give lists: the config holds tuples
            if isinstance(getattr(self, key), list):
                setattr(self, key, tuple(getattr(self, key)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """The config a dict (as :meth:`to_dict` makes it, e.g. from config.json) describes."""
        if not isinstance(d, dict):
            raise ValueError(
                f"a model config must be a JSON object (dict), got {type(d).__name__}: {d!r:.80}"
            )
        fields = sorted(cls.__dataclass_fields__)
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; expected some of {fields}")
        known = dict(d)
        for key in ("input_shape", "hidden"):
            if isinstance(known.get(key), list):
                known[key] = tuple(known[key])
        if (
            known.get("arch") in ARCHS
            and not is_spiking_arch(known["arch"])
            and known.get("backend") == "torch"
        ):
            # files written while the default backend was "torch" store it for ANNs too, where it never applied
            known["backend"] = cls.backend
        return cls(**known)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field and what it accepts."""
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {ARCHS}")
        shape = self.input_shape
        if not (
            isinstance(shape, tuple) and len(shape) in (1, 3) and all(_is_int(n) and n >= 1 for n in shape)
        ):
            raise ValueError(f"input_shape must be (C, H, W) or (F,) of integers >= 1, got {shape!r}")
        if not (_is_int(self.classes) and self.classes >= 2):
            raise ValueError(f"classes must be an integer >= 2, got {self.classes!r}")
        if self.hidden is not None and not (
            isinstance(self.hidden, tuple) and self.hidden and all(_is_int(n) and n >= 1 for n in self.hidden)
        ):
            raise ValueError(f"hidden must be None or widths (integers >= 1), got {self.hidden!r}")
        if not (_is_number(self.beta) and 0 < self.beta <= 1):
            raise ValueError(f"beta (membrane decay) must lie in (0, 1], got {self.beta!r}")
        if not (_is_number(self.threshold) and 0 < self.threshold < math.inf):
            raise ValueError(f"threshold must be a finite number > 0, got {self.threshold!r}")
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {self.reset!r}")
        if not isinstance(self.reset_delay, bool):
            raise ValueError(f"reset_delay must be true or false, got {self.reset_delay!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        if self.neuron not in NEURONS:
            raise ValueError(f"unknown neuron {self.neuron!r}; expected one of {NEURONS}")
        if not (_is_number(self.alpha) and 0 <= self.alpha < 1):
            raise ValueError(f"alpha (synaptic decay) must lie in [0, 1), got {self.alpha!r}")
        if not (_is_number(self.rho) and 0 <= self.rho < 1):
            raise ValueError(f"rho (adaptation decay) must lie in [0, 1), got {self.rho!r}")
        if not (_is_number(self.adaptation) and self.adaptation >= 0):
            raise ValueError(f"adaptation must be a finite number >= 0, got {self.adaptation!r}")
        if self.neuron == "recurrent" and self.arch not in MLP_ARCHS:
            raise ValueError(
                f"neuron='recurrent' needs dense hidden layers ({', '.join(a for a in MLP_ARCHS if is_spiking_arch(a))}); "
                f"arch {self.arch!r} has convolutions"
            )
        if not (_is_number(self.weight_scale) and 0 < self.weight_scale < math.inf):
            raise ValueError(f"weight_scale must be a finite number > 0, got {self.weight_scale!r}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be a dict, got {self.extra!r}")
        defaults = ModelConfig()
        for name, why in unused_fields(self).items():
            value = getattr(self, name)
            if value != getattr(defaults, name):
                raise ValueError(f"{name}={value!r} does not apply: {why}")


SPIKING_FIELDS = (
    "beta",
    "threshold",
    "reset",
    "reset_delay",
    "backend",
    "neuron",
    "alpha",
    "rho",
    "adaptation",
)
"""ModelConfig fields of the LIF neurons: spiking architectures only."""
MLP_ARCHS = ("spiking-mlp", "spiking-small", "mlp")
"""Architectures whose hidden widths ``hidden`` sets."""


def unused_fields(cfg: ModelConfig) -> dict[str, str]:
    """The fields of ``cfg`` that do not apply to its architecture -> why (an empty dict for an unknown arch)."""
    if cfg.arch not in ARCHS:
        return {}
    out = {}
    if is_spiking_arch(cfg.arch):
        out["activation"] = f"it is the activation of ANNs; arch {cfg.arch!r} is spiking (LIF neurons)"
        if cfg.neuron != "cuba":
            out["alpha"] = f"it is the synaptic decay of neuron 'cuba'; the neuron is {cfg.neuron!r}"
        if cfg.neuron != "adaptive":
            for name in ("rho", "adaptation"):
                out[name] = (
                    f"it sets the threshold adaptation of neuron 'adaptive'; the neuron is {cfg.neuron!r}"
                )
    else:
        for name in SPIKING_FIELDS:
            out[name] = f"it sets the LIF neurons of spiking models; arch {cfg.arch!r} is an ANN"
    if cfg.arch not in MLP_ARCHS:
        out["hidden"] = (
            f"it sets the hidden widths of {', '.join(MLP_ARCHS)}; arch {cfg.arch!r} has fixed layers"
        )
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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


def _hidden_neuron(cfg: ModelConfig, width: int | None = None) -> nn.Module:
    """The neuron of a hidden layer (``cfg.neuron``; the output layer is always a LIF read-out)."""
    if cfg.neuron == "cuba":
        return CubaLIF(cfg.alpha, cfg.beta, cfg.threshold, cfg.reset, cfg.reset_delay, cfg.backend)
    if cfg.neuron == "adaptive":
        backend = "torch" if cfg.backend == "auto" else cfg.backend
        return AdaptiveLIF(
            cfg.beta, cfg.threshold, cfg.rho, cfg.adaptation, cfg.reset, cfg.reset_delay, backend
        )
    if cfg.neuron == "recurrent":
        backend = "torch" if cfg.backend == "auto" else cfg.backend
        return RecurrentLIF(width, cfg.beta, cfg.threshold, cfg.reset, cfg.reset_delay, backend=backend)
    return _lif(cfg)


def _features(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def spiking_mlp(cfg: ModelConfig) -> SpikingSequential:
    """Dense layers, each followed by a LIF layer (App. A.6.3: hidden 1000-1000)."""
    widths = [_features(cfg.input_shape), *(cfg.hidden or (1000, 1000)), cfg.classes]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(a, b), _hidden_neuron(cfg, b) if i < len(widths) - 2 else _lif(cfg)]
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
        _hidden_neuron(cfg),
        convs[1],
        convs[2],
        _hidden_neuron(cfg),
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


def deeper_snn(cfg: ModelConfig) -> SpikingSequential:
    """The paper's DeeperSNN (lfp_snn.deep.deeper_snn): five 3x3 convolutions without bias, LIF read-out."""
    return _deep(deep.deeper_snn, cfg)


def resnet_snn(cfg: ModelConfig) -> nn.Module:
    """The paper's ResNet-like SNN with a 1x1-conv skip branch (lfp_snn.deep.ResNetSNN)."""
    return _deep(deep.ResNetSNN, cfg)


def vgg_snn(cfg: ModelConfig) -> SpikingSequential:
    """[conv 3x3 - BatchNorm - neuron] x 2 - pool, twice (32, 64 channels), dense read-out (lfp_snn.deep)."""
    return _deep(deep.vgg_snn, cfg)


def _deep(build, cfg: ModelConfig) -> nn.Module:
    if len(cfg.input_shape) != 3:
        raise ValueError(f"arch {cfg.arch!r} needs a (C, H, W) input shape, got {tuple(cfg.input_shape)}")
    try:
        model = build(cfg.input_shape, cfg.classes, lambda: _hidden_neuron(cfg))
    except RuntimeError as e:  # a pooling or convolution with nothing left to work on
        raise ValueError(
            f"arch {cfg.arch!r} cannot take inputs of shape {tuple(cfg.input_shape)}: its convolutions and "
            f"poolings leave nothing ({e}); use larger images (3x32x32 or 1x28x28 as in the paper)"
        ) from e
    last = [m for m in model.modules() if isinstance(m, (LIF, CubaLIF, AdaptiveLIF))][-1]
    if not isinstance(last, LIF):  # the read-out is a LIF, as in the other architectures
        _replace(model, last, _lif(cfg))
    return model


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return


_BUILDERS = {
    "spiking-mlp": spiking_mlp,
    "spiking-lenet": spiking_lenet,
    "spiking-small": spiking_small,
    "deeper-snn": deeper_snn,
    "resnet-snn": resnet_snn,
    "vgg-snn": vgg_snn,
    "mlp": mlp,
    "lenet": lenet,
}


def build_model(cfg: ModelConfig | dict, seed: int | None = None) -> nn.Module:
    """Build the model a config describes (initialised from ``seed`` when given)."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    cfg.validate()
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


ANN_ARCHS = ("mlp", "lenet")


def is_spiking_arch(arch: str) -> bool:
    """True for the spiking architectures (every one of :data:`ARCHS` but the ANNs ``mlp`` and ``lenet``)."""
    return isinstance(arch, str) and (arch.startswith("spiking") or (arch in ARCHS and arch not in ANN_ARCHS))
