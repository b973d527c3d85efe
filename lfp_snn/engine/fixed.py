"""The fixed-point network of a model: which nodes form which integer stage, and each layer's integers.

``FeedbackPlan(fixed_point=FixedPoint(...))`` runs the forward pass in the FPGA bundle's integer arithmetic
(integer-in-the-loop training, docs/export.md); :func:`fixed_network` is made once per call from the model's
current float weights (so they are quantised again at every training step), and the FPGA exporter
(:func:`lfp_snn.export.quantize`) reads the same stages, so training and the bundle share every rounding rule
(:mod:`lfp_snn.quantization`).

The model must be a chain of the stages the bundle holds:

- ``Linear`` / ``Conv2d`` (zero padding, no dilation or groups) read by a ``LIF`` layer: one integer layer;
- ``MaxPool2d`` of spikes (the OR over each window; no dilation or ceil mode);
- ``AvgPool2d`` of spikes, taken as a *sum* pool: its output is the window's spike count, and its
  ``1 / divisor`` goes into the weights of the layer that reads it (which quantises ``w / divisor``);
- ``Flatten`` (C order), ``Identity`` and inactive ``Dropout``, which change nothing.

Linear/Conv2d and pooling layers read binary spikes (the model's input, a LIF layer's or a max pool's) or a
sum pool's counts; the last layer is a LIF. Anything else is an error that names the layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..neurons.lif import LIF
from ..ops import affine_op
from ..quantization import FixedPoint, QuantAffine, quantize_layer

PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout)
WHAT = (
    "chains of Linear/Conv2d -> LIF layers, MaxPool2d and AvgPool2d (as a sum pool) of spikes, Flatten, "
    "Identity and inactive Dropout"
)


class FixedPointError(ValueError):
    """A model (or a layer setting) that the integer network cannot hold."""


@dataclass
class Stage:
    """One stage of the integer network. ``kind``: ``"layer"`` (a Linear/Conv2d + LIF pair: ``nodes`` are
    the two node indices, ``quant`` its integers), ``"max_pool"``, ``"sum_pool"`` (``divisor``: the window's
    size, or the pool's divisor_override) or ``"flatten"``; ``module`` is the torch layer (the Linear/Conv2d
    of a layer), ``name`` its path in the model."""

    kind: str
    name: str
    nodes: tuple[int, ...]
    module: nn.Module
    quant: QuantAffine | None = None
    lif: LIF | None = None
    divisor: int = 1


class _QuantizedWeights:
    """What the LFP rules read of a layer -- its weight, bias and convolution settings -- with the integer
    network's weights in real units, ``W_q s`` and ``b_q s``, in place of the float ones."""

    def __init__(self, module: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
        self.__dict__.update(_module=module, weight=weight, bias=bias)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["_module"], name)


@dataclass
class FixedNetwork:
    """The integer network of a model: its stages in order, and per node what the handlers need."""

    fmt: FixedPoint
    stages: list[Stage]
    layers: dict[int, QuantAffine]  # Linear/Conv2d node and LIF node -> the layer's integers
    sum_pools: dict[int, int]  # AvgPool2d node -> divisor (it runs as a sum pool)
    reads_input: set[int]  # nodes that read the model's input (which must be 0/1 spikes)
    _cache: dict = field(default_factory=dict)

    def layer(self, index: int) -> QuantAffine:
        return self.layers[index]

    def integer_weights(self, index: int, module: nn.Module) -> tuple[Tensor, Tensor | None]:
        """W_q and b_q of the Linear/Conv2d node ``index`` as float64 (exact for every integer the formats
        allow), for the forward GEMM: float64 products and sums of these integers are exact below 2^53."""
        key = ("int", index)
        if key not in self._cache:
            q = self.layers[index]
            b = None if module.bias is None else q.bias.to(torch.float64)
            self._cache[key] = (q.weight.to(torch.float64), b)
        return self._cache[key]

    def rule_op(self, index: int, module: nn.Module, dtype: torch.dtype):
        """The layer's affine op as the LFP rules see it: W_q s and b_q s in ``dtype``."""
        key = ("op", index, dtype)
        if key not in self._cache:
            q = self.layers[index]
            w = (q.weight.to(torch.float64) * q.scale).to(dtype)
            b = None if module.bias is None else (q.bias.to(torch.float64) * q.scale).to(dtype)
            op = affine_op(module)
            op.module = _QuantizedWeights(module, w, b)
            self._cache[key] = op
        return self._cache[key]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)


def check_pool(node, m: nn.Module) -> None:
    where = node.describe()
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices:
            raise FixedPointError(
                f"{where}: the integer network takes MaxPool2d without dilation, ceil_mode or return_indices"
            )
        return
    if m.ceil_mode:
        raise FixedPointError(f"{where}: the integer network takes AvgPool2d without ceil_mode")
    if not m.count_include_pad and _pair(m.padding) != (0, 0):
        raise FixedPointError(
            f"{where}: count_include_pad=False with padding divides each window by another count; the "
            "integer network takes one divisor per pool"
        )


def pool_divisor(m: nn.AvgPool2d) -> int:
    if m.divisor_override:
        return int(m.divisor_override)
    kh, kw = _pair(m.kernel_size)
    return kh * kw


def check_conv2d(node, m: nn.Conv2d) -> None:
    where = node.describe()
    if m.groups != 1 or _pair(m.dilation) != (1, 1):
        raise FixedPointError(f"{where}: the integer network takes Conv2d with groups=1 and no dilation")
    if m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise FixedPointError(
            f"{where}: the integer network takes Conv2d with zero padding given as integers"
        )


def fixed_network(graph, fmt: FixedPoint, *, fused: bool = True, warn: bool = True) -> FixedNetwork:
    """The integer network of the model behind ``graph`` (see the module docstring). ``fused``: every LIF
    must read its Linear/Conv2d directly (the engine's fused pair; the exporter also accepts the Identity a
    folded BatchNorm leaves between them). FixedPointError naming the first layer that does not fit."""
    nodes = graph.nodes
    kind: dict[int, str] = {0: "spikes"}  # what each node's output holds: spikes, counts or current
    divisor: dict[int, int] = {}
    origin: dict[int, int] = {0: 0}  # the node a pass-through layer passes on
    stages: list[Stage] = []
    layers: dict[int, QuantAffine] = {}
    sum_pools: dict[int, int] = {}
    reads_input: set[int] = set()
    for node in nodes[1:]:
        where = node.describe()
        if node.kind != "module":
            raise FixedPointError(f"{where} is not part of the integer network, which takes {WHAT}")
        if len(node.inputs) != 1 or len(node.users) > 1:
            raise FixedPointError(f"{where}: the integer network is a chain ({WHAT}); this layer branches")
        m, src = node.module, node.inputs[0]
        got = kind[src]
        if origin.get(src, src) == 0:
            reads_input.add(node.index)
        if isinstance(m, PASS_THROUGH):
            if isinstance(m, nn.Dropout) and m.training and m.p > 0:
                raise FixedPointError(
                    f"{where}: active dropout (p={m.p}) has no integer form; call model.eval() or use p=0"
                )
            kind[node.index], origin[node.index] = got, origin.get(src, src)
            divisor[node.index] = divisor.get(src, 1)
            if isinstance(m, nn.Flatten):
                stages.append(Stage("flatten", node.name, (node.index,), m))
            continue
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if isinstance(m, nn.Conv2d):
                check_conv2d(node, m)
            if got not in ("spikes", "counts"):
                raise FixedPointError(
                    f"{where} reads a {got}; in the integer network Linear/Conv2d layers read spikes or a sum "
                    f"pool's spike counts ({WHAT})"
                )
            kind[node.index], divisor[node.index] = "current", divisor.get(src, 1)
            continue
        if type(m) is LIF:
            affine = origin.get(src, src)
            if kind[src] != "current" or (fused and affine != src):
                raise FixedPointError(
                    f"{where} does not read a Linear/Conv2d layer directly; the integer network pairs each "
                    f"LIF with the Linear/Conv2d before it ({WHAT})"
                )
            a = nodes[affine]
            q = quantize_layer(
                a.name, a.module.weight, a.module.bias, m.threshold, m.beta, fmt, divisor[affine], warn
            )
            layers[affine] = layers[node.index] = q
            stages.append(Stage("layer", a.name, (affine, node.index), a.module, q, m, divisor[affine]))
            kind[node.index] = "spikes"
            continue
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            check_pool(node, m)
            if got != "spikes":
                raise FixedPointError(
                    f"{where} reads a {got}; the integer network pools spikes only (a LIF layer's, a max pool's "
                    "or the model's input)"
                )
            if isinstance(m, nn.MaxPool2d):
                stages.append(Stage("max_pool", node.name, (node.index,), m))
                kind[node.index] = "spikes"
            else:
                d = pool_divisor(m)
                if not 1 <= _pair(m.kernel_size)[0] * _pair(m.kernel_size)[1] <= 255:
                    raise FixedPointError(f"{where}: windows of more than 255 positions are not supported")
                stages.append(Stage("sum_pool", node.name, (node.index,), m, divisor=d))
                kind[node.index], divisor[node.index] = "counts", d
                sum_pools[node.index] = d
            continue
        raise FixedPointError(
            f"{where} is not supported by the integer network (the FPGA bundle and integer-in-the-loop "
            f"training), which takes {WHAT}"
        )
    out = graph.output
    last = [s for s in stages if s.kind != "flatten"]
    if kind.get(out) != "spikes" or not last or last[-1].kind != "layer":
        raise FixedPointError(
            "the model must end in a LIF layer (its output spikes are what the integer network returns); "
            f"it ends in {nodes[out].describe()}"
        )
    return FixedNetwork(fmt, stages, layers, sum_pools, reads_input)


__all__ = ["FixedNetwork", "FixedPointError", "Stage", "fixed_network"]
