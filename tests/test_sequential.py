"""Images row by row (sequential digits / Fashion-MNIST): the sequences are the images' rows in order, and a
recurrent LFP network trains on them through the Trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn.data import load_digits
from lfp_snn.data.sequential import load_sequential, row_sequences
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig, Trainer


def test_rows_become_time_steps():
    train, _ = load_digits()
    seq = row_sequences(train)
    assert seq.temporal and seq.steps == 8 and seq.input_shape == (8,) and len(seq) == len(train)
    assert torch.equal(seq.x[5, 3], train.x[5, 0, 3])  # step 3 of sample 5 is its row 3
    assert torch.equal(seq.y, train.y)


def test_the_spec_loads_both_splits_and_refuses_a_bare_prefix():
    train, test = load_sequential("sequential-digits")
    assert train.steps == test.steps == 8 and train.classes == 10
    with pytest.raises(ValueError, match=r"expected 'sequential-<image data set>'"):
        load_sequential("sequential-")


@pytest.mark.slow
def test_a_recurrent_lfp_network_learns_sequential_digits():
    train, test = load_sequential("sequential-digits")
    torch.manual_seed(0)
    net = lfp_snn.SpikingSequential(
        nn.Linear(8, 64),
        lfp_snn.RecurrentLIF(64, 0.9, 0.5, recurrent_mask=1 - torch.eye(64)),
        nn.Linear(64, 10),
        lfp_snn.LIF(0.9, 0.5),
    )
    mc = ModelConfig(arch="spiking-mlp", input_shape=(8,), classes=10)
    tr = Trainer(mc, TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False), model=net)
    history = tr.fit(train, test)
    assert history[-1]["test_accuracy"] > 0.5, history[-1]  # chance is 0.1


def test_the_command_line_trains_on_sequences_and_refuses_T(tmp_path, capsys):
    from lfp_snn.cli import main

    assert (
        main(
            [
                "train",
                "--data",
                "sequential-digits",
                "--neuron",
                "recurrent",
                "--epochs",
                "1",
                "--subset",
                "300",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(T=8," in out and "RecurrentLIF(256)" in out
    assert main(["train", "--data", "sequential-digits", "-T", "5", "--out", str(tmp_path / "b")]) == 2
    assert "-T/--steps does not apply" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
