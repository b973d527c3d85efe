"""Deep spiking conv nets: the reference's deeper models, a VGG-style SNN with BatchNorm, SEW residual blocks.

Every builder takes one sample's shape ``(C, H, W)``, the number of classes and a factory for the neurons
(``lif()``), and returns a model the engine runs (a :class:`lfp_snn.SpikingSequential`, or a module with its
own ``forward`` for the residual nets). Input ``[T, B, C, H, W]``.

- :func:`deeper_snn`: the TMLR paper's ``DeeperSNN`` (five 3x3 convolutions without bias, with padding 2, 1, 1,
  2, 2 and 30-150-250-200-100 channels, max pooling after the first four, a bias-free dense read-out): 2,500
  read-out inputs on 3x32x32, 1,600 on 1x28x28.
- :class:`ResNetSNN`: the paper's ResNet-like SNN: 5x5 conv (30), pool, 3x3 conv (150), pool, then a 3x3 conv
  (250) and a 1x1-conv skip branch (250) on the same input, each with LIF neurons, merged by the element-wise
  maximum of their spikes (the reference's ``torch.max``), 3x3 pooling, a 4x4 conv (200, padding 2) and a
  bias-free read-out: 1,800 read-out inputs on 3x32x32 and on 1x28x28. (The reference resizes the skip branch
  to 8x8 by nearest interpolation, the identity on 3x32x32; here the branches are simply of the same size.)
- :func:`vgg_snn`: [conv 3x3 - BatchNorm - LIF] x 2 - pool, twice (``widths``), then a dense read-out.
- :class:`SEWBlock`: SEW-ResNet's block (Fang et al. 2021), spikes out = SN(BN(conv(SN(BN(conv(x)))))) + x
  (ADD: a sum node, reward shared by the LRP sum rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .network import SpikingSequential

Neuron = Callable[[], nn.Module]


def _features(layers: Sequence[nn.Module], shape: Sequence[int]) -> int:
    """Outputs per sample of the convolutions and poolings ``layers`` on an input of ``shape``."""
    with torch.no_grad():
        x = torch.zeros(1, *shape)
        for m in layers:
            x = m(x)
    return x.numel()


def _check_image(shape: Sequence[int], what: str) -> None:
    if len(shape) != 3:
        raise ValueError(f"{what} needs a (C, H, W) input shape, got {tuple(shape)}")


def deeper_snn(shape: Sequence[int], classes: int, lif: Neuron) -> SpikingSequential:
    _check_image(shape, "deeper-snn")
    c = shape[0]
    convs = [
        (nn.Conv2d(c, 30, 3, padding=2, bias=False), True),
        (nn.Conv2d(30, 150, 3, padding=1, bias=False), True),
        (nn.Conv2d(150, 250, 3, padding=1, bias=False), True),
        (nn.Conv2d(250, 200, 3, padding=2, bias=False), True),
        (nn.Conv2d(200, 100, 3, padding=2, bias=False), False),
    ]
    layers: list[nn.Module] = []
    for conv, pool in convs:
        layers += [conv, lif()] + ([nn.MaxPool2d(2, 2)] if pool else [])
    n = _features([m for m in layers if isinstance(m, (nn.Conv2d, nn.MaxPool2d))], shape)
    return SpikingSequential(*layers, nn.Flatten(), nn.Linear(n, classes, bias=False), lif())


class ResNetSNN(nn.Module):
    """The paper's ResNet-like SNN (see the module docstring)."""

    def __init__(self, shape: Sequence[int], classes: int, lif: Neuron) -> None:
        super().__init__()
        _check_image(shape, "resnet-snn")
        self.conv1, self.lif1, self.pool1 = (
            nn.Conv2d(shape[0], 30, 5, padding=2, bias=False),
            lif(),
            nn.MaxPool2d(2),
        )
        self.conv2, self.lif2, self.pool2 = (
            nn.Conv2d(30, 150, 3, padding=1, bias=False),
            lif(),
            nn.MaxPool2d(2),
        )
        self.conv3, self.lif3 = nn.Conv2d(150, 250, 3, padding=1, bias=False), lif()
        self.skip, self.lif_skip = nn.Conv2d(150, 250, 1, bias=False), lif()
        self.pool3 = nn.MaxPool2d(3, 3)
        self.conv4, self.lif4 = nn.Conv2d(250, 200, 4, padding=2, bias=False), lif()
        stem = [self.conv1, self.pool1, self.conv2, self.pool2, self.conv3, self.pool3, self.conv4]
        self.fc, self.lif_out = nn.Linear(_features(stem, shape), classes, bias=False), lif()

    def forward(self, x):
        x = self.pool1(self.lif1(self.conv1(x)))
        x = self.pool2(self.lif2(self.conv2(x)))
        x = torch.max(
            self.lif3(self.conv3(x)), self.lif_skip(self.skip(x))
        )  # the residual merge: OR of spikes
        x = self.lif4(self.conv4(self.pool3(x)))
        return self.lif_out(self.fc(torch.flatten(x, 1)))


def vgg_snn(
    shape: Sequence[int], classes: int, lif: Neuron, widths: Sequence[int] = (32, 64)
) -> SpikingSequential:
    _check_image(shape, "vgg-snn")
    layers: list[nn.Module] = []
    c = shape[0]
    for w in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), lif()]
            c = w
        layers.append(nn.MaxPool2d(2))
    n = _features([m for m in layers if isinstance(m, (nn.Conv2d, nn.MaxPool2d))], shape)
    return SpikingSequential(*layers, nn.Flatten(), nn.Linear(n, classes), lif())


class SEWBlock(nn.Module):
    """SEW-ResNet block: out = SN(BN(conv(SN(BN(conv(x)))))) + x, for spikes x [T, B, C, H, W] of ``channels``
    channels (3x3 convolutions with padding 1, no bias). The sum of two spike tensors takes values 0, 1, 2: the
    next layer's input, as in SEW-ResNet's ADD connection."""

    def __init__(self, channels: int, lif: Neuron) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
        self.conv1, self.bn1, self.sn1 = (
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            lif(),
        )
        self.conv2, self.bn2, self.sn2 = (
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            lif(),
        )

    def forward(self, x):
        return self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))) + x


def sew_resnet(
    shape: Sequence[int], classes: int, lif: Neuron, channels: int = 32, blocks: int = 2
) -> nn.Module:
    """A small SEW-ResNet: conv 3x3 - BN - LIF stem, ``blocks`` SEW blocks, 2x2 pooling, dense read-out."""
    _check_image(shape, "sew-resnet")
    stem = [nn.Conv2d(shape[0], channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), lif()]
    body = [SEWBlock(channels, lif) for _ in range(blocks)]
    n = channels * math.prod(s // 2 for s in shape[1:])
    return SpikingSequential(*stem, *body, nn.MaxPool2d(2), nn.Flatten(), nn.Linear(n, classes), lif())
