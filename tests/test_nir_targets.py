"""NIR target presets, cross-checked in each reader's own simulator on LFP-trained sklearn-digits models.

For every reader that installs here (snntorch, norse, spyx with the CPU jax, sinabs, rockpool) the model is
exported with the reader's preset, loaded and run by the reader, and its output spikes compared with lfp-snn's:
zero mismatches for the lfp-snn neuron the preset names as exact there (under the documented settings), and a
warning naming the difference for a neuron the reader runs otherwise. A reader that is not installed is skipped
with the reason. docs/export.md ("Target presets") holds the table these tests check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir", reason="the NIR export needs the nir package (the export extra)")

from lfp_snn import LIF, CubaLIF, MultiSpikeLIF, SpikingSequential  # noqa: E402
from lfp_snn.export import export_nir, import_nir, to_nir_graph  # noqa: E402
from lfp_snn.export.nir_readers import PACKAGES, cross_check, installed  # noqa: E402
from lfp_snn.export.nir_targets import TARGET_NAMES  # noqa: E402
from lfp_snn.models import ModelConfig, build_model  # noqa: E402

T, N = 25, 100  # steps and test images of the cross-checks
SINABS_PINNED = (
    Path(sys.prefix) / "sinabs-nir-1.0.4"
)  # scripts/setup.sh: nir 1.0.4 + nirtorch 1.0, sinabs's pins


def need(target: str) -> None:
    if not installed(target):
        pytest.skip(
            f"the {target} reader ({PACKAGES[target]}) does not import here; scripts/setup.sh installs it "
            "(spyx with jax[cpu], sinabs --no-deps, rockpool)"
        )


# --------------------------------------------------------------------------------------- trained models


@pytest.fixture(scope="module")
def digits():
    from lfp_snn.data import load_digits
    from lfp_snn.encoders.static import rate_encode

    train, test = load_digits()
    x = rate_encode(test.x[:N], T, generator=torch.Generator().manual_seed(1))  # [T, N, 1, 8, 8] spikes
    return train, x


def _dense(neuron, bias_after_first=True):
    return SpikingSequential(
        nn.Flatten(), nn.Linear(64, 64), neuron(), nn.Linear(64, 10, bias=bias_after_first), neuron()
    )


MODELS = {
    # ModelConfig models, as `lfp-snn train` makes them
    "zero": dict(reset="zero", reset_delay=False),
    "zero-delayed": dict(reset="zero", reset_delay=True),
    "reference": dict(reset="subtract", reset_delay=True),  # lfp-snn's default neuron
    "subtract-immediate": dict(reset="subtract", reset_delay=False),
    # SpikingSequential models handed to the trainer
    "reference-no-bias": lambda: _dense(lambda: LIF(0.9, 1.0, "subtract", True), bias_after_first=False),
    "cuba": lambda: _dense(lambda: CubaLIF(0.5, 0.875, 1.0, "subtract", False)),
    "multispike": lambda: _dense(lambda: MultiSpikeLIF(0.9, 1.0)),  # sinabs's and rockpool's own neuron
}


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """kind -> a spiking MLP 64-64-10 trained by LFP for one epoch on rate-coded digits (made on first use)."""
    from lfp_snn.training import TrainConfig, Trainer

    train, _ = digits
    cache: dict[str, nn.Module] = {}
    folders: dict[str, Path] = {}

    def get(kind: str) -> nn.Module:
        if kind not in cache:
            spec = MODELS[kind]
            tc = TrainConfig(epochs=1, steps=T, encoder="rate", progress=False, batch_size=32, seed=0)
            base = dict(arch="spiking-mlp", input_shape=(1, 8, 8), hidden=(64,), classes=10)
            if callable(spec):
                torch.manual_seed(0)
                tr = Trainer(ModelConfig(**base), tc, model=spec())
            else:
                folders[kind] = tmp_path_factory.mktemp(kind)
                tr = Trainer(ModelConfig(**base, **spec), tc, out_dir=folders[kind])
            tr.fit(train)
            cache[kind] = tr.model.eval()
        return cache[kind]

    def folder(kind: str) -> Path:
        """The checkpoint folder of a ModelConfig kind (as `lfp-snn train --out` writes it)."""
        get(kind)
        return folders[kind]

    get.folder = folder
    return get


def check(model, target, x, settings="exact"):
    r = cross_check(model, target, x, settings=settings)
    assert 0.05 < r["spikes"] / r["total"] < 0.95, r  # neither silent nor saturated
    return r


# ------------------------------------------------------------------------------------------ cross-checks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zero", "reference", "subtract-immediate", "cuba"])
def test_generic_preset_round_trips_every_trained_neuron(trained, digits, kind):
    assert check(trained(kind), "generic", digits[1])["mismatches"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zero", "zero-delayed"])
def test_snntorch_runs_zero_reset_models_exactly(trained, digits, kind):
    need("snntorch")
    r = check(trained(kind), "snntorch", digits[1])
    assert r["mismatches"] == 0 and r["warnings"] == []


@pytest.mark.slow
def test_snntorch_warns_for_the_subtract_reset_and_differs(trained, digits):
    need("snntorch")
    r = check(trained("reference"), "snntorch", digits[1])
    assert r["mismatches"] > 0
    assert any("reset_mechanism='zero'" in w and "reset='zero'" in w for w in r["warnings"])


@pytest.mark.slow
def test_norse_runs_zero_reset_models_exactly(trained, digits):
    """norse's Euler step v + dt/τ (i - v) is exact in float64 (the default float32 may flip a spike at a
    rounding tie); the preset folds R into the weights and writes norse's default dt."""
    need("norse")
    m = trained("zero")
    r = check(m, "norse", digits[1])
    assert r["mismatches"] == 0 and r["warnings"] == []
    bad = check(trained("reference"), "norse", digits[1])
    assert bad["mismatches"] > 0 and any("always resets to v_reset" in w for w in bad["warnings"])


@pytest.mark.slow
def test_spyx_runs_the_reference_neuron_without_later_biases_exactly(trained, digits):
    """spyx fires from the previous membrane (lfp-snn's subtract + delayed reset, one step late per layer):
    realigned, the spikes are equal when the layers after the first have no bias (a bias would act one step
    longer there); with a bias the export warns and the spikes differ."""
    need("spyx")
    r = check(trained("reference-no-bias"), "spyx", digits[1])
    assert r["mismatches"] == 0
    assert [w for w in r["warnings"] if "bias" in w] == [] and any("one step" in w for w in r["warnings"])
    biased = check(trained("reference"), "spyx", digits[1])
    assert biased["mismatches"] > 0 and any("bias=False" in w for w in biased["warnings"])
    zero = check(trained("zero"), "spyx", digits[1])
    assert zero["mismatches"] > 0 and any("reset='subtract', reset_delay=True" in w for w in zero["warnings"])


@pytest.mark.slow
def test_sinabs_runs_subtract_without_delay_exactly_with_single_spikes(trained, digits):
    need("sinabs")
    m = trained("subtract-immediate")
    r = check(m, "sinabs", digits[1])
    assert r["mismatches"] == 0 and any("SingleSpike" in w for w in r["warnings"])
    multi = check(m, "sinabs", digits[1], settings="defaults")  # sinabs's MultiSpike: floor(v/θ) spikes
    assert multi["mismatches"] > 0
    assert check(trained("reference"), "sinabs", digits[1])["mismatches"] > 0


@pytest.mark.slow
def test_rockpool_runs_subtract_without_delay_exactly_with_one_spike_per_step(trained, digits):
    """CubaLIF with α = 0.5: exact by construction; a LIF goes in as a CubaLIF with α ≈ 2^-24 (warned) and
    comes out equal on these inputs too."""
    need("rockpool")
    cuba = check(trained("cuba"), "rockpool", digits[1])
    assert cuba["mismatches"] == 0 and not any("α ≈ 2^-24" in w for w in cuba["warnings"])
    assert check(trained("cuba"), "rockpool", digits[1], settings="defaults")["mismatches"] > 0
    lif = check(trained("subtract-immediate"), "rockpool", digits[1])
    assert lif["mismatches"] == 0 and any("α ≈ 2^-24" in w for w in lif["warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("target", ["sinabs", "rockpool"])
def test_multispike_models_run_exactly_with_the_readers_defaults(trained, digits, target):
    """MultiSpikeLIF is the neuron sinabs and rockpool run as they come (floor(v/θ) spikes, subtract reset):
    zero mismatches without any setting changed, and no warning about spikes per step."""
    need(target)
    m = trained("multispike")
    r = check(m, target, digits[1], settings="defaults")
    assert r["mismatches"] == 0 and not any("spikes per step" in w for w in r["warnings"])
    assert float(m(digits[1]).max()) >= 2  # it does fire twice in a step
    other = check(m, "generic", digits[1])  # lfp-snn's own import restores the neuron from the metadata
    assert other["mismatches"] == 0 and any("at most one spike per step" in w for w in other["warnings"])


@pytest.mark.parametrize("target", ["sinabs", "rockpool"])
def test_a_capped_multispike_layer_runs_with_the_cap_set_there(target):
    need(target)
    torch.manual_seed(3)
    m = SpikingSequential(
        nn.Linear(16, 12), MultiSpikeLIF(0.875, 1.0, 2), nn.Linear(12, 4), MultiSpikeLIF(0.875, 0.5, 2)
    )
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    x = (torch.rand(T, 8, 16, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    assert float(m[:2](x).max()) == 2.0
    r = cross_check(m, target, x)  # the cap, set on the imported layers (MaxSpike / max_spikes_per_dt)
    assert r["mismatches"] == 0 and any("caps its spikes at 2" in w for w in r["warnings"])
    assert cross_check(m, target, x, settings="defaults")["mismatches"] > 0


@pytest.mark.slow
def test_sinabs_preset_loads_in_the_nir_version_sinabs_pins(trained, digits, tmp_path):
    """sinabs 3.1 asks for nir <= 1.0.4, whose LIF has no v_reset: the sinabs preset leaves it out, and sinabs
    runs the file there (nir 1.0.4 + nirtorch 1.0 in a folder of their own, in a subprocess) with zero
    mismatches; the generic file does not load there."""
    need("sinabs")
    if not (SINABS_PINNED / "nir").is_dir():
        pytest.skip(
            f"sinabs's pinned NIR (nir 1.0.4, nirtorch 1.0) is not installed at {SINABS_PINNED} (scripts/setup.sh)"
        )
    m = trained("subtract-immediate")
    x = digits[1][:, :8].flatten(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_nir(m, tmp_path / "sinabs.nir", target="sinabs")
        export_nir(m, tmp_path / "generic.nir")
    torch.save(x, tmp_path / "x.pt")
    script = """
import json, sys, torch, nir, sinabs
from sinabs.activation import SingleSpike
folder = sys.argv[1]
out = {"nir": nir.__version__}
try:
    nir.read(folder + "/generic.nir")
    out["generic"] = "read"
except Exception as e:
    out["generic"] = type(e).__name__ + ": " + str(e)
x = torch.load(folder + "/x.pt")
T, B = x.shape[:2]
net = sinabs.from_nir(nir.read(folder + "/sinabs.nir"), batch_size=B)
for m in net.modules():
    if hasattr(m, "spike_fn"):
        m.spike_fn = SingleSpike
with torch.no_grad():
    y = net(x.transpose(0, 1).reshape(B * T, -1))
y = y[0] if isinstance(y, tuple) else y
torch.save(y.reshape(B, T, -1).transpose(0, 1), folder + "/y.pt")
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(SINABS_PINNED)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["nir"] == "1.0.4" and "v_reset" in out["generic"]
    y = torch.load(tmp_path / "y.pt")
    ref = m(x)
    assert ref.sum() > 0 and torch.equal(y, ref)


# ------------------------------------------------------------------------------------ what presets write


def mlp(reset="zero", delay=False, seed=1):
    cfg = ModelConfig(
        arch="spiking-mlp", input_shape=(1, 4, 5), hidden=(16,), classes=6, reset=reset, reset_delay=delay
    )
    m = build_model(cfg, seed=seed)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m.eval()


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def test_each_preset_writes_its_readers_dt_and_fields(tmp_path):
    m = mlp()
    dts = {t: float(quiet(to_nir_graph, m, target=t).metadata["dt"]) for t in TARGET_NAMES if t != "xylo"}
    assert dts == {
        "generic": 1e-3,
        "snntorch": 1e-4,
        "norse": 1e-3,
        "spyx": 1.0,
        "sinabs": 1.0,
        "rockpool": 1e-3,
    }
    with pytest.raises(ValueError, match=r"hard-codes dt = 0.0001"):
        to_nir_graph(m, 1e-3, target="snntorch")
    with pytest.raises(ValueError, match="needs fold_r=True"):
        to_nir_graph(m, target="norse", fold_r=False)
    with pytest.raises(ValueError, match="unknown NIR target 'loihi'"):
        to_nir_graph(m, target="loihi")
    norse = to_nir_graph(m, target="norse")  # r folded into the weights
    np.testing.assert_array_equal(norse.nodes["lif0"].r, 1.0)
    np.testing.assert_allclose(norse.nodes["affine0"].weight, m[1].weight.detach().numpy() * 10, rtol=1e-6)
    with pytest.warns(UserWarning, match=r"from_nir\(\.\.\., dt=0.002\)"):
        to_nir_graph(m, 2e-3, target="norse")
    # sinabs: no v_reset in the file (nir 1.0.4 rejects it), τ in steps with float32 exp(-1/τ) == β exactly
    quiet(export_nir, mlp("subtract"), tmp_path / "s.nir", target="sinabs")
    import h5py

    with h5py.File(tmp_path / "s.nir") as f:
        assert "v_reset" not in f["node"]["nodes"]["lif0"] and "tau" in f["node"]["nodes"]["lif0"]
    tau = nir.read(tmp_path / "s.nir").nodes["lif0"].tau
    assert torch.equal(torch.exp(-1.0 / torch.as_tensor(tau, dtype=torch.float32)), torch.full((16,), 0.9))
    # rockpool: every neuron a CubaLIF, and r carries rockpool's dt = τ_mem / (1 + r)
    g = quiet(to_nir_graph, mlp("subtract"), target="rockpool")
    cubas = [n for n in g.nodes.values() if isinstance(n, nir.CubaLIF)]
    assert len(cubas) == 2 and not any(isinstance(n, (nir.LIF, nir.IF)) for n in g.nodes.values())
    assert all(np.all(c.tau_mem / (1 + c.r) == 1e-3) for c in cubas)
    for t in ("sinabs", "rockpool", "spyx"):
        x = (torch.rand(T, 4, 1, 4, 5, generator=torch.Generator().manual_seed(0)) < 0.3).float()
        quiet(export_nir, mlp("subtract", False), tmp_path / f"{t}.nir", target=t)
        assert torch.equal(import_nir(tmp_path / f"{t}.nir")(x), mlp("subtract", False)(x)), t


def test_loading_failures_are_errors_at_export():
    per_neuron = SpikingSequential(
        nn.Linear(6, 4), LIF(0.9, torch.tensor([0.5, 1.0, 1.5, 2.0]), "zero", False)
    )
    with pytest.raises(ValueError, match="one threshold per layer"):
        to_nir_graph(per_neuron, target="snntorch")
    cuba = SpikingSequential(nn.Linear(6, 4), CubaLIF(0.5, 0.9, 1.0, "subtract", False))
    with pytest.raises(ValueError, match="sinabs 3.1's from_nir has no CubaLIF"):
        to_nir_graph(cuba, target="sinabs")
    conv = SpikingSequential(
        nn.Conv2d(1, 2, 3), LIF(0.9, 1.0, "subtract", False), nn.Flatten(), nn.Linear(72, 3), LIF()
    )
    with pytest.raises(ValueError, match=r"Conv2d \(Xylo and the rockpool preset are dense only\)"):
        to_nir_graph(conv, input_shape=(1, 8, 8), target="rockpool")
    iff = SpikingSequential(nn.Linear(6, 4), LIF(1.0, 1.0, "subtract", False))
    with pytest.raises(ValueError, match="β = 1"):
        to_nir_graph(iff, target="rockpool")


def xylo_net(n_in=16, hidden=32, n_out=8, beta=0.875, alpha=0.5, bias=False):
    torch.manual_seed(0)
    m = SpikingSequential(
        nn.Linear(n_in, hidden, bias=bias),
        CubaLIF(alpha, beta, 1.0, "subtract", False),
        nn.Linear(hidden, n_out, bias=bias),
        CubaLIF(alpha, beta, 1.0, "subtract", False),
    )
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    return m.eval()


def test_xylo_design_rules_are_errors_at_export():
    quiet(to_nir_graph, xylo_net(), target="xylo")  # within Xylo Audio 2's limits
    for net, match in [
        (xylo_net(n_in=64), "at most 16 input channels"),
        (xylo_net(n_out=10), "at most 8"),
        (xylo_net(hidden=1001), "at most 1000"),
        (xylo_net(bias=True), "does not transfer weight biases"),
        (xylo_net(beta=0.9), r"1 - 2\^-k.*--beta 0.875"),
        (xylo_net(alpha=0.6), r"alpha = .*1 - 2\^-k"),
    ]:
        with pytest.raises(ValueError, match=match):
            quiet(to_nir_graph, net, target="xylo")
    with pytest.raises(ValueError, match="at least two neuron layers"):
        to_nir_graph(SpikingSequential(nn.Linear(4, 4, bias=False), CubaLIF(0.5, 0.875)), target="xylo")


def test_xylo_preset_runs_in_rockpool_exactly():
    need("rockpool")
    x = (torch.rand(T, 8, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    r = check(xylo_net(), "xylo", x)
    assert r["mismatches"] == 0


def test_conv_graphs_run_batched_in_snntorch_and_norse():
    """Flatten dims are written counted from the end (NIR's axes exclude the batch axis): torch-based readers
    that pass them to torch.nn.Flatten unchanged flatten the same axes of a batch."""
    m = SpikingSequential(
        nn.Conv2d(1, 4, 3, padding=1), LIF(0.8, 1.0, "zero", False), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(64, 5), LIF(0.9, 0.5, "zero", False),
    )  # fmt: skip
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.5)
    x = (torch.rand(T, 6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    g = to_nir_graph(m, input_shape=(1, 8, 8))
    assert (g.nodes["flatten0"].start_dim, g.nodes["flatten0"].end_dim) == (-3, -1)
    with pytest.raises(ValueError, match=r"input_shape \(6, 1, 8, 8\) has 4 axes.*drop the batch axis"):
        to_nir_graph(m, input_shape=(6, 1, 8, 8))
    need("snntorch")
    r = cross_check(m, "snntorch", x, input_shape=(1, 8, 8))
    assert r["spikes"] > 0 and r["mismatches"] == 0


@pytest.mark.slow
def test_cli_exports_for_a_target_and_cross_checks_in_its_reader(trained, tmp_path, capsys):
    from lfp_snn.cli import main

    need("norse")
    need("snntorch")
    zero = str(trained.folder("zero"))
    argv = ["export", "nir", zero, "--out", str(tmp_path / "n.nir"), "--target", "norse", "--cross-check"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["target"] == "norse" and report["dt"] == 1e-3 and "from_nir" in report["read_with"]
    assert report["round_trip_identical_spikes"] and report["cross_check_mismatches"] == 0
    assert (
        main(
            ["export", "nir", zero, "--out", str(tmp_path / "s.nir"), "--target", "snntorch", "--dt", "1e-3"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "hard-codes dt = 0.0001" in err and len(err.splitlines()) == 1
    # the default (subtract, delayed) neuron in snntorch: a warning naming the neuron to train, and mismatches
    ref = str(trained.folder("reference"))
    assert (
        main(
            ["export", "nir", ref, "--out", str(tmp_path / "r.nir"), "--target", "snntorch", "--cross-check"]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "warning: [target snntorch]" in out and "train with reset='zero' (--reset zero)" in out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["round_trip_identical_spikes"] and report["cross_check_mismatches"] > 0
