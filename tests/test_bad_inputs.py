"""Bad input, through the command line and the Python API: one clear error that names the value, the file or
the option and what is accepted, and nothing written earlier is lost or changed.

The cases of the reliability issue (each named in its test), and the ones found going through every entry
point: the ``train``, ``compare``, ``sweep`` and ``export`` subcommands, the configs, the Trainer, and the
readers of checkpoints, config.json, NIR files, HDF5 files and event recordings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lfp_snn.checkpoint import load_checkpoint, save_checkpoint
from lfp_snn.cli import main
from lfp_snn.data import load_dataset
from lfp_snn.events import make_events, write_nmnist_bin, write_shd
from lfp_snn.export import export_fpga, import_nir
from lfp_snn.models import ModelConfig, build_model
from lfp_snn.training import TrainConfig, Trainer
from lfp_snn.training.config import check_run

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--subset", "60", "--test-subset", "30", "--no-progress"]
TINY = [*BASE, "--hidden", "12", "-T", "3"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes): what must stay as it was."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def refused(argv, capsys, *needles) -> str:
    """Run ``lfp-snn ARGV``, expect exit code 2 and one ``error:`` line holding every needle; return it."""
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def trained_run(tmp_path: Path, name: str = "run", *extra: str) -> Path:
    out = tmp_path / name
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """One trained spiking run (config.json, model.pt, ...) that tests copy, never change."""
    out = tmp_path_factory.mktemp("trained") / "run"
    mc = ModelConfig(input_shape=(1, 8, 8), hidden=(12,))
    save_checkpoint(out, build_model(mc, seed=0), mc, {"epochs_done": 0})
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


# ------------------------------------------------------------------------------------------------------
# train: what it says it wrote, where, and into what
# ------------------------------------------------------------------------------------------------------


def test_zero_epochs_writes_nothing_and_says_so(tmp_path, capsys):
    """Issue case 1: ``train --epochs 0 --out D`` claimed to have written D/config.json, D/model.pt."""
    out = tmp_path / "D"
    assert main(["train", *TINY, "--epochs", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"nothing written to {out}: no epoch was trained (--epochs 0)" in text
    assert "wrote" not in text and not out.exists()


def test_train_without_out_makes_a_new_run_folder_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LFP_SNN_RUNS", str(tmp_path / "runs"))
    assert main(["train", *TINY, "--epochs", "1"]) == 0
    assert main(["train", *TINY, "--epochs", "1"]) == 0  # the same second: a second folder, not the first
    text = capsys.readouterr().out
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all((f / "config.json").is_file() for f in folders)
    for f in folders:
        assert f"saving to {f} (a new folder; --out names another)" in text


def test_rerun_into_a_run_folder_is_refused_and_changes_nothing(tmp_path, capsys):
    """Issue case 4: a rerun appended to metrics.jsonl (epochs 1, 2, 1) and overwrote model.pt, config.json."""
    out = trained_run(tmp_path)
    before = snapshot(out)
    refused(
        ["train", *TINY, "--epochs", "1", "--out", str(out)],
        capsys,
        str(out),
        "holds a run already",
        "--overwrite",
    )
    assert snapshot(out) == before


def test_overwrite_replaces_only_the_runs_own_files(tmp_path, capsys):
    out = trained_run(tmp_path, "run", "--seed", "1")
    (out / "notes.txt").write_text("mine")
    old_model = (out / "model.pt").read_bytes()
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out), "--overwrite"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (out / "model.pt").read_bytes() != old_model and (out / "notes.txt").read_text() == "mine"


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, capsys):
    """Two epochs, then --resume to four: the same weights, bit for bit, as four epochs in one go."""
    args = [*TINY, "--encoder", "rate", "--input-noise", "0.05"]  # random draws that must stay in step
    assert main(["train", *args, "--epochs", "4", "--out", str(tmp_path / "whole")]) == 0
    assert main(["train", *args, "--epochs", "2", "--out", str(tmp_path / "part")]) == 0
    assert main(["train", *args, "--epochs", "4", "--out", str(tmp_path / "part"), "--resume"]) == 0
    whole, _ = load_checkpoint(tmp_path / "whole")
    part, cfg = load_checkpoint(tmp_path / "part")
    assert cfg["train"]["epochs_done"] == 4
    for (n, a), (_, b) in zip(whole.state_dict().items(), part.state_dict().items()):
        assert torch.equal(a, b), n
    epochs = [json.loads(s)["epoch"] for s in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_resume_with_other_options_is_refused(tmp_path, capsys):
    out = trained_run(tmp_path)
    before = snapshot(out)
    refused(
        ["train", *TINY, "--epochs", "2", "--lr", "0.01", "--out", str(out), "--resume"],
        capsys,
        "--resume",
        "other options",
        "lr: 0.003 -> 0.01",
    )
    refused(["train", *TINY, "--epochs", "2", "--resume"], capsys, "--resume needs --out")
    assert snapshot(out) == before


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("mine")
    refused(["train", *TINY, "--epochs", "1", "--out", str(f)], capsys, str(f), "is a file; give a folder")
    assert "epoch" not in capsys.readouterr().out and f.read_text() == "mine"
    refused(["train", *TINY, "--out", str(f / "sub")], capsys, "cannot be made", "is a file")


def test_out_in_a_read_only_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes into any folder: make the write test fail as it would for a user
        import tempfile

        def denied(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    else:
        ro.chmod(0o555)
    try:
        refused(
            ["train", *TINY, "--epochs", "1", "--out", str(ro / "run")], capsys, "cannot be written", str(ro)
        )
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []


# ------------------------------------------------------------------------------------------------------
# train: options that do not apply, bad values
# ------------------------------------------------------------------------------------------------------


def test_rule_with_the_default_method_is_used(tmp_path, capsys):
    """Issue case 2: ``--rule zplus-zminus`` trained with ε and config.json said epsilon."""
    out = trained_run(tmp_path, "run", "--rule", "zplus-zminus")
    cfg = json.loads((out / "config.json").read_text())["train"]
    assert (cfg["method"], cfg["rule"]) == ("lfp", "zplus-zminus")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--rule", "nosuchrule"], ["unknown --rule 'nosuchrule'", "epsilon", "zplus-zminus"]),
        (["--method", "bptt-snntorch", "--rule", "zplus-zminus"], ["--rule does not apply", "bptt-snntorch"]),
        (["--method", "lfp-epsilon", "--rule", "zplus-zminus"], ["name two rules"]),
        (["--method", "lfp-nosuch"], ["unknown method 'lfp-nosuch'", "lfp-epsilon", "bptt-norse"]),
        (["--arch", "lenet", "--beta", "0.5"], ["--beta does not apply", "arch 'lenet' is an ANN"]),
        (["--arch", "mlp", "-T", "5"], ["-T/--steps does not apply", "arch 'mlp' is an ANN"]),
        (["--arch", "mlp", "--encoder", "rate"], ["--encoder does not apply", "arch 'mlp' is an ANN"]),
        (["--arch", "mlp", "--backend", "torch"], ["--backend does not apply"]),
        (["--arch", "lenet", "--hidden", "8"], ["--hidden does not apply", "fixed layers"]),
        (["--activation", "tanh"], ["--activation does not apply", "spiking"]),
        (["--method", "bptt-snntorch", "--reward", "softmax"], ["--reward does not apply", "LFP"]),
        (["--method", "bptt-snntorch", "--input-noise", "0.1"], ["--input-noise does not apply"]),
        (
            ["--method", "bptt-snntorch", "--feedback-precision", "bfloat16"],
            ["--feedback-precision does not"],
        ),
        (["--noise-schedule", "cosine"], ["--noise-schedule does not apply", "--input-noise, which is 0"]),
        (["--membrane-tau", "0.5"], ["--membrane-tau does not apply"]),
        (
            ["--homeostasis-target", "0.1"],
            ["--homeostasis-target does not apply", "--homeostasis, which is 0"],
        ),
        (["--momentum", "0.5"], ["--momentum does not apply", "adam"]),
        (["--clip-value", "2"], ["--clip-value does not apply", "'none'"]),
        (["--limit", "100"], ["--limit does not apply", "digits"]),
        (["--download"], ["--download does not apply"]),
        (["--hidden", "0"], ["hidden must be None or widths (integers >= 1), got (0,)"]),
        (["--threads", "-1"], ["--threads must be >= 1, got -1"]),
        (["--threads", "0"], ["--threads must be >= 1, got 0"]),
        (["--subset", "0"], ["subset size n=0"]),
        (["--beta", "1.5"], ["beta", "(0, 1]", "1.5"]),
        (["--lr", "nan"], ["lr must be a finite number, got nan"]),
        (["--batch-size", "0"], ["batch_size must be >= 1, got 0"]),
        (["--seed", "-3"], ["seed must lie in [0, 2^63), got -3"]),
        (["--weight-scale", "0"], ["weight_scale must be a finite number > 0, got 0.0"]),
        (["--data", "shd:/nowhere/shd_train.h5"], ["/nowhere/shd_train.h5"]),
    ],
)
def test_train_refuses_what_does_not_apply_or_is_out_of_range(args, needles, tmp_path, capsys):
    out = tmp_path / "out"
    refused(["train", *BASE, "--epochs", "1", "--out", str(out), *args], capsys, *needles)
    assert not out.exists()  # refused before anything was written


def test_python_configs_refuse_what_does_not_apply():
    for make, match in [
        (
            lambda: ModelConfig(arch="lenet", beta=0.5).validate(),
            r"beta=0.5 does not apply: .* 'lenet' is an ANN",
        ),
        (
            lambda: ModelConfig(arch="spiking-small", activation="tanh").validate(),
            r"activation='tanh' does not",
        ),
        (lambda: ModelConfig(hidden=(0,)).validate(), r"hidden must be None or widths"),
        (
            lambda: TrainConfig(method="gradient", reward="softmax").validate(),
            r"reward='softmax' does not apply",
        ),
        (lambda: TrainConfig(method="bptt-norse", rule="zplus-zminus").validate(), r"rule='zplus-zminus'"),
        (lambda: TrainConfig(rule="nosuch").validate(), r"unknown rule or composite 'nosuch'"),
        (lambda: TrainConfig(lr="fast").validate(), r"lr must be a finite number, got 'fast'"),
        (lambda: TrainConfig(method="bptt-snntorch", input_noise=0.1).validate(), r"input_noise: options of"),
        (lambda: check_run(ModelConfig(arch="mlp"), TrainConfig(steps=5)), r"steps=5 does not apply: .*ANN"),
        (lambda: check_run(ModelConfig(arch="mlp"), TrainConfig(encoder="rate")), r"encoder='rate' does not"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()


def test_trainer_refuses_data_that_does_not_fit_and_models_without_data():
    train, test = load_dataset("digits")
    with pytest.raises(ValueError, match=r"samples of shape \[1, 8, 8\], but the model config was made for"):
        Trainer(ModelConfig(input_shape=(1, 28, 28)), TrainConfig(epochs=1, progress=False)).fit(train, test)
    meta = build_model(ModelConfig(hidden=(8,)), seed=0).to("meta")
    with pytest.raises(ValueError, match="meta device"):
        Trainer(ModelConfig(hidden=(8,)), TrainConfig(progress=False), model=meta)
    with pytest.raises(ValueError, match="map_location='meta' holds no data"):
        load_checkpoint("anywhere", map_location="meta")


def test_a_float64_model_gets_float64_inputs():
    """The Trainer makes the inputs; a float64 model is fed float64, not the data's float32."""
    train, _ = load_dataset("digits")
    mc = ModelConfig(hidden=(8,))
    model = build_model(mc, seed=0).double()
    trainer = Trainer(mc, TrainConfig(epochs=1, steps=3, progress=False), model=model)
    assert trainer.encode(train.x[:4]).dtype == torch.float64
    trainer.fit(train.subset(40, seed=0))
    assert all(p.dtype == torch.float64 for p in trainer.model.parameters())


# ------------------------------------------------------------------------------------------------------
# logs
# ------------------------------------------------------------------------------------------------------


class _Terminal:
    """A stderr that says it is a terminal, and keeps what is written to it."""

    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s
        return len(s)

    def flush(self):
        pass


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    train, _ = load_dataset("digits")
    cfg = TrainConfig(epochs=1, steps=2, progress=True)
    Trainer(ModelConfig(hidden=(8,)), cfg).fit(train.subset(64, seed=0))
    assert "epoch 1/1" not in capsys.readouterr().err  # not a terminal: no bar
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    Trainer(ModelConfig(hidden=(8,)), cfg).fit(train.subset(64, seed=0))
    assert "epoch 1/1" in term.text  # a terminal: the bar


def test_epoch_lines_name_the_layers(tmp_path, capsys):
    trained_run(tmp_path)
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("epoch   1"))
    assert "2 LIF(12): rate " in line and "4 LIF(10): rate " in line and "rate[" not in line


# ------------------------------------------------------------------------------------------------------
# readers: checkpoints, config.json, NIR, HDF5, event recordings
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, needles",
    [
        (lambda d: (d / "model.pt").write_bytes(b""), ["model.pt", "the file is empty"]),
        (
            lambda d: (d / "model.pt").write_bytes((d / "model.pt").read_bytes()[:200]),
            ["cannot read weights"],
        ),
        (
            lambda d: (d / "config.json").write_text("[1, 2]"),
            ["config.json", "expected a JSON object", "list"],
        ),
        (lambda d: (d / "config.json").write_text('"x"'), ["config.json", "expected a JSON object", "str"]),
        (
            lambda d: (d / "config.json").write_text('{"format": 1, "model": [1]}'),
            ["'model' must be a JSON object"],
        ),
        (
            lambda d: (d / "config.json").write_text('{"format": 1, "model": {"hidden": "wide"}}'),
            ["config.json", "hidden must be None or widths", "'wide'"],
        ),
        (
            lambda d: (d / "config.json").write_text('{"format": 1, "model": {"beta": "high"}}'),
            ["config.json", "beta", "'high'"],
        ),
        (lambda d: (d / "config.json").write_text("{nope"), ["config.json is not valid JSON"]),
        (lambda d: (d / "config.json").unlink(), ["no checkpoint config at"]),
    ],
)
def test_export_reports_a_damaged_checkpoint(damage, needles, run_folder, tmp_path, capsys):
    ck = _copy(run_folder, tmp_path / "ck")
    damage(ck)
    before = snapshot(ck)
    for kind, out in (("nir", tmp_path / "m.nir"), ("fpga", tmp_path / "bundle")):
        refused(["export", kind, str(ck), "--out", str(out)], capsys, *needles)
        assert not out.exists()
    assert snapshot(ck) == before


def test_nan_weights_are_not_exported(run_folder, tmp_path, capsys):
    model, _ = load_checkpoint(run_folder)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    mc = ModelConfig(input_shape=(1, 8, 8), hidden=(12,))
    save_checkpoint(tmp_path / "ck", model, mc)
    for kind, out in (("nir", tmp_path / "m.nir"), ("fpga", tmp_path / "bundle")):
        refused(["export", kind, str(tmp_path / "ck"), "--out", str(out)], capsys, "'1.weight'", "NaN/inf")
        assert not out.exists()


def test_a_file_that_is_not_nir_is_named(tmp_path):
    (tmp_path / "model.nir").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"model\.nir is not a NIR file: NIR graphs are HDF5 files"):
        import_nir(tmp_path / "model.nir")
    import h5py

    with h5py.File(tmp_path / "other.nir", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match=r"other\.nir is an HDF5 file but not a NIR graph"):
        import_nir(tmp_path / "other.nir")
    with pytest.raises(FileNotFoundError, match="no NIR file at"):
        import_nir(tmp_path / "missing.nir")


def test_export_never_replaces_a_file_or_folder_it_did_not_write(run_folder, tmp_path, capsys):
    """Issue case 3: ``export fpga --out DIR`` deleted DIR and the user's files in it when DIR held a file
    named manifest.json."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"my": "own manifest"}')
    (mine / "thesis.tex").write_text("years of work")
    before = snapshot(mine)
    for extra in ([], ["--overwrite"]):
        refused(
            ["export", "fpga", str(run_folder), "--out", str(mine), *extra], capsys, str(mine), "refusing"
        )
    assert snapshot(mine) == before
    bundle = tmp_path / "bundle"
    assert main(["export", "fpga", str(run_folder), "--out", str(bundle)]) == 0
    capsys.readouterr()
    first = snapshot(bundle)
    refused(["export", "fpga", str(run_folder), "--out", str(bundle)], capsys, "--overwrite")
    assert snapshot(bundle) == first
    nir_file = tmp_path / "m.nir"
    nir_file.write_text("my notes")
    refused(["export", "nir", str(run_folder), "--out", str(nir_file)], capsys, "m.nir exists", "--overwrite")
    assert nir_file.read_text() == "my notes"
    refused(["export", "nir", str(run_folder), "--out", str(tmp_path)], capsys, "is a folder")


def test_event_files_that_are_empty_or_not_hdf5_are_named(tmp_path, capsys):
    """An empty recording was trained on as a silent sample; a .h5 that is not HDF5 gave h5py's traceback."""
    root = tmp_path / "nmnist"
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for digit in range(2):
            d = root / split / str(digit)
            d.mkdir(parents=True)
            for k in range(3):
                n = int(rng.integers(20, 60))
                ev = make_events(
                    rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 9000, n)), 1
                )
                write_nmnist_bin(d / f"{k}.bin", ev)
    empty = root / "Train" / "1" / "2.bin"
    empty.write_bytes(b"")
    argv = ["train", "--data", f"nmnist:{root}", "-T", "3", "--hidden", "8", "--epochs", "1", "--no-progress"]
    refused(argv, capsys, str(empty), "an empty recording", "silent sample")
    fake = tmp_path / "shd_train.h5"
    fake.write_text("not hdf5 at all")
    refused(
        ["train", "--data", f"shd:{fake}", "-T", "3", "--epochs", "1"], capsys, str(fake), "not an HDF5 file"
    )
    good = tmp_path / "ok_train.h5"
    write_shd(good, [make_events([1, 2], 0, [10, 20], 0), make_events([], 0, [], 0)] * 3, [0, 1] * 3)
    refused(
        ["train", "--data", f"shd:{good}", "-T", "3", "--epochs", "1"], capsys, str(good), "sample", "empty"
    )


def test_a_bad_dvs_gesture_file_is_named(tmp_path):
    from lfp_snn.events import read_dvsgesture_npy

    (tmp_path / "0.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"0\.npy: not a DVS Gesture \.npy array"):
        read_dvsgesture_npy(tmp_path / "0.npy")


# ------------------------------------------------------------------------------------------------------
# compare and sweep
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--rule", "zplus-zminus"], ["--rule does not apply to compare", "lfp-zplus-zminus"]),
        (["--seeds", "0", "0"], ["--seeds lists [0] twice"]),
        (["--prune", "150"], ["--prune takes percentages in [0, 100]"]),
        (
            ["--methods", "lfp-epsilon", "bptt-snntorch", "--reward", "softmax"],
            ["method bptt-snntorch", "--reward"],
        ),
        (["--arch", "mlp", "--encoder", "rate", "--methods", "lfp-epsilon"], ["--encoder does not apply"]),
        (["--threads", "0"], ["--threads must be >= 1"]),
    ],
)
def test_compare_refuses_what_does_not_apply(args, needles, tmp_path, capsys):
    pytest.importorskip("snntorch")
    out = tmp_path / "cmp"
    refused(["compare", *BASE, "--epochs", "1", "--out", str(out), *args], capsys, *needles)
    assert not out.exists()


def test_compare_into_a_comparison_is_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "results.md").write_text("last week's results")
    before = snapshot(out)
    refused(
        ["compare", *TINY, "--epochs", "1", "--methods", "lfp-epsilon", "--out", str(out)],
        capsys,
        "--overwrite",
    )
    assert snapshot(out) == before


@pytest.mark.slow
def test_compare_on_event_frames_works_as_train_does(tmp_path, monkeypatch, capsys):
    """Issue case 7: ``compare --data emulated-digits --arch spiking-lenet -T 10`` gave the frames a second
    time axis."""
    pytest.importorskip("snntorch")
    monkeypatch.setenv("LFP_SNN_DATA", str(tmp_path / "data"))
    argv = ["compare", "--data", "emulated-digits", "--arch", "spiking-lenet", "-T", "10", "--limit", "64,32"]
    argv += [
        "--epochs",
        "1",
        "--methods",
        "lfp-epsilon",
        "bptt-snntorch",
        "--prune",
        "0",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "result lfp-epsilon seed 0" in out and "result bptt-snntorch seed 0" in out
    assert "event frames" in (tmp_path / "c" / "results.md").read_text()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--rule", "zplus-zminus"], ["--rule does not apply to sweep"]),
        (["--arch", "mlp", "--betas", "0.5"], ["--betas does not apply", "--arch mlp is an ANN"]),
        (["--ray-address", "127.0.0.1:1"], ["--ray-address does not apply", "--executor ray"]),
        (["--report-only", "--workers", "2"], ["--workers does not apply", "--report-only"]),
        (["--threads-per-trial", "0"], ["--threads-per-trial must be >= 1"]),
        (["--limit", "10"], ["--limit does not apply"]),
    ],
)
def test_sweep_refuses_what_does_not_apply(args, needles, tmp_path, capsys):
    refused(
        [
            "sweep",
            *BASE,
            "--epochs",
            "1",
            "--methods",
            "lfp-epsilon",
            "--out",
            str(tmp_path / "s"),
            *args,
        ],
        capsys,
        *needles,
    )
    assert not (tmp_path / "s").exists()


def _python(args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # this checkout
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_a_real_command_line_shows_one_line_and_no_traceback(tmp_path):
    proc = _python(["-m", "lfp_snn.cli", "train", "--hidden", "0", "--out", str(tmp_path / "o")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.strip() == "error: hidden must be None or widths (integers >= 1), got (0,)"
    assert "Traceback" not in out + err and not (tmp_path / "o").exists()


def _group(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigkill_of_a_sweep_ends_its_workers(tmp_path):
    """Issue case 5: ``kill -9`` of ``lfp-snn sweep --workers 2`` left both workers running forever."""
    args = ["-m", "lfp_snn.cli", "sweep", "--subset", "600", "--test-subset", "100", "--hidden", "64"]
    args += ["--epochs", "2000", "--batch-size", "16", "--methods", "lfp-epsilon", "--betas", "0.5", "0.9"]
    args += ["--steps-list", "6", "--workers", "2", "--out", str(tmp_path / "s")]
    proc = _python(args, start_new_session=True, cwd=tmp_path)
    t0 = time.monotonic()
    while len(_group(proc.pid)) < 3 and time.monotonic() - t0 < 120:  # the sweep and its two workers
        time.sleep(0.2)
    assert len(_group(proc.pid)) >= 3, proc.stderr.read() if proc.poll() is not None else "no workers"
    time.sleep(2)  # the workers are inside their trials
    os.kill(proc.pid, signal.SIGKILL)  # the sweep only, as kill -9 PID does
    proc.wait(30)
    t0 = time.monotonic()
    while _group(proc.pid) and time.monotonic() - t0 < 15:
        time.sleep(0.2)
    left = _group(proc.pid)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == [], "worker processes outlived the sweep"


def _session(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (Ray puts its workers in their own process groups)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigkill_of_a_ray_sweep_ends_the_local_ray_instance(tmp_path):
    """The same for a sweep on a local Ray instance: Ray's workers and agents end with the killed driver."""
    pytest.importorskip("ray")
    args = ["-m", "lfp_snn.cli", "sweep", "--subset", "600", "--test-subset", "100", "--hidden", "64"]
    args += ["--epochs", "2000", "--batch-size", "16", "--methods", "lfp-epsilon", "--betas", "0.5", "0.9"]
    args += ["--steps-list", "6", "--workers", "2", "--executor", "ray", "--out", str(tmp_path / "s")]
    proc = _python(args, start_new_session=True, cwd=tmp_path)
    t0 = time.monotonic()
    trials = []
    while len(trials) < 2 and time.monotonic() - t0 < 180:  # Ray up and both trials running
        time.sleep(0.5)
        trials = [p for p in _session(proc.pid) if "run_trial_safe" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(trials) == 2, proc.stderr.read() if proc.poll() is not None else "no Ray workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    t0 = time.monotonic()
    while _session(proc.pid) and time.monotonic() - t0 < 30:
        time.sleep(0.5)
    left = _session(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "Ray processes outlived the sweep"


@pytest.mark.slow
def test_a_ray_sweep_says_once_that_it_starts_ray(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from lfp_snn.experiments import sweeps

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")

    def configs(name, method, rule, beta, steps, seed, lr):
        return ModelConfig(hidden=(8,), beta=beta), TrainConfig(
            method=method, rule=rule, steps=steps, seed=seed, lr=lr, epochs=1, progress=False
        )

    data = {"spec": "digits", "subset": 40, "test_subset": 20, "subset_seed": 0}
    trials = sweeps.make_grid(["lfp-epsilon"], [0.9], [2, 3], [0], [3e-3], configs, data)
    lines: list[str] = []
    out = sweeps.run_sweep(trials, tmp_path / "r.h5", executor="ray", workers=2, log=lines.append)
    assert len(out.ran) == 2
    ray_lines = [s for s in lines if s.startswith("ray:")]
    assert ray_lines == ["ray: starting a local Ray instance (2 CPUs, no dashboard) for the sweep"]


def test_api_options_that_do_not_apply_are_refused(tmp_path):
    """The loaders and export_fpga used to ignore these quietly."""
    with pytest.raises(ValueError, match="download does not apply to dataset spec 'digits'"):
        load_dataset("digits", download=True)
    with pytest.raises(ValueError, match="root does not apply to dataset spec 'digits'"):
        load_dataset("digits", root=tmp_path)
    from lfp_snn.events.training_data import load_event_dataset

    with pytest.raises(ValueError, match="cache_dir does not apply to 'nmnist:"):
        load_event_dataset(f"nmnist:{tmp_path}", steps=3, cache_dir=tmp_path)
    mc = ModelConfig(input_shape=(1, 8, 8), hidden=(12,), reset="zero", reset_delay=False)
    spikes = (torch.rand(5, 2, 1, 8, 8) < 0.3).float()
    with pytest.raises(ValueError, match="samples: options of the random golden inputs; inputs are given"):
        export_fpga(build_model(mc, seed=0), tmp_path / "b", inputs=spikes, samples=8)
    assert not (tmp_path / "b").exists()
