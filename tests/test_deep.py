"""The deep spiking conv nets (lfp_snn.deep): the reference's layer shapes, one LFP step each, and a SEW block
giving the feedback of the same layers written out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.deep import ResNetSNN, SEWBlock, deeper_snn, sew_resnet, vgg_snn

pytestmark = pytest.mark.usefixtures("one_thread")


def _lif():
    return lfp_snn.LIF(0.9, 0.5)


@pytest.mark.parametrize("shape, deeper, resnet", [((3, 32, 32), 2500, 1800), ((1, 28, 28), 1600, 1800)])
def test_the_reference_models_have_the_reference_shapes(shape, deeper, resnet):
    d = deeper_snn(shape, 10, _lif)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [30, 150, 250, 200, 100]
    assert [c.padding for c in convs] == [(2, 2), (1, 1), (1, 1), (2, 2), (2, 2)]
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert d[-2].in_features == deeper and d[-2].bias is None
    r = ResNetSNN(shape, 10, _lif)
    assert r.fc.in_features == resnet and r.skip.kernel_size == (1, 1) and r.conv1.kernel_size == (5, 5)


@pytest.mark.parametrize("build", [deeper_snn, ResNetSNN, vgg_snn, sew_resnet])
def test_every_deep_model_takes_an_lfp_step(build):
    torch.manual_seed(0)
    m = build((1, 16, 16), 4, _lif)
    x = torch.rand(3, 2, 1, 16, 16)
    res = lfp_snn.feedback_result(m, x, torch.tensor([0, 3]))
    assert res.output.shape == (3, 2, 4)
    names = {n for n, _ in m.named_parameters()}
    assert set(res.feedback) <= names and all(torch.isfinite(v).all() for v in res.feedback.values())


class _SewByHand(nn.Module):
    """The SEW block's layers, the residual sum written out."""

    def __init__(self, block: SEWBlock) -> None:
        super().__init__()
        self.first = nn.Sequential(block.conv1, block.bn1, block.sn1)
        self.second = nn.Sequential(block.conv2, block.bn2, block.sn2)

    def forward(self, x):
        y = self.second(self.first(x))
        return y + x


def test_a_sew_block_is_its_layers_plus_the_identity():
    torch.manual_seed(1)
    block = SEWBlock(4, _lif).double()
    head = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _lif())
    net = lfp_snn.SpikingSequential(*head, block, nn.Flatten(), nn.Linear(4 * 36, 3), _lif()).double()
    hand = lfp_snn.SpikingSequential(*head, _SewByHand(block), nn.Flatten(), net[4], net[5]).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2)
    x = torch.rand(4, 2, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2])
    a = lfp_snn.feedback_result(net, x, y, input_reward=True)
    b = lfp_snn.feedback_result(hand, x, y, input_reward=True)
    assert torch.equal(a.output, b.output)
    rename = {"2.conv1": "2.first.0", "2.bn1": "2.first.1", "2.conv2": "2.second.0", "2.bn2": "2.second.1"}
    for k, v in a.feedback.items():
        mod, p = k.rsplit(".", 1)
        assert torch.equal(v, b.feedback[f"{rename.get(mod, mod)}.{p}"]), k
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        SEWBlock(0, _lif)
