"""Every architecture of --arch and every --neuron builds, trains one LFP step and round-trips through its
checkpoint; the options that do not apply are errors naming them."""

from __future__ import annotations

import re

import pytest
import torch

import lfp_snn
from lfp_snn.checkpoint import load_checkpoint, save_checkpoint
from lfp_snn.cli import main
from lfp_snn.models import ARCHS, NEURONS, ModelConfig, build_model, is_spiking_arch

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = {"deeper-snn": (1, 28, 28), "resnet-snn": (1, 28, 28), "vgg-snn": (1, 16, 16)}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_steps_and_round_trips(arch, tmp_path):
    shape = SHAPES.get(arch, (1, 8, 8))
    mc = ModelConfig(
        arch=arch,
        input_shape=shape,
        classes=4,
        hidden=(16,) if "mlp" in arch or arch == "spiking-small" else None,
    )
    model = build_model(mc, seed=0)
    spiking = is_spiking_arch(arch)
    x = torch.rand(3, 2, *shape) if spiking else torch.rand(2, *shape)
    res = lfp_snn.feedback_result(model, x, torch.tensor([0, 3]))
    lfp_snn.write_gradients(model, res.feedback)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    save_checkpoint(tmp_path, model, mc, {"arch": arch})
    again, cfg = load_checkpoint(tmp_path)
    assert ModelConfig.from_dict(cfg["model"]) == mc
    a, b = lfp_snn.run(model, x), lfp_snn.run(again, x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("neuron", NEURONS)
def test_every_neuron_trains_from_the_command_line(neuron, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--subset",
        "200",
        "--test-subset",
        "100",
        "--epochs",
        "1",
        "--neuron",
        neuron,
        "--out",
        str(out),
    ]
    assert main(args) == 0
    model, cfg = load_checkpoint(out)
    assert ModelConfig.from_dict(cfg["model"]).neuron == neuron
    kinds = {type(m).__name__ for m in model.modules()}
    want = {"lif": "LIF", "cuba": "CubaLIF", "adaptive": "AdaptiveLIF", "recurrent": "RecurrentLIF"}[neuron]
    assert want in kinds


@pytest.mark.parametrize(
    "args, match",
    [
        (
            ["--alpha", "0.3"],
            r"--alpha does not apply: it is the synaptic decay of neuron 'cuba'; the neuron is 'lif'",
        ),
        (["--neuron", "cuba", "--rho", "0.5"], r"--rho does not apply: it sets the threshold adaptation"),
        (
            ["--neuron", "recurrent", "--arch", "spiking-lenet"],
            r"neuron='recurrent' needs dense hidden layers",
        ),
        (["--neuron", "cuba", "--alpha", "1.0"], r"alpha \(synaptic decay\) must lie in \[0, 1\), got 1.0"),
        (
            ["--arch", "mlp", "--neuron", "cuba"],
            r"--neuron does not apply: it sets the LIF neurons of spiking models",
        ),
        (["--arch", "resnet-snn"], r"arch 'resnet-snn' cannot take inputs of shape \(1, 8, 8\)"),
    ],
)
def test_neuron_options_that_do_not_apply_are_errors(args, match, tmp_path, capsys):
    code = main(["train", "--epochs", "1", "--subset", "50", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert code == 2 and re.search(match, err), err


def test_the_python_config_refuses_them_too():
    with pytest.raises(
        ValueError, match=r"alpha=0.3 does not apply: it is the synaptic decay of neuron 'cuba'"
    ):
        ModelConfig(alpha=0.3).validate()
    with pytest.raises(ValueError, match=r"unknown neuron 'izhikevich'; expected one of"):
        ModelConfig(neuron="izhikevich").validate()
    ModelConfig(neuron="adaptive", rho=0.5, adaptation=0.1).validate()
