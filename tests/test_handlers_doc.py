"""The worked example of docs/handlers.md runs as written, and its handler gives the equations it states."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.engine import unregister_handler

DOC = Path(__file__).resolve().parents[1] / "docs" / "handlers.md"


@pytest.fixture()
def example():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "the doc has one worked example"
    ns: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), ns)
    yield ns
    unregister_handler(ns["Gain"])


def test_the_example_runs_and_gives_the_documented_feedback(example):
    Gain = example["Gain"]
    assert sorted(example["fb"]) == ["0.bias", "0.weight", "1.gamma", "3.bias", "3.weight"]
    torch.manual_seed(0)
    gain = Gain(5).double()
    with torch.no_grad():
        gain.gamma.copy_(torch.tensor([0.5, -2.0, 1.5, 3.0, -0.25]))
    net = nn.Sequential(nn.Linear(4, 5), gain, nn.Linear(5, 3)).double()
    x = torch.rand(6, 4, dtype=torch.float64)
    R = torch.randn(6, 3, dtype=torch.float64)
    res = lfp_snn.feedback_result(net, x, torch.zeros(6, dtype=torch.long), lambda o, y: R, input_reward=True)
    # by the equations: ε at the last Linear, then the gain's rule, then ε at the first Linear
    eps = 1e-6

    def stab(z):
        return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)

    with torch.no_grad():
        h = net[0](x)
        z = h * gain.gamma
        r_z = z * ((R / stab(net[2](z))) @ net[2].weight)
        g = r_z / stab(z)
        f_gamma = gain.gamma.abs() * (h * g).sum(0)
        r_h = h * gain.gamma * g
    torch.testing.assert_close(res.feedback["1.gamma"], f_gamma, rtol=1e-12, atol=1e-14)
    g0 = r_h / stab(h)
    torch.testing.assert_close(res.feedback["0.weight"], net[0].weight.abs() * (g0.T @ x))
    torch.testing.assert_close(res.input_reward, x * (g0 @ net[0].weight))


def test_registering_twice_needs_overwrite(example):
    with pytest.raises(ValueError, match="has a handler already; pass overwrite=True"):
        lfp_snn.register_handler(example["Gain"], example["GainHandler"]())
    lfp_snn.register_handler(example["Gain"], example["GainHandler"](), overwrite=True)
    with pytest.raises(TypeError, match="handler must be an lfp_snn.engine.Handler"):
        lfp_snn.register_handler(example["Gain"], object(), overwrite=True)


def test_without_a_handler_the_layer_is_traced_through(example):
    unregister_handler(example["Gain"])
    try:
        # traced, x * self.gamma reads a parameter directly: the engine says it cannot give it feedback
        with pytest.raises(lfp_snn.engine.GraphError, match=r"module '1' reads the tensor 'gamma' directly"):
            lfp_snn.engine.build_graph(nn.Sequential(nn.Linear(4, 5), example["Gain"](5)))
    finally:
        lfp_snn.register_handler(example["Gain"], example["GainHandler"]())
