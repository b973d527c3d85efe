"""NeuroBench's efficiency metrics (lfp_snn.experiments.efficiency): the definition against hand-counted
figures, the definition against the neurobench package on spiking MLP, conv and ANN models (and after
pruning), models the package cannot run, and the engine's observation hook."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import deep
from lfp_snn.data import load_dataset
from lfp_snn.data.arrays import ArrayDataset
from lfp_snn.encoders import get_encoder
from lfp_snn.engine import Act, forward_trace
from lfp_snn.engine.context import ForwardContext
from lfp_snn.events.training_data import FrameDataset
from lfp_snn.experiments.efficiency import (
    NeuroBenchUnavailable,
    check_twin,
    efficiency,
    efficiency_report,
    neurobench_efficiency,
)
from lfp_snn.experiments.metrics import evaluate, prune_by_magnitude
from lfp_snn.models import ModelConfig, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")[1].subset(12, seed=0)


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


PACKAGE = _importable("snntorch") and _importable("neurobench")
"""neurobench and the snntorch it needs are installed (scripts/setup.sh installs them)."""


def _package():
    pytest.importorskip("snntorch")
    pytest.importorskip("neurobench")


def _same(a: dict, b: dict) -> None:
    """Every figure equal (exactly), the source aside."""
    assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}


# ----------------------------------------------------------------------------------------------------------
# the definition, counted by hand
# ----------------------------------------------------------------------------------------------------------


def _tiny_snn() -> nn.Module:
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.5], [0.25, 0.25, 0.25]]))  # one zero weight
        fc.bias.zero_()
    return lfp_snn.SpikingSequential(fc, lfp_snn.LIF(beta=0.9, threshold=1.0))


def _frames() -> FrameDataset:
    # [N=2, T=2, 3]: sample A sends spikes at both steps; sample B nothing at t0, then analog values at t1
    x = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [[0.0, 0.0, 0.0], [0.5, 0.0, 2.0]]])
    return FrameDataset(x, torch.tensor([0, 1]), 2, "hand", (3, 1, 1))


def test_definition_by_hand_spiking():
    """W = [[1, 0, .5], [.25, .25, .25]], b = 0, LIF β = .9, θ = 1 (subtract, reset delay), one batch of 2.

    Binary weights [[1, 0, 1], [1, 1, 1]]. Step 0 (a call of the layer on both samples): inputs A [1, 0, 1],
    B [0, 0, 0], all in {0, 1}: ACs = (2 + 2) + 0 = 4. Step 1: A [0, 1, 1], B [0.5, 0, 2] (not spikes, so the
    whole call counts MACs): binary B [1, 0, 1]; MACs = (1 + 2) + (2 + 2) = 7. Per sample: ACs 4/2 = 2,
    MACs 7/2 = 3.5, dense 2 steps · 2 samples · 6 / 2 = 12.
    Spikes: A, t0: z = [1.5, .5], U = [1.5, .5] -> neuron 0 fires; t1: z = [.5, .5],
    U = [.9·1.5 + .5 - 1, .45 + .5] = [.85, .95] -> none. B, t0: nothing; t1: z = [1.5, .625] -> neuron 0
    fires. 2 spikes in 2 neurons · 2 steps · 2 samples = 8 slots: activation sparsity 6/8 = .75.
    Connection sparsity 1/6 -> .1667; footprint (6 + 2) weights + β, θ = 10 float32 = 40 bytes.
    """
    out = efficiency(_tiny_snn(), _frames(), None, True, batch_size=2)
    assert out == {
        "activation_sparsity": 0.75,
        "synops_effective_acs": 2.0,
        "synops_effective_macs": 3.5,
        "synops_dense": 12.0,
        "connection_sparsity": 0.1667,
        "footprint_bytes": 40,
        "samples": 2,
        "source": "definition",
    }


def test_definition_by_hand_spiking_matches_package():
    _package()
    model = _tiny_snn()
    _same(neurobench_efficiency(model, _frames(), None, True, 2), efficiency(model, _frames(), None, True, 2))


def test_definition_by_hand_ann():
    """Flatten, Linear(3 -> 2) (same W, b = [0, -1]), ReLU; one sample a batch.

    Sample 1 [.5, 0, 1] (not spikes): MACs = 2 + 2 = 4; z = [1, -.625] -> ReLU [1, 0]. Sample 2 [1, 1, 0]
    (all 0/1): ACs = 1 + 2 = 3; z = [1, -.5] -> [1, 0]. Per sample: ACs 1.5, MACs 2, dense 6; activation
    sparsity 1/2 in both batches; footprint 8 float32 = 32 bytes.
    """
    fc = nn.Linear(3, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.5], [0.25, 0.25, 0.25]]))
        fc.bias.copy_(torch.tensor([0.0, -1.0]))
    model = nn.Sequential(nn.Flatten(), fc, nn.ReLU())
    data = ArrayDataset(
        torch.tensor([[[[0.5, 0.0, 1.0]]], [[[1.0, 1.0, 0.0]]]]), torch.tensor([0, 1]), 2, "hand"
    )
    out = efficiency(model, data, None, False, batch_size=1)
    assert out == {
        "activation_sparsity": 0.5,
        "synops_effective_acs": 1.5,
        "synops_effective_macs": 2.0,
        "synops_dense": 6.0,
        "connection_sparsity": 0.1667,
        "footprint_bytes": 32,
        "samples": 2,
        "source": "definition",
    }
    if PACKAGE:
        _same(neurobench_efficiency(model, data, None, False, 1), out)


def test_recurrent_synapses_counted():
    """A RecurrentLIF layer's loop V S_{t-1}: Σ_{t<T} Σ_j S_{t-1,j} · (non-zero weights in column j of V),
    in the ACs and in synops_recurrent; dense N² per sample and step; V in the connection sparsity."""
    torch.manual_seed(0)
    rec = lfp_snn.RecurrentLIF(3, beta=0.9, threshold=0.5)
    fc = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        fc.weight.fill_(0.4)
        rec.weight.copy_(torch.tensor([[0.0, 0.3, -0.2], [0.1, 0.0, 0.0], [0.2, 0.2, 0.0]]))
    model = lfp_snn.SpikingSequential(fc, rec)
    x = (torch.rand(2, 5, 4, generator=torch.Generator().manual_seed(1)) > 0.4).float()  # [N, T, 4]
    data = FrameDataset(x, torch.tensor([0, 1]), 2, "rec", (4, 1, 1))
    out = efficiency(model, data, None, True, batch_size=2)
    spikes = forward_trace(model, x.transpose(0, 1), keep=False).output  # [T, B, 3]
    fan_out = torch.tensor([2.0, 2.0, 1.0])  # non-zero weights per column of V
    recurrent = float((spikes[:-1].sum(dim=(0, 1)) * fan_out).sum())
    feed = float(x.sum() * 3)  # every input spike reaches 3 neurons
    assert recurrent > 0
    assert out["synops_recurrent"] == recurrent / 2
    assert out["synops_effective_acs"] == (feed + recurrent) / 2
    assert out["synops_dense"] == 5 * (12 + 9)
    assert out["connection_sparsity"] == round(4 / 21, 4)  # the 4 zeros of V among 12 + 9 weights


# ----------------------------------------------------------------------------------------------------------
# the definition against the neurobench package
# ----------------------------------------------------------------------------------------------------------

CASES = {
    "spiking-mlp, rate": (ModelConfig(arch="spiking-mlp", input_shape=(1, 8, 8), weight_scale=3.0), "rate"),
    "spiking-lenet, constant": (
        ModelConfig(arch="spiking-lenet", input_shape=(1, 8, 8), weight_scale=3.0),
        "constant",
    ),
    "mlp (ReLU)": (ModelConfig(arch="mlp", input_shape=(1, 8, 8)), None),
    "lenet (Heaviside)": (ModelConfig(arch="lenet", input_shape=(1, 8, 8), activation="heaviside"), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_definition_equals_package(case, digits):
    """Op counts, sparsities, footprint and connection sparsity the same to the last bit, over two batches
    (8 + 4 samples; the spiking input from the same encoder and generator seed as evaluate)."""
    _package()
    cfg, enc = CASES[case]
    model = build_model(cfg, seed=1)
    spiking = enc is not None
    encoder = get_encoder(enc, 6) if spiking else None
    ours = efficiency(model, digits, encoder, spiking, batch_size=8, seed=3)
    theirs = neurobench_efficiency(model, digits, encoder, spiking, batch_size=8, seed=3)
    assert ours["source"] == "definition" and theirs["source"].startswith("neurobench ")
    _same(ours, theirs)
    assert 0 < ours["activation_sparsity"] < 1  # neither silent nor saturated
    assert ours["synops_dense"] > ours["synops_effective_acs"] + ours["synops_effective_macs"] > 0
    if case.startswith("spiking-lenet"):  # the constant input's first layer: real pixels, so MACs
        assert ours["synops_effective_macs"] > 0 and ours["synops_effective_acs"] > 0
    if case.startswith("lenet"):  # the layers after a Heaviside read 0/1: ACs
        assert ours["synops_effective_acs"] > 0
    assert efficiency_report(model, digits, encoder, spiking, 8, 3) == theirs


def test_same_input_as_evaluate(digits):
    """The definition sees evaluate's input: its activation sparsity is 1 - evaluate's spike rate (up to
    rounding: per-batch ratios weighted by batch size there, one ratio here)."""
    model = build_model(ModelConfig(weight_scale=3.0), seed=1)
    enc = get_encoder("rate", 6)
    rate = evaluate(model, digits, enc, True, batch_size=8, seed=5)["spike_rate"]
    assert efficiency(model, digits, enc, True, 8, seed=5)["activation_sparsity"] == pytest.approx(
        1 - rate, rel=1e-12
    )
    assert efficiency(model, digits, enc, True, 8, seed=6)["activation_sparsity"] != pytest.approx(
        1 - rate, rel=1e-12
    )


def test_pruning_raises_connection_sparsity_and_cuts_operations(digits):
    model = build_model(ModelConfig(weight_scale=3.0), seed=1)
    enc = get_encoder("rate", 6)
    before = efficiency(model, digits, enc, True, 8)
    assert before["connection_sparsity"] == 0.0
    for fraction in (0.5, 0.9):
        pruned = prune_by_magnitude(model, fraction)
        after = efficiency(pruned, digits, enc, True, 8)
        assert after["connection_sparsity"] == fraction
        assert after["synops_effective_acs"] < before["synops_effective_acs"]
        assert after["synops_dense"] == before["synops_dense"]
        if PACKAGE:
            _same(after, neurobench_efficiency(pruned, digits, enc, True, 8))
        before = after


# ----------------------------------------------------------------------------------------------------------
# models the package cannot run: the definition, with the reason
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,why",
    [
        (lambda: build_model(ModelConfig(neuron="cuba", weight_scale=3.0), seed=1), "'2' (CubaLIF)"),
        (lambda: build_model(ModelConfig(neuron="adaptive"), seed=1), "'2' (AdaptiveLIF)"),
        (lambda: build_model(ModelConfig(neuron="recurrent"), seed=1), "'2' (RecurrentLIF)"),
        (lambda: build_model(ModelConfig(reset_delay=False), seed=1), "reset_delay=False"),
        (lambda: deep.sew_resnet((1, 8, 8), 10, lfp_snn.LIF, channels=4, blocks=1), "'3' (SEWBlock)"),
        (lambda: deep.ResNetSNN((1, 28, 28), 10, lfp_snn.LIF), "not an nn.Sequential (ResNetSNN)"),
        (lambda: build_model(ModelConfig(arch="vgg-snn", input_shape=(1, 8, 8)), seed=1), "(BatchNorm2d)"),
    ],
)
def test_twin_refuses_with_reason(make, why):
    with pytest.raises(NeuroBenchUnavailable, match="neurobench cannot run") as e:
        check_twin(make())
    assert why in e.value.reason


@pytest.mark.parametrize("kind", ["cuba", "residual"])
def test_report_falls_back_to_definition(kind, digits):
    _package()
    if kind == "cuba":
        model = build_model(ModelConfig(neuron="cuba", weight_scale=3.0), seed=1)
    else:
        model = deep.sew_resnet((1, 8, 8), 10, lfp_snn.LIF, channels=4, blocks=1)
    enc = get_encoder("rate", 4)
    with pytest.raises(NeuroBenchUnavailable):
        neurobench_efficiency(model, digits, enc, True, 8)
    report = efficiency_report(model, digits, enc, True, 8)
    assert report["source"].startswith("definition (neurobench cannot run layer ")
    assert ("CubaLIF" if kind == "cuba" else "SEWBlock") in report["source"]
    _same(report, efficiency(model, digits, enc, True, 8))


def test_report_without_the_package(monkeypatch, digits):
    monkeypatch.setitem(sys.modules, "neurobench", None)  # import neurobench raises ImportError
    model = build_model(ModelConfig(weight_scale=3.0), seed=1)
    enc = get_encoder("rate", 4)
    report = efficiency_report(model, digits, enc, True, 8)
    assert report["source"].startswith("definition (neurobench cannot run without the neurobench package")
    _same(report, efficiency(model, digits, enc, True, 8))


# ----------------------------------------------------------------------------------------------------------
# the engine's observation hook
# ----------------------------------------------------------------------------------------------------------


def test_observe_hook_is_off_by_default_and_changes_nothing():
    assert ForwardContext.__dataclass_fields__["observe"].default is None
    model = build_model(ModelConfig(arch="spiking-lenet", input_shape=(1, 8, 8), weight_scale=3.0), seed=1)
    xs = get_encoder("rate", 4)(torch.rand(3, 1, 8, 8), torch.Generator().manual_seed(0))
    seen = []

    def observe(node, inputs, out):
        assert all(isinstance(a, Act) for a in inputs)
        seen.append(node.name)

    plain = forward_trace(model, xs, keep=False)
    watched = forward_trace(model, xs, keep=False, observe=observe)
    assert seen == [n.name for n in watched.plan.graph.nodes[1:]]
    assert torch.equal(plain.output, watched.output)
    assert plain.spike_counts.keys() == watched.spike_counts.keys()
    assert all(torch.equal(plain.spike_counts[k], watched.spike_counts[k]) for k in plain.spike_counts)
    forward_trace(model, xs, keep=False)  # a pass without the hook does not call it
    assert len(seen) == len(watched.plan.graph.nodes) - 1


def test_multi_spike_layers_count_non_zero_outputs_not_spikes():
    """A MultiSpikeLIF emits counts > 1: activation sparsity counts its non-zero outputs, as NeuroBench does,
    and the package path refuses it (the snntorch twin has no such neuron)."""
    from lfp_snn.data import ArrayDataset
    from lfp_snn.experiments.efficiency import efficiency, efficiency_report

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), lfp_snn.MultiSpikeLIF(0.9, 0.5), nn.Linear(6, 3), lfp_snn.LIF(0.9))
    with torch.no_grad():
        model[1].weight.mul_(4)
    x = torch.rand(5, 1, 2, 2)
    data = ArrayDataset(x, torch.zeros(5, dtype=torch.int64), 3, "tiny")
    enc = lambda x, g: x.unsqueeze(0).expand(3, *x.shape)  # noqa: E731  (constant input, T = 3)
    trace = lfp_snn.forward_trace(model[:3], enc(x, None), keep=False)
    hidden = lfp_snn.run(model[:3], enc(x, None))
    assert float(hidden.max()) > 1  # several spikes in one step somewhere
    out = lfp_snn.run(model, enc(x, None))
    nonzero = int(torch.count_nonzero(hidden)) + int(torch.count_nonzero(out))
    total = hidden.numel() + out.numel()
    got = efficiency(model, data, enc, True, batch_size=5)
    assert got["activation_sparsity"] == pytest.approx(1 - nonzero / total, abs=1e-12)
    assert int(trace.spike_counts["2"].sum()) > int(torch.count_nonzero(hidden))  # counts differ from nnz
    assert efficiency_report(model, data, enc, True, batch_size=5)["source"].startswith("definition (")
