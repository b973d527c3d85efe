"""Every tensor the engine makes lives on its input's device: the engine's paths run on a fake CUDA device
(tests/fake_cuda.py: tensors that say cuda:0 and hold CPU values) and give the CPU's feedback. A tensor
made on the CPU (an index, a mask, a buffer) meets a CUDA tensor in some op and raises, as on a real GPU."""

from __future__ import annotations

import copy

import pytest
import torch
from fake_cuda import DeviceMixError, fake_cuda, to_fake_cuda
from torch import nn

import lfp_snn
from lfp_snn.encoders import constant_encode
from lfp_snn.rules import MembraneShare

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_fake_device_catches_a_cpu_tensor():
    with fake_cuda(), torch.no_grad():
        x = to_fake_cuda(torch.rand(3, 4))
        assert x.device.type == "cuda"
        assert (x + torch.ones(4, dtype=x.dtype, device=x.device)).device.type == "cuda"
        with pytest.raises(DeviceMixError, match="cuda:0 and on the cpu"):
            x + torch.ones(4)  # made on the CPU: the bug this file is for


def _lif(reset="subtract", delay=True):
    return lfp_snn.LIF(0.8, 0.7, reset, delay, backend="torch")


class Residual(nn.Module):
    """Linear -> LIF, a residual block (two branches summed), a concatenation, then the readout."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.lif0 = _lif()
        self.fc1, self.lif1 = nn.Linear(16, 16), _lif()
        self.fc2 = nn.Linear(16, 16)
        self.lif2 = _lif()
        self.side = nn.Linear(16, 4)
        self.out, self.lif3 = nn.Linear(20, 5), _lif()

    def forward(self, x):
        h = self.lif0(self.inp(x))
        r = self.lif2(self.fc2(self.lif1(self.fc1(h))) + self.fc2(h))
        return self.lif3(self.out(torch.cat([r, self.side(h)], dim=1)))


def _spiking_mlp(reset="subtract", delay=True):
    return lfp_snn.SpikingSequential(
        nn.Flatten(),
        nn.Linear(12, 16),
        _lif(reset, delay),
        nn.Linear(16, 16),
        _lif(reset, delay),
        nn.Linear(16, 5),
        _lif(reset, delay),
    )


def _spiking_conv():
    return lfp_snn.SpikingSequential(
        nn.Conv2d(1, 3, 3),
        _lif(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 2),
        _lif(),
        nn.AvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
        _lif(),
    )


def _ann_conv():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(12, 5),
    )


def _model(make, seed=0):
    torch.manual_seed(seed)
    m = make().to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m


def _both(model, x, y, **kw):
    """The result on the CPU and on the fake CUDA device (moved back to the CPU)."""
    ref = lfp_snn.feedback_result(model, x, y, **kw)
    fake_model = to_fake_cuda(copy.deepcopy(model))
    with fake_cuda():
        res = lfp_snn.feedback_result(fake_model, to_fake_cuda(x), to_fake_cuda(y), **kw)
        assert all(v.device.type == "cuda" for v in res.feedback.values())
        assert res.output.device.type == "cuda"
        got = {k: v.cpu() for k, v in res.feedback.items()}
        out = res.output.cpu()
        rin = None if res.input_reward is None else res.input_reward.cpu()
    assert got.keys() == ref.feedback.keys()
    for k in got:
        torch.testing.assert_close(got[k], ref.feedback[k], rtol=1e-12, atol=1e-14, msg=k)
    assert torch.equal(out, ref.output)
    if ref.input_reward is not None:
        torch.testing.assert_close(rin, ref.input_reward, rtol=1e-12, atol=1e-14)
    assert any(v.abs().max() > 0 for v in ref.feedback.values()), "the network must be active"


def _seq(shape, T=6, B=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, B, *shape, generator=g, dtype=DT), torch.randint(0, 5, (B,), generator=g)


@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus", "alpha2-beta1"])
def test_ann_paths_on_the_device(rule):
    m = _model(_ann_conv).eval()
    x = torch.rand(4, 1, 6, 6, dtype=DT)
    _both(m, x, torch.tensor([0, 1, 2, 3]), rule=rule, reward="sigmoid", input_reward=True)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"rule": "zplus-zminus"},
        {"rule": "alpha2-beta1"},
        {"recompute": True},
        {"micro_batch": 3},
        {"time_chunk": 4},
        {"time_chunk": 2, "recompute": True, "micro_batch": 2},
        {"membrane_share": MembraneShare(0.5, 0.3)},
        {"matmul_dtype": torch.bfloat16},
        {"input_reward": True},
    ],
)
@pytest.mark.parametrize("constant", [False, True])
def test_spiking_mlp_paths_on_the_device(kw, constant):
    m = _model(_spiking_mlp)
    x, y = _seq((12,))
    if constant:
        x = constant_encode(x[0], 6)
    _both(m, x, y, reward="sequence", **kw)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("delay", [True, False])
def test_every_reset_mode_on_the_device(reset, delay):
    m = _model(lambda: _spiking_mlp(reset, delay))
    x, y = _seq((12,))
    _both(m, x, y, time_chunk=4)


@pytest.mark.parametrize("kw", [{}, {"recompute": True}, {"time_chunk": 3}, {"rule": "epsilon-zplus-zminus"}])
def test_spiking_conv_paths_on_the_device(kw):
    m = _model(_spiking_conv)
    x, y = _seq((1, 6, 6))
    _both(m, x, y, **kw)


@pytest.mark.parametrize("kw", [{}, {"rule": "alpha2-beta1"}, {"time_chunk": 4}, {"recompute": True}])
def test_sparse_spike_input_on_the_device(kw):
    m = _model(_spiking_mlp)
    with torch.no_grad():
        m[1].weight.mul_(4)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(8, 4, 12, generator=g) < 0.08).to(torch.uint8)
    y = torch.randint(0, 5, (4,), generator=g)
    assert isinstance(lfp_snn.forward_trace(m, x).record("1").x, lfp_snn.ops.SparseRows)
    _both(m, x, y, input_reward=True, **kw)


@pytest.mark.parametrize("kw", [{}, {"time_chunk": 4}, {"rule": "zplus-zminus", "input_reward": True}])
def test_residual_and_concatenation_on_the_device(kw):
    m = _model(Residual)
    x, y = _seq((12,))
    _both(m, x, y, **kw)


def test_input_noise_on_the_device():
    # noise drawn on the device: equal results need equal draws, so compare shapes and devices only
    m = to_fake_cuda(_model(_spiking_mlp))
    x, y = _seq((12,))
    with fake_cuda():
        res = lfp_snn.feedback_result(m, to_fake_cuda(x), to_fake_cuda(y), input_noise=0.1)
        assert all(v.device.type == "cuda" for v in res.feedback.values())


@pytest.mark.parametrize("kind", ["cuba", "adaptive", "recurrent"])
@pytest.mark.parametrize("kw", [{}, {"time_chunk": 3}])
def test_the_other_neurons_on_the_device(kind, kw):
    neuron = {
        "cuba": lambda: lfp_snn.CubaLIF(0.5, 0.8, 0.7, backend="torch"),
        "adaptive": lambda: lfp_snn.AdaptiveLIF(0.8, 0.7, 0.8, 0.3),
        "recurrent": lambda: lfp_snn.RecurrentLIF(16, 0.8, 0.7, recurrent_mask=1 - torch.eye(16)),
    }[kind]
    m = _model(lambda: lfp_snn.SpikingSequential(nn.Linear(12, 16), neuron(), nn.Linear(16, 5), _lif()))
    x, y = _seq((12,))
    _both(m, x, y, input_reward=True, **kw)
