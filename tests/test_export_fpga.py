"""FPGA bundle: quantisation, files, the integer simulator (from files and in memory), the Verilog check,
the C header, and what happens with bad input."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lfp_snn import LIF, SpikingSequential
from lfp_snn.checkpoint import save_checkpoint
from lfp_snn.export import (
    BundleError,
    compare_with_float,
    export_fpga,
    fixed_point,
    iverilog_available,
    load_bundle,
    quantize,
    run_verilog_check,
    simulate,
    simulate_bundle,
    verify_bundle,
)
from lfp_snn.export.simulator import read_vectors
from lfp_snn.models import ModelConfig, build_model

RESETS = [("subtract", True), ("zero", False), ("zero", True), ("subtract", False)]
needs_iverilog = pytest.mark.skipif(
    not iverilog_available(), reason="iverilog/vvp not installed (CI installs it)"
)


def mlp(reset="subtract", delay=True, seed=1, scale=3.0, beta=0.9, n_in=24, hidden=16, classes=6):
    cfg = ModelConfig(
        arch="spiking-mlp",
        input_shape=(n_in,),
        hidden=(hidden,),
        classes=classes,
        reset=reset,
        reset_delay=delay,
        beta=beta,
    )
    m = build_model(cfg, seed=seed)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m.eval()


def spikes(shape, p=0.25, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def export(model, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_fpga(model, path, **kw)


def one_neuron(w, reset, delay, beta=0.75, threshold=1.0):
    lin = nn.Linear(len(w), 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w]))
    return SpikingSequential(lin, LIF(beta, threshold, reset, delay))


X_HAND = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 1]])[:, None, :]  # [T=6, B=1, 2]


# ------------------------------------------------------------------------------- arithmetic, by hand


@pytest.mark.parametrize(
    "decay,reset,delay,membrane,spk",
    [
        ("multiply", "subtract", True, [64, 112, -12, -41, -63, -16], [0, 1, 0, 0, 0, 0]),
        ("multiply", "zero", False, [64, 0, -32, -56, -74, -24], [0, 1, 0, 0, 0, 0]),
        ("shift", "subtract", True, [64, 112, -12, -41, -62, -14], [0, 1, 0, 0, 0, 0]),
    ],
)
def test_hand_worked_traces(decay, reset, delay, membrane, spk):
    """w = [1, -0.5] -> scale 2^-6, w_q = [64, -32], θ_q = 64, β = 0.75 -> β_q = 192 (or k = 2).
    e.g. multiply, t = 5: D = (-63 * 192) >> 8 = floor(-47.25) = -48, U = -48 + 32 = -16; shift, t = 4:
    D = -41 - (-41 >> 2) = -41 + 11 = -30, U = -30 - 32 = -62."""
    net = quantize(one_neuron([1.0, -0.5], reset, delay), decay=decay)
    L = net.layers[0]
    assert L.scale == 2.0**-6 and L.weight.tolist() == [[64, -32]] and L.threshold.tolist() == [64]
    assert L.beta.tolist() == ([192] if decay == "multiply" else [2])
    s, u = simulate(net, X_HAND, membranes=True)
    assert u[0][:, 0, 0].tolist() == membrane
    assert s[0][:, 0, 0].tolist() == spk


def test_saturation_of_current_and_membrane():
    """w = [1, 1] -> acc = 128 LSB; mem_bits = 8 clamps I to 127, and U = sat(95 + 127 - 64) = 127."""
    x = np.ones((4, 1, 2), np.int64)
    small = quantize(one_neuron([1.0, 1.0], "subtract", True), weight_bits=8, mem_bits=8)
    s, u = simulate(small, x, membranes=True)
    assert u[0][:, 0, 0].tolist() == [127, 127, 127, 127] and s[0].all()
    wide = quantize(one_neuron([1.0, 1.0], "subtract", True), weight_bits=8, mem_bits=16)
    assert simulate(wide, x, membranes=True)[1][0][:, 0, 0].tolist() == [128, 160, 184, 202]
    zero = quantize(one_neuron([1.0, 1.0], "zero", False), weight_bits=8, mem_bits=8)
    s, u = simulate(zero, x, membranes=True)
    assert u[0][:, 0, 0].tolist() == [0, 0, 0, 0] and s[0].all()


@pytest.mark.parametrize("decay", ["multiply", "shift"])
@pytest.mark.parametrize("reset,delay", RESETS)
def test_integer_simulator_equals_float_model_when_everything_is_representable(reset, delay, decay):
    """β = 1 and weights/biases on the 2^-6 grid: no rounding anywhere, so the integer simulator must give
    the float model's spikes exactly -- which checks the order of operations of every reset mode."""
    g = torch.Generator().manual_seed(3)
    m = SpikingSequential(
        nn.Linear(12, 10), LIF(1.0, 1.0, reset, delay), nn.Linear(10, 4), LIF(1.0, 0.75, reset, delay)
    )
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.copy_(torch.randint(-8, 9, lin.weight.shape, generator=g) / 8.0)
            lin.weight[0, 0] = 1.0  # max |w| = 1 -> scale 2^-6
            lin.bias.copy_(torch.randint(-8, 9, lin.bias.shape, generator=g) / 64.0)
    x = spikes((30, 16, 12), p=0.3, seed=4)
    net = quantize(m, decay=decay)
    assert all(L.scale == 2.0**-6 for L in net.layers)
    got = simulate(net, x)
    with torch.no_grad():
        h = m[1](m[0](x))
        o = m[3](m[2](h))
    assert 0.05 < h.mean() < 0.95 and o.sum() > 0
    assert np.array_equal(got[0], h.numpy().astype(np.uint8))
    assert np.array_equal(got[1], o.numpy().astype(np.uint8))


def test_quantisation_rules():
    m = mlp()
    net = quantize(m, weight_bits=8, mem_bits=16)
    w = m[1].weight.detach().double().numpy()
    L = net.layers[0]
    assert L.scale == 2.0 ** np.ceil(np.log2(np.abs(w).max() / 127))  # the smallest power of two that fits
    assert np.abs(L.weight).max() <= 127
    np.testing.assert_array_equal(L.weight, np.sign(w / L.scale) * np.floor(np.abs(w / L.scale) + 0.5))
    assert L.threshold.tolist() == [round(1.0 / L.scale)] * 16
    assert L.beta.tolist() == [round(0.9 * 256)] * 16
    real = quantize(m, weight_bits=8, scale="real").layers[0]
    assert real.scale == pytest.approx(np.abs(w).max() / 127) and np.abs(real.weight).max() == 127
    with pytest.warns(UserWarning, match=r"β=0.9 -> k=3 \(effective β=0.875\)"):
        sh = quantize(m, decay="shift")
    assert sh.layers[0].beta.tolist() == [3] * 16
    assert quantize(mlp(beta=1.0), decay="shift").layers[0].beta.tolist() == [0] * 16  # k = 0: no leak


def test_the_mse_scale_is_the_power_of_two_with_the_least_squared_error():
    """A layer with one outlier weight: at 4 bits the max-based power of two rounds almost every weight to
    0; scale="mse" tries it and the 8 powers of two below and takes the one closest to W, saturating the
    outlier."""
    m = mlp(n_in=24, hidden=16)
    with torch.no_grad():
        m[1].weight.mul_(0.1)
        m[1].weight[0, 0] = 0.5
    w = m[1].weight.detach().double().numpy()
    pow2, mse = quantize(m, weight_bits=4).layers[0], quantize(m, weight_bits=4, scale="mse").layers[0]
    top = int(np.ceil(np.log2(0.5 / 7)))
    assert pow2.scale == 2.0**top and (pow2.weight == 0).mean() > 0.9

    def err(s):
        return ((np.clip(np.sign(w / s) * np.floor(np.abs(w / s) + 0.5), -8, 7) * s - w) ** 2).sum()

    errors = {k: err(2.0**k) for k in range(top, top - 9, -1)}
    assert mse.scale == 2.0 ** min(errors, key=lambda k: (errors[k], -k)) < pow2.scale
    assert mse.weight[0, 0] == 7 and mse.info["saturated"]["weight"] >= 1 and (mse.weight == 0).mean() < 0.5
    assert (
        quantize(m, weight_bits=8, scale="mse").layers[0].scale <= quantize(m, weight_bits=8).layers[0].scale
    )


# ----------------------------------------------------------------------------------------------- bundle


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_bundle_contents_and_manifest(tmp_path):
    m = mlp()
    b = export(m, tmp_path / "bundle")
    man = json.loads((b / "manifest.json").read_text())
    assert man["format"] == "lfp-snn-fpga-bundle" and man["format_version"] == 2
    on_disk = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(man["files"]) == on_disk
    assert all(man["files"][r] == _sha(b / r) for r in on_disk)
    for need in ("layer0_weight.mem", "layer0_weight.coe", "layer0_weight.mif", "layer1_bias.mem",
                 "lfp_snn_model.h", "vectors/input.mem", "vectors/layer1_spikes.mem", "hdl/lfp_lif_layer.v"):  # fmt: skip
        assert need in on_disk
    nf = man["number_formats"]
    assert nf["weight"]["bits"] == 8 and nf["weight"]["signed"] and nf["membrane"]["bits"] == 16
    assert nf["beta"]["bits"] == 9 and not nf["beta"]["signed"]
    L0 = man["layers"][0]
    assert L0["n_in"] == 24 and L0["n_out"] == 16 and L0["reset"] == "subtract" and L0["reset_delay"]
    n = -int(np.log2(L0["scale"]))
    assert L0["weight_format"] == f"Q{7 - n}.{n}" and L0["membrane_format"] == f"Q{15 - n}.{n}"
    assert L0["acc_bits"] == int(24 * 128 + 2**15).bit_length() + 1
    assert any("sat_M" in line for line in man["order_of_operations"])
    assert man["test_vectors"]["samples"] == 4 and man["test_vectors"]["steps"] == 25
    # the .mem, .coe and .mif files hold the same two's-complement words
    net = quantize(m)
    words = (b / "layer0_weight.mem").read_text().split()
    assert len(words) == 16 * 24 and all(len(w) == 2 for w in words)
    dec = [int(w, 16) - 256 * (int(w, 16) >= 128) for w in words]
    assert dec == net.layers[0].weight.reshape(-1).tolist()
    coe = (b / "layer0_weight.coe").read_text()
    assert "memory_initialization_radix=16;" in coe
    assert coe.split("memory_initialization_vector=\n")[1].replace(",", "").replace(";", "").split() == words
    mif = (b / "layer0_weight.mif").read_text()
    assert "WIDTH=8;" in mif and "DEPTH=384;" in mif and "\t5 : " + words[5] + ";" in mif
    assert not list(tmp_path.glob(".*"))  # no temporary directory left behind


@pytest.mark.parametrize("decay", ["multiply", "shift"])
@pytest.mark.parametrize("reset,delay", RESETS)
def test_simulation_from_files_equals_in_memory(tmp_path, reset, delay, decay):
    m = mlp(reset, delay)
    b = export(m, tmp_path / "b", decay=decay)
    x = spikes((25, 20, 24), seed=7)
    from_files = simulate_bundle(b, x)
    in_memory = simulate(quantize(m, decay=decay), x)
    assert len(from_files["spikes"]) == 2 and from_files["spikes"][0].mean() > 0.02
    for a, c in zip(from_files["spikes"], in_memory):
        assert a.dtype == np.uint8 and np.array_equal(a, c)
    assert np.array_equal(from_files["counts"], in_memory[1].sum(0))
    verify_bundle(b)  # the golden vectors reproduce from the files


def test_agreement_with_the_float_model(tmp_path):
    """Random-weight model (3x the default init), rate-coded random input: how close is 8-bit to float?"""
    m = mlp(n_in=64, hidden=32, classes=10)
    x = spikes((25, 64, 64), seed=2)
    labels = torch.arange(64) % 10
    r8 = compare_with_float(m, export(m, tmp_path / "b8"), x, labels)
    r4 = compare_with_float(m, export(m, tmp_path / "b4", weight_bits=4, mem_bits=12), x, labels)
    r16 = compare_with_float(
        m, export(m, tmp_path / "b16", weight_bits=16, mem_bits=24, beta_bits=16), x, labels
    )
    assert r8["layers"] == ["1", "3"]
    assert 0.95 < r8["spike_agreement"][0] < 1.0  # close, not identical (rounding of w, β and the decay)
    assert r16["spike_agreement"][0] > r8["spike_agreement"][0] > r4["spike_agreement"][0]
    assert abs(r8["float_rate"][0] - r8["bundle_rate"][0]) < 0.01
    assert 0 <= r8["bundle_accuracy"] <= 1 and 0 <= r8["float_accuracy"] <= 1
    assert r8["prediction_agreement"] > 0.7


def test_a_version_1_bundle_still_reads_and_simulates(tmp_path):
    """Bundles written before convolutions (format version 1) have no shapes or pre stages in the manifest."""
    m = mlp()
    b = export(m, tmp_path / "b")
    man = json.loads((b / "manifest.json").read_text())
    man["format_version"] = 1
    man.pop("trained_in_the_loop")
    v1_keys = {"index", "name", "type", "n_in", "n_out", "scale", "weight_format", "membrane_format", "acc_bits",
               "weight_layout", "reset", "reset_delay", "files", "beta_float", "beta_effective", "max_abs_weight",
               "saturated", "threshold_float"}  # fmt: skip
    man["layers"] = [{k: v for k, v in L.items() if k in v1_keys} for L in man["layers"]]
    (b / "manifest.json").write_text(json.dumps(man))
    x = spikes((10, 5, 24), seed=3)
    verify_bundle(b)
    assert all(
        np.array_equal(a, c) for a, c in zip(simulate_bundle(b, x)["spikes"], simulate(quantize(m), x))
    )


def test_checkpoint_folder_and_given_golden_inputs(tmp_path):
    cfg = ModelConfig(arch="spiking-mlp", input_shape=(1, 4, 6), hidden=(16,), classes=6)
    m = build_model(cfg, seed=0)
    save_checkpoint(tmp_path / "ck", m, cfg)
    x = spikes((7, 3, 1, 4, 6), seed=5)
    b = export(tmp_path / "ck", tmp_path / "b", inputs=x)
    man = verify_bundle(b)
    assert man["input"]["shape"] == [1, 4, 6] and man["input"]["size"] == 24
    gx, gy = read_vectors(b, man)
    assert gx.shape == (7, 3, 24) and np.array_equal(gx, x.reshape(7, 3, 24).numpy().astype(np.uint8))
    assert np.array_equal(gy[1], simulate_bundle(b, x)["output"])


# ------------------------------------------------------------------------------------- conv and pooling


def conv_net(reset="subtract", delay=True, beta=0.9, scale=3.0, seed=0, grid=False):
    """Conv (padding 1) -> LIF -> MaxPool 2 -> Conv (stride 1, padding 1) -> LIF -> AvgPool 2 (a sum pool in
    the bundle) -> Flatten -> Linear -> LIF, on 1 x 8 x 8 inputs. ``grid``: weights k/8 (max 1) and biases
    k/64, so nothing rounds at 8 bits."""
    torch.manual_seed(seed)
    m = SpikingSequential(
        nn.Conv2d(1, 3, 3, padding=1), LIF(beta, 1.0, reset, delay), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1), LIF(beta, 0.75, reset, delay), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16, 5), LIF(beta, 1.0, reset, delay),
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (m[0], m[3], m[7]):
            if grid:
                layer.weight.copy_(torch.randint(-8, 9, layer.weight.shape, generator=g) / 8.0)
                layer.weight.view(-1)[0] = 1.0
                layer.bias.copy_(torch.randint(-8, 9, layer.bias.shape, generator=g) / 64.0)
            else:
                layer.weight.mul_(scale)
    return m.eval()


@pytest.mark.parametrize("reset,delay", [("subtract", True), ("zero", False)])
def test_conv_bundle_equals_the_float_model_when_everything_is_representable(reset, delay):
    """β = 1 and weights on a dyadic grid: the integer simulator's convolutions, max pool (OR) and sum pool
    (the average pool's 1/4 folded into the next weights) give the float model's spikes exactly."""
    m = conv_net(reset, delay, beta=1.0, grid=True)
    x = spikes((20, 6, 1, 8, 8), p=0.4, seed=3)
    net = quantize(m, input_shape=(1, 8, 8))
    assert [L.kind for L in net.layers] == ["conv", "conv", "dense"]
    assert [[P.kind for P in L.pre] for L in net.layers] == [[], ["max"], ["sum", "flatten"]]
    assert net.layers[2].in_max == 4 and net.layers[2].info["input_divisor"] == 4
    got = simulate(net, x)
    ref = fixed_point_float(m, x)
    for a, b in zip(got, ref):
        assert 0.02 < b.mean() < 0.9
        assert np.array_equal(a, b)


def test_spiking_lenet_bundle_equals_its_float_model_when_everything_is_representable():
    """The ``spiking-lenet`` architecture itself (5x5 convolutions with padding 2, max pools, Flatten,
    Linear), β = 1, weights k/16 and biases k/64: nothing rounds at 8 bits, so the bundle's spikes are the float
    model's, layer by layer."""
    m = build_model(ModelConfig(arch="spiking-lenet", input_shape=(1, 8, 8), beta=1.0), seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (m[0], m[3], m[7]):
            layer.weight.copy_(torch.randint(-4, 5, layer.weight.shape, generator=g) / 16.0)
            layer.weight.view(-1)[0] = 1.0
            layer.bias.copy_(torch.randint(-8, 9, layer.bias.shape, generator=g) / 64.0)
    x = spikes((12, 4, 1, 8, 8), p=0.3, seed=8)
    net = quantize(m, input_shape=(1, 8, 8))
    assert all(L.scale == 2.0**-6 for L in net.layers)
    got, ref = simulate(net, x), fixed_point_float(m, x)
    for a, b in zip(got, ref):
        assert 0.01 < b.mean() < 0.95
        assert np.array_equal(a, b)


def fixed_point_float(m, x):
    from lfp_snn.export.simulator import float_layer_spikes

    return float_layer_spikes(m, x)


@pytest.mark.parametrize("decay", ["multiply", "shift"])
def test_conv_bundle_files_manifest_and_simulation(tmp_path, decay):
    m = conv_net()
    x = spikes((9, 3, 1, 8, 8), p=0.4, seed=5)
    b = export(m, tmp_path / "b", decay=decay, inputs=x, input_shape=(1, 8, 8))
    man = verify_bundle(b)
    L0, L1, L2 = man["layers"]
    assert (L0["type"], L0["in_shape"], L0["out_shape"], L0["kernel"], L0["padding"]) == (
        "conv_lif",
        [1, 8, 8],
        [3, 8, 8],
        [3, 3],
        [1, 1],
    )
    assert L0["files"]["weight"]["words"] == 3 * 1 * 3 * 3 and L0["files"]["bias"]["words"] == 3
    assert L0["files"]["threshold"]["words"] == L0["n_out"] == 192
    assert [p["type"] for p in L1["pre"]] == ["max_pool"] and L1["pre"][0]["out_shape"] == [3, 4, 4]
    assert [p["type"] for p in L2["pre"]] == ["sum_pool", "flatten"] and L2["pre"][0]["out_bits"] == 3
    assert L2["input_max"] == 4 and L2["input_bits"] == 3 and L2["input_divisor"] == 4
    assert L1["acc_bits"] == int(27 * 128 + 2**15).bit_length() + 1
    assert L2["acc_bits"] == int(16 * 4 * 128 + 2**15).bit_length() + 1
    from_files = simulate_bundle(b, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decay shift: β = 0.9 becomes 0.875
        in_memory = simulate(quantize(m, decay=decay, input_shape=(1, 8, 8)), x)
    for a, c in zip(from_files["spikes"], in_memory):
        assert a.mean() > 0.01 and np.array_equal(a, c)
    _, golden = read_vectors(b, man)
    assert all(np.array_equal(g, c) for g, c in zip(golden, in_memory))
    r = compare_with_float(m, b, x, torch.arange(3))
    assert len(r["spike_agreement"]) == 3 and min(r["spike_agreement"]) > 0.8


# --------------------------------------------------------------------------------------------- bad input


def test_bad_models_and_settings_raise_value_errors_naming_the_value(tmp_path):
    tanh = SpikingSequential(nn.Flatten(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2), LIF())
    with pytest.raises(
        ValueError, match=r"layer '2' \(Tanh\) is not supported by the integer network \(the FPGA bundle"
    ):
        export_fpga(tanh, tmp_path / "t")
    conv = build_model(ModelConfig(arch="spiking-lenet", input_shape=(1, 8, 8)))
    with pytest.raises(
        ValueError, match=r"cannot infer the input shape of a model that starts with a convolution"
    ):
        export_fpga(conv, tmp_path / "t")
    pool_on_current = SpikingSequential(
        nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), LIF(), nn.Flatten(), nn.Linear(2, 2), LIF()
    )
    with pytest.raises(
        ValueError, match=r"layer '1' \(MaxPool2d\) reads a current; the integer network pools spikes only"
    ):
        export_fpga(pool_on_current, tmp_path / "t", input_shape=(1, 6, 6))
    dilated = SpikingSequential(nn.Conv2d(1, 2, 3, dilation=2), LIF())
    with pytest.raises(
        ValueError,
        match=r"layer '0' \(Conv2d\): the integer network takes Conv2d with groups=1 and no dilation",
    ):
        export_fpga(dilated, tmp_path / "t", input_shape=(1, 6, 6))
    trailing_pool = SpikingSequential(nn.Conv2d(1, 2, 3), LIF(), nn.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"must end in a LIF layer"):
        export_fpga(trailing_pool, tmp_path / "t", input_shape=(1, 6, 6))
    with pytest.raises(
        ValueError, match=r"mem_bits=8 cannot hold the threshold of layer '0': θ / scale = 128 needs 9 bits"
    ):
        export_fpga(one_neuron([0.5, 0.25], "zero", False), tmp_path / "t", weight_bits=8, mem_bits=8)
    with pytest.raises(ValueError, match="decay must be one of"):
        export_fpga(mlp(), tmp_path / "t", decay="exp")
    with pytest.raises(ValueError, match="weight_bits=12 > mem_bits=8"):
        export_fpga(mlp(), tmp_path / "t", weight_bits=12, mem_bits=8)
    with pytest.raises(ValueError, match="must be binary"):
        export_fpga(mlp(), tmp_path / "t", inputs=torch.rand(5, 2, 24))
    assert not (tmp_path / "t").exists()
    with pytest.raises(ValueError, match="expected 24 inputs per step, got 5"):
        simulate(quantize(mlp()), np.zeros((3, 2, 5)))


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    cfg = ModelConfig(arch="spiking-mlp", input_shape=(24,), hidden=(16,), classes=6)
    save_checkpoint(tmp_path / "ck", build_model(cfg), cfg)
    other = build_model(ModelConfig(arch="spiking-mlp", input_shape=(24,), hidden=(20,), classes=6))
    torch.save(other.state_dict(), tmp_path / "ck" / "model.pt")
    with pytest.raises(ValueError, match="do not fit the architecture"):
        export_fpga(tmp_path / "ck", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_tampered_or_incomplete_bundle_is_refused(tmp_path):
    b = export(mlp(), tmp_path / "b")
    verify_bundle(b)
    x = spikes((5, 2, 24))
    path = b / "layer0_weight.mem"
    text = path.read_text()
    path.write_text(("7f" if text[:2] != "7f" else "00") + text[2:])
    with pytest.raises(BundleError, match=r"layer0_weight\.mem was modified: sha256"):
        simulate_bundle(b, x)
    with pytest.raises(BundleError, match=r"layer0_weight\.mem was modified"):
        verify_bundle(b)
    path.write_text(text)
    simulate_bundle(b, x)  # restored: fine again
    (b / "vectors" / "layer1_spikes.mem").unlink()
    with pytest.raises(BundleError, match=r"vectors/layer1_spikes\.mem is missing"):
        verify_bundle(b)
    (b / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        simulate_bundle(b, x)


def test_failure_mid_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = fixed_point._write_mif

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(fixed_point, "_write_mif", flaky)
    with pytest.raises(OSError, match="disk full"):
        export(mlp(), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone too
    # an existing bundle survives a failed re-export untouched
    monkeypatch.setattr(fixed_point, "_write_mif", real)
    old = export(mlp(seed=1), tmp_path / "old")
    before = (old / "manifest.json").read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(fixed_point, "_write_mif", flaky)
    with pytest.raises(OSError):
        export(mlp(seed=2), tmp_path / "old", overwrite=True)
    assert (old / "manifest.json").read_bytes() == before
    verify_bundle(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    # and a successful re-export replaces it, when asked to
    monkeypatch.setattr(fixed_point, "_write_mif", real)
    with pytest.raises(FileExistsError, match="holds an FPGA bundle already; pass overwrite=True"):
        export(mlp(seed=2), tmp_path / "old")
    assert (old / "manifest.json").read_bytes() == before
    export(mlp(seed=2), tmp_path / "old", overwrite=True)
    assert (old / "manifest.json").read_bytes() != before
    verify_bundle(old)


def _tree(root):
    """Every path under root with the bytes of the files: what must survive a refused export."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"mine is not an lfp-snn FPGA bundle \(no manifest.json\); it holds "
                           r"1 file \(notes.txt\); refusing to replace it"):  # fmt: skip
            export_fpga(mlp(), mine, overwrite=overwrite)
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "text,why",
    [
        ('{"files": {}}', "its manifest.json has format None, not 'lfp-snn-fpga-bundle'"),
        ('{"format": "other-tool", "files": {"notes.txt": "0"}}', "has format 'other-tool'"),
        ("[1, 2]", "has format None"),
        ("not json {", "its manifest.json cannot be read as JSON"),
        ('{"format": "lfp-snn-fpga-bundle"}', "lists no files with their sha256"),
    ],
)
def test_a_foreign_manifest_json_does_not_make_a_folder_a_bundle(tmp_path, text, why):
    """Any file named manifest.json used to be enough for --overwrite to delete the folder; now only a
    manifest whose format field is the bundle's counts, and nothing of the folder is lost."""
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "manifest.json").write_text(text)
    (d / "notes.txt").write_text("keep me")
    (d / "sub" / "data.csv").write_text("1,2")
    before = _tree(d)
    with pytest.raises(ValueError, match=re.escape(why)) as err:
        export(mlp(), d, overwrite=True)
    assert str(d) in str(err.value) and "3 files (manifest.json, notes.txt, sub/data.csv)" in str(err.value)
    assert _tree(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left either


def test_a_bundle_with_the_users_files_in_it_is_never_replaced(tmp_path):
    b = export(mlp(), tmp_path / "b")
    (b / "my_notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"also holds 1 path\(s\) that are not part of it \(my_notes.txt\)"):
        export(mlp(seed=1), b, overwrite=True)
    assert (b / "my_notes.txt").read_text() == "keep me"
    verify_bundle(b)
    (b / "my_notes.txt").unlink()
    (b / "vectors" / "mine").mkdir()  # an empty folder of the user's: not part of the bundle either
    with pytest.raises(ValueError, match=r"not part of it \(vectors/mine\)"):
        export(mlp(seed=1), b, overwrite=True)
    (b / "vectors" / "mine").rmdir()
    (b / "hdl" / "link.v").symlink_to(b / "hdl" / "lfp_snn_top.v")
    with pytest.raises(ValueError, match=r"not part of it \(hdl/link.v\)"):
        export(mlp(seed=1), b, overwrite=True)
    (b / "hdl" / "link.v").unlink()
    export(mlp(seed=1), b, overwrite=True)  # exactly the bundle again: replaced
    verify_bundle(b)


def test_a_bundle_whose_files_were_edited_is_never_replaced(tmp_path):
    b = export(mlp(), tmp_path / "b")
    top = b / "hdl" / "lfp_snn_top.v"
    top.write_text(top.read_text() + "// my change\n")
    before = _tree(b)
    with pytest.raises(ValueError, match=r"hdl/lfp_snn_top.v changed since it was written"):
        export(mlp(seed=1), b, overwrite=True)
    assert _tree(b) == before


def test_a_bundle_that_changes_during_the_export_is_put_back(tmp_path, monkeypatch):
    """The folder is checked again after it is renamed aside; a file that appeared meanwhile keeps it."""
    b = export(mlp(), tmp_path / "b")
    real = fixed_point._write_bundle

    def write_and_meddle(root, *a, **k):
        real(root, *a, **k)
        (b / "late.txt").write_text("written while exporting")

    monkeypatch.setattr(fixed_point, "_write_bundle", write_and_meddle)
    with pytest.raises(ValueError, match="changed while the new bundle was written"):
        export(mlp(seed=1), b, overwrite=True)
    assert (b / "late.txt").read_text() == "written while exporting"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# ------------------------------------------------------------------------------------------ C and Verilog


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize(
    "model,decay,reset,delay",
    [
        ("mlp", "multiply", "subtract", True),
        ("mlp", "shift", "zero", False),
        ("conv", "multiply", "zero", True),
    ],
)
def test_c_header_reproduces_the_golden_vectors(tmp_path, model, decay, reset, delay):
    if model == "mlp":
        b = export(mlp(reset, delay), tmp_path / "b", decay=decay)
    else:
        x = spikes((6, 3, 1, 8, 8), p=0.4, seed=6)
        b = export(conv_net(reset, delay), tmp_path / "b", decay=decay, inputs=x, input_shape=(1, 8, 8))
    _, man = load_bundle(b)
    x, expected = read_vectors(b, man)
    T, S, F = x.shape
    n = len(expected)
    data = ",".join(str(int(v)) for v in x.transpose(1, 0, 2).reshape(-1))
    prints = "\n            putchar(' ');\n".join(
        f"            for (int o = 0; o < LFP_SNN_L{i}_N_OUT; ++o) putchar('0' + st.s{i}[o]);"
        for i in range(n)
    )
    (tmp_path / "main.c").write_text(
        f"""#include <stdio.h>
#include "lfp_snn_model.h"
static const uint8_t X[{T * S * F}] = {{{data}}};
static lfp_snn_state st;
int main(void) {{
    for (int s = 0; s < {S}; ++s) {{
        lfp_snn_reset(&st);
        for (int t = 0; t < {T}; ++t) {{
            lfp_snn_step(&st, X + (s * {T} + t) * {F});
{prints}
            putchar('\\n');
        }}
    }}
    return 0;
}}
"""
    )
    exe = tmp_path / "main"
    cc = subprocess.run(
        [
            "cc",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(b),
            str(tmp_path / "main.c"),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert cc.returncode == 0, cc.stderr
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    for i in range(n):
        got = (
            np.array([[int(c) for c in line.split()[i]] for line in lines])
            .reshape(S, T, -1)
            .transpose(1, 0, 2)
        )
        assert np.array_equal(got, expected[i])
    assert expected[-1].sum() > 0


VERILOG_CASES = [
    ("multiply", "subtract", True, {}),
    ("shift", "zero", False, {}),
    pytest.param("multiply", "zero", True, {}, marks=pytest.mark.slow),
    pytest.param("shift", "subtract", False, {}, marks=pytest.mark.slow),
    pytest.param(
        "multiply", "subtract", False, {"weight_bits": 6, "mem_bits": 7, "scale": 6.0}, marks=pytest.mark.slow
    ),
    pytest.param(
        "shift", "subtract", True, {"weight_bits": 4, "mem_bits": 8, "scale": "real"}, marks=pytest.mark.slow
    ),
]


@needs_iverilog
@pytest.mark.parametrize("decay,reset,delay,extra", VERILOG_CASES)
def test_verilog_matches_the_golden_vectors_bit_for_bit(tmp_path, decay, reset, delay, extra):
    extra = dict(extra)
    scale = extra.pop("scale", 3.0)
    kw = {"scale": scale} if isinstance(scale, str) else {}
    m = mlp(reset, delay, scale=scale if not isinstance(scale, str) else 3.0)
    b = export(m, tmp_path / "b", decay=decay, **extra, **kw)
    res = run_verilog_check(b)
    assert res.ok, "\n".join(res.mismatches[:10]) + res.log[-2000:]
    assert (res.layers, res.samples, res.steps) == (2, 4, 25)
    _, man = load_bundle(b)
    _, golden = read_vectors(b, man)
    assert golden[0].sum() > 0 and golden[1].sum() > 0  # the check compared real spikes


@needs_iverilog
@pytest.mark.parametrize(
    "decay,reset,delay,extra",
    [("multiply", "subtract", True, {}), ("shift", "zero", False, {"weight_bits": 5, "mem_bits": 9})],
)
def test_verilog_conv_and_pooling_match_bit_for_bit(tmp_path, decay, reset, delay, extra):
    """Convolutions with padding, a max pool (OR), a sum pool (3-bit counts into the dense layer) and
    Flatten, in iverilog, against the golden vectors of the integer simulator."""
    m = conv_net(reset, delay)
    x = spikes((6, 3, 1, 8, 8), p=0.4, seed=6)
    b = export(m, tmp_path / "b", decay=decay, inputs=x, input_shape=(1, 8, 8), **extra)
    res = run_verilog_check(b)
    assert res.ok, "\n".join(res.mismatches[:10]) + res.log[-2000:]
    _, golden = read_vectors(b, load_bundle(b)[1])
    assert all(g.sum() > 0 for g in golden)


@needs_iverilog
def test_verilog_strided_convolution_on_the_input(tmp_path):
    """A strided, padded convolution reading the input, and a padded sum pool: every window edge case."""
    torch.manual_seed(2)
    m = SpikingSequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1), LIF(), nn.AvgPool2d(2, padding=1),
        nn.Conv2d(3, 4, 2), LIF(), nn.Flatten(), nn.Linear(36, 5), LIF(),
    )  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
    x = spikes((8, 3, 1, 11, 11), p=0.4, seed=7)
    b = export(m, tmp_path / "b", inputs=x, input_shape=(1, 11, 11))
    assert load_bundle(b)[1]["layers"][0]["out_shape"] == [3, 6, 6]
    res = run_verilog_check(b)
    assert res.ok, "\n".join(res.mismatches[:10])


@needs_iverilog
def test_verilog_saturating_configuration_matches(tmp_path):
    """mem_bits=7 (±63 LSB, θ_q = 16) with large currents: the simulator saturates (its spikes differ from
    mem_bits=16) and the HDL must saturate the same way."""
    m = mlp("subtract", False, scale=6.0)
    x = spikes((25, 4, 24), p=0.6)
    wide = simulate(quantize(m, weight_bits=6, mem_bits=16), x)
    narrow = simulate(quantize(m, weight_bits=6, mem_bits=7), x)
    assert sum(int((a != c).sum()) for a, c in zip(wide, narrow)) > 10
    b = export(m, tmp_path / "b", weight_bits=6, mem_bits=7, inputs=x)
    assert run_verilog_check(b).ok


@needs_iverilog
def test_verilog_check_detects_a_wrong_golden_vector(tmp_path):
    """Negative control: flip one golden output bit and re-sign the manifest; the HDL no longer matches."""
    b = export(mlp(), tmp_path / "b")
    path = b / "vectors" / "layer1_spikes.mem"
    lines = path.read_text().split("\n")
    lines[3] = format(int(lines[3], 16) ^ 1, f"0{len(lines[3])}x")
    path.write_text("\n".join(lines))
    man = json.loads((b / "manifest.json").read_text())
    man["files"]["vectors/layer1_spikes.mem"] = _sha(path)
    (b / "manifest.json").write_text(json.dumps(man))
    res = run_verilog_check(b)
    assert not res.ok
    assert res.mismatches == ["layer 1 sample 0 step 3 neuron 0: hdl " + res.mismatches[0].split("hdl ")[1]]
    with pytest.raises(BundleError, match="does not reproduce vectors/layer1_spikes.mem"):
        verify_bundle(b)


@pytest.mark.slow
def test_digits_trained_model_through_the_bundle_and_hdl(tmp_path):
    """A spiking MLP trained by LFP on rate-coded sklearn digits for two epochs, then 8-bit: the bundle's
    accuracy stays within 5 points of the float model's and the HDL matches."""
    from lfp_snn.data import load_digits
    from lfp_snn.encoders.static import rate_encode
    from lfp_snn.training import TrainConfig, Trainer

    train, test = load_digits()
    mc = ModelConfig(arch="spiking-mlp", input_shape=(1, 8, 8), hidden=(64,), classes=10)
    tc = TrainConfig(epochs=2, steps=25, encoder="rate", progress=False, batch_size=32)
    Trainer(mc, tc, out_dir=tmp_path / "ck").fit(train)
    x = rate_encode(test.x, 25, generator=torch.Generator().manual_seed(1))
    b = export(tmp_path / "ck", tmp_path / "b", inputs=x[:, :4])
    r = compare_with_float(tmp_path / "ck", b, x, test.y)
    assert r["float_accuracy"] > 0.5
    assert abs(r["bundle_accuracy"] - r["float_accuracy"]) < 0.05
    assert r["spike_agreement"][0] > 0.9
    if iverilog_available():
        assert run_verilog_check(b).ok


@pytest.mark.slow
def test_spiking_lenet_on_digits_through_the_bundle_and_hdl(tmp_path):
    """``--arch spiking-lenet`` (Conv 12 k5 -> LIF -> MaxPool 2 -> Conv 64 k5 -> LIF -> MaxPool 2 -> Flatten ->
    Linear -> LIF; padding 2 on 8x8 digits) trained by LFP on rate-coded digits, then 8-bit: the HDL matches the
    integer simulator bit for bit, and the bundle follows the float model (closer at 16 bits)."""
    from lfp_snn.cli import main
    from lfp_snn.data import load_digits
    from lfp_snn.encoders.static import rate_encode

    ck = tmp_path / "ck"
    assert main(["train", "--arch", "spiking-lenet", "--encoder", "rate", "--epochs", "3", "--out", str(ck),
                 "--no-progress"]) == 0  # fmt: skip
    _, test = load_digits()
    x = rate_encode(test.x, 10, generator=torch.Generator().manual_seed(1))
    b8 = export(ck, tmp_path / "b8", inputs=x[:3, :2])
    man = verify_bundle(b8)
    assert [L["type"] for L in man["layers"]] == ["conv_lif", "conv_lif", "dense_lif"]
    assert [[p["type"] for p in L["pre"]] for L in man["layers"]] == [
        [],
        ["max_pool"],
        ["max_pool", "flatten"],
    ]
    r8 = compare_with_float(ck, b8, x, test.y)
    assert r8["float_accuracy"] > 0.7
    assert abs(r8["bundle_accuracy"] - r8["float_accuracy"]) < 0.05
    assert min(r8["spike_agreement"][:2]) > 0.9
    b16 = export(ck, tmp_path / "b16", weight_bits=16, mem_bits=24, beta_bits=16, inputs=x[:3, :2])
    r16 = compare_with_float(ck, b16, x, test.y)
    assert min(r16["spike_agreement"]) > 0.995 and r16["prediction_agreement"] > 0.99
    if iverilog_available():
        res = run_verilog_check(b8)
        assert res.ok, "\n".join(res.mismatches[:10])
