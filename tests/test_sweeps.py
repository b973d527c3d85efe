"""lfp_snn.experiments.sweeps: grids and keys, the HDF5 results file (atomic records, resume, damaged files), executors
(in process, spawn pool, Ray), crash and Ctrl-C recovery, and the report (tables, heatmap)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from lfp_snn.cli import main as cli_main
from lfp_snn.cli import sweep as sweep_cli
from lfp_snn.experiments import sweeps
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

DATA = {"spec": "digits", "subset": 80, "test_subset": 40, "subset_seed": 0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _make_configs(name, method, rule, beta, steps, seed, lr, arch="spiking-small", epochs=1):
    mc = ModelConfig(arch=arch, input_shape=(1, 8, 8), hidden=(16,), beta=beta)
    tc = TrainConfig(
        method=method, rule=rule, steps=steps, seed=seed, lr=lr, epochs=epochs, batch_size=16, progress=False
    )
    return mc, tc


def _grid(
    methods=("lfp-epsilon", "lfp-zplus-zminus"), betas=(0.5, 0.9), steps=(2, 4), seeds=(0,), lrs=(3e-3,)
):
    return sweeps.make_grid(methods, betas, steps, seeds, lrs, _make_configs, DATA)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2 methods × 2 β × 2 T sweep."""
    path = tmp_path_factory.mktemp("sweep") / "sweep.h5"
    trials = _grid()
    outcome = sweeps.run_sweep(trials, path, log=None)
    return path, trials, outcome


# ---------------------------------------------------------------------------------------------------------
# keys and grids
# ---------------------------------------------------------------------------------------------------------


def test_key_is_sha256_of_canonical_json():
    cfg = {"b": [1, 2.5], "a": {"y": None, "x": "β"}}
    same = json.loads(json.dumps({"a": {"x": "β", "y": None}, "b": [1, 2.5]}))
    assert sweeps.canonical_json(cfg) == '{"a":{"x":"\\u03b2","y":null},"b":[1,2.5]}'
    assert sweeps.trial_key(cfg) == sweeps.trial_key(same)
    import hashlib

    assert sweeps.trial_key(cfg) == hashlib.sha256(sweeps.canonical_json(cfg).encode()).hexdigest()
    assert sweeps.trial_key({**cfg, "b": [1, 2.50001]}) != sweeps.trial_key(cfg)


def test_grid_is_the_product_and_keys_are_distinct():
    trials = _grid(seeds=(0, 1), lrs=(1e-3, 3e-3))
    assert len(trials) == 2 * 2 * 2 * 2 * 2
    assert len({t.key for t in trials}) == len(trials)
    t = trials[0]
    assert (t.method, t.beta, t.steps, t.seed, t.lr) == ("lfp-epsilon", 0.5, 2, 0, 1e-3)
    assert t.config["model"]["beta"] == 0.5 and t.config["train"]["steps"] == 2
    assert t.config["data"] == DATA
    assert "progress" not in t.config["train"] and t.config["train"]["rule"] == "epsilon"
    assert _grid()[0].key == _grid()[0].key  # rebuilt from the same arguments: the same key
    assert len(_grid(betas=(0.5, 0.5, 0.9))) == len(_grid())  # duplicates dropped


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"betas": (0.0,)}, "β must lie in"),
        ({"betas": (1.5,)}, "β must lie in"),
        ({"steps": (0,)}, "time steps"),
        ({"lrs": (-1.0,)}, "learning rates"),
        ({"methods": ("lfp-nonsense",)}, "unknown method"),
        ({"seeds": ()}, "no seeds"),
    ],
)
def test_bad_grids_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _grid(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# running and recording
# ---------------------------------------------------------------------------------------------------------


def test_every_trial_is_one_group_with_metrics_and_config(finished):
    path, trials, outcome = finished
    assert sorted(outcome.ran) == sorted(t.key for t in trials) and not outcome.failed
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == sweeps.FORMAT and f.attrs["version"] == sweeps.VERSION
        assert sorted(f["trials"]) == sorted(t.key for t in trials)
        t = trials[0]
        g = f["trials"][t.key]
        assert json.loads(g.attrs["config"]) == t.config
        assert g.attrs["method"] == t.method and g.attrs["beta"] == t.beta and g.attrs["steps"] == t.steps
        assert g.attrs["seed"] == 0 and g.attrs["lr"] == pytest.approx(3e-3)
        m = g["metrics"]
        for name in ("epoch", "test_accuracy", "train_accuracy", "objective", "time_s", "sign_changed"):
            assert m[name].shape == (1,), name
        assert {"2", "4"} <= set(m["spike_rate"]) and {"2", "4"} <= set(m["silent"])
        assert g.attrs["final_test_accuracy"] == m["test_accuracy"][-1]
    assert not Path(str(path) + ".parts").exists()  # all merged, parts folder removed


def test_read_back_equals_the_run_and_a_trial_reproduces_from_its_config(finished):
    path, trials, outcome = finished
    records = sweeps.read_results(path)
    assert set(records) == {t.key for t in trials}
    t = trials[-1]
    rec = records[t.key]
    assert rec["config"] == t.config and rec["key"] == t.key
    again = sweeps.run_trial(t.config, threads=1)  # nothing but the config
    assert again["key"] == t.key
    for h_old, h_new in zip(rec["history"], again["history"], strict=True):
        for k, v in h_new.items():
            if k != "time_s":
                assert h_old[k] == pytest.approx(v, abs=1e-12), k


def test_rerun_skips_finished_trials_and_runs_only_new_ones(finished, tmp_path):
    path, trials, _ = finished
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    again = sweeps.run_sweep(trials, copy, log=None)
    assert again.ran == [] and sorted(again.skipped) == sorted(t.key for t in trials)
    assert copy.read_bytes() == path.read_bytes()  # nothing rewritten
    bigger = _grid(betas=(0.5, 0.7, 0.9))
    lines = []
    more = sweeps.run_sweep(bigger, copy, log=lines.append)
    assert len(more.ran) == 4 and len(more.skipped) == 8
    assert "12 trials, 8 already in" in lines[0]
    assert len(sweeps.read_results(copy)) == 12


def test_records_from_before_a_new_config_field_still_count_as_done(finished, tmp_path):
    """A file written before TrainConfig/ModelConfig gained a field (its default keeping the old behaviour)
    holds configs without that field: the trials are still found, not run again."""
    path, trials, _ = finished
    t = trials[0]
    old = json.loads(json.dumps(t.config))
    assert old["train"]["momentum"] == TrainConfig().momentum
    del old["train"]["momentum"], old["model"]["weight_scale"]  # as if these fields were added later
    record = {**sweeps.read_results(path)[t.key], "config": old, "key": sweeps.trial_key(old)}
    assert record["key"] != t.key and sweeps.trial_key(sweeps.normalize_config(old)) == t.key
    target = tmp_path / "old.h5"
    with sweeps.ResultsStore(target) as store:
        store.add(record)
    out = sweeps.run_sweep(trials[:2], target, log=None)
    assert out.skipped == [t.key] and out.ran == [trials[1].key]
    assert out.records[t.key]["config"] == old  # the stored record, as it was written
    changed = json.loads(json.dumps(old))
    changed["train"]["no_such_field"] = 1  # a field today's code does not know: not the same trial
    assert sweeps.trial_key(sweeps.normalize_config(changed)) != t.key


def test_a_failed_trial_is_reported_and_not_recorded(tmp_path):
    # "gradient" trains ANNs only: on a spiking model the Trainer refuses it
    trials = sweeps.make_grid(["lfp-epsilon", "gradient"], [0.9], [2], [0], [1e-3], _make_configs, DATA)
    out = sweeps.run_sweep(trials, tmp_path / "r.h5", log=None)
    assert len(out.ran) == 1 and len(out.failed) == 1
    (err,) = out.failed.values()
    assert "ValueError" in err and "trains ANNs" in err
    assert set(sweeps.read_results(tmp_path / "r.h5")) == set(out.ran)


@pytest.mark.slow
def test_spawn_pool_runs_trials_in_workers(tmp_path):
    trials = _grid(methods=("lfp-epsilon",), steps=(2,))
    out = sweeps.run_sweep(trials, tmp_path / "p.h5", workers=2, threads_per_trial=1, log=None)
    assert sorted(out.ran) == sorted(t.key for t in trials)
    recs = sweeps.read_results(tmp_path / "p.h5")
    assert {r["info"]["threads"] for r in recs.values()} == {1}
    inline = sweeps.run_trial(trials[0].config)
    assert recs[trials[0].key]["info"]["final_test_accuracy"] == inline["info"]["final_test_accuracy"]


# ---------------------------------------------------------------------------------------------------------
# damaged files, leftovers, locking
# ---------------------------------------------------------------------------------------------------------


def _untouched(path: Path, trials, match: str):
    before = path.read_bytes()
    with pytest.raises(sweeps.SweepFileError, match=match) as e:
        sweeps.run_sweep(trials, path, log=None)
    assert str(path) in str(e.value)
    assert path.read_bytes() == before
    return str(e.value)


def test_truncated_file_is_reported_and_left_alone(finished, tmp_path):
    path, trials, _ = finished
    bad = tmp_path / "bad.h5"
    bad.write_bytes(path.read_bytes()[:3000])
    msg = _untouched(bad, trials, "cannot be read as HDF5")
    assert "--results" in msg


def test_empty_and_foreign_files_are_reported(finished, tmp_path):
    _, trials, _ = finished
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    _untouched(empty, trials, "empty")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5\n")
    _untouched(text, trials, "cannot be read as HDF5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    _untouched(other, trials, "not an lfp-snn sweep results file")


def test_malformed_trial_group_is_named(finished, tmp_path):
    path, trials, _ = finished
    bad = tmp_path / "edited.h5"
    bad.write_bytes(path.read_bytes())
    key = trials[1].key
    with h5py.File(bad, "a") as f:
        cfg = json.loads(f["trials"][key].attrs["config"])
        cfg["train"]["lr"] = 1.0
        f["trials"][key].attrs["config"] = json.dumps(cfg)
    msg = _untouched(bad, trials, "does not match the sha256")
    assert f"/trials/{key}" in msg
    with h5py.File(bad, "a") as f:
        f["trials"][key].attrs["config"] = sweeps.canonical_json(trials[1].config)
        del f["trials"][key]["metrics"]["test_accuracy"]
    _untouched(bad, trials, "without 'test_accuracy'")


def test_unmerged_parts_are_merged_and_temporary_files_dropped(finished, tmp_path):
    """A run killed after a trial's part was written but before the merge loses nothing; temporary files from
    a kill mid-write are ignored and removed."""
    path, trials, _ = finished
    records = sweeps.read_results(path)
    target = tmp_path / "r.h5"
    with sweeps.ResultsStore(target) as store:
        store.write_part(records[trials[0].key])  # "killed" before the merge
    parts = Path(str(target) + ".parts")
    assert (parts / f"{trials[0].key}.h5").exists() and not target.exists()
    (parts / f"{trials[1].key}.h5.tmp-123-456").write_bytes(b"half a file")
    (tmp_path / ".r.h5.tmp-123-789").write_bytes(b"half a copy")
    out = sweeps.run_sweep(trials[:2], target, log=None)
    assert out.skipped == [trials[0].key] and out.ran == [trials[1].key]
    assert not parts.exists() and not (tmp_path / ".r.h5.tmp-123-789").exists()
    assert set(sweeps.read_results(target)) == {trials[0].key, trials[1].key}


def test_a_damaged_part_is_reported(finished, tmp_path):
    _, trials, _ = finished
    target = tmp_path / "r.h5"
    parts = Path(str(target) + ".parts")
    parts.mkdir()
    (parts / f"{trials[0].key}.h5").write_bytes(b"garbage")
    with pytest.raises(sweeps.SweepFileError, match="part file .* is damaged") as e:
        sweeps.run_sweep(trials, target, log=None)
    assert f"Delete {parts / trials[0].key}.h5" in str(e.value)


def test_two_sweeps_cannot_write_one_file(tmp_path):
    with sweeps.ResultsStore(tmp_path / "r.h5"):
        with pytest.raises(sweeps.SweepFileError, match="another sweep is writing"):
            with sweeps.ResultsStore(tmp_path / "r.h5"):
                pass


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------


def test_report_tables_and_heatmap(finished, tmp_path):
    path, trials, _ = finished
    records = list(sweeps.read_results(path).values())
    records = [r for r in records if not (r["config"]["method"] == "lfp-epsilon" and r["config"]["train"]["steps"] == 4 and r["config"]["model"]["beta"] == 0.9)]  # fmt: skip
    paths = sweeps.write_report(records, tmp_path, meta={"note": "test"}, title="test sweep")
    assert [p.name for p in paths] == ["results.csv", "results.md", "heatmap.png"]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 7 and {r["method"] for r in rows} == {"lfp-epsilon", "lfp-zplus-zminus"}
    assert {"final_test_accuracy", "spike_rate/2", "key"} <= set(rows[0])
    md = (tmp_path / "results.md").read_text()
    assert "## lfp-epsilon" in md and "## lfp-zplus-zminus" in md and "| β \\ T | 2 | 4 |" in md
    assert "| 0.9 | " in md and "–" in md.split("## lfp-zplus-zminus")[0]  # the missing cell
    assert "- note: test" in md
    png = (tmp_path / "heatmap.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_with_seeds_and_lrs_shows_mean_and_std(tmp_path):
    rec = []
    for seed, acc in ((0, 0.5), (1, 0.7)):
        for lr in (1e-3, 3e-3):
            cfg = _grid(methods=("lfp-epsilon",), betas=(0.9,), steps=(4,), seeds=(seed,), lrs=(lr,))[
                0
            ].config
            hist = [{"epoch": 1, "test_accuracy": acc, "train_accuracy": acc, "time_s": 1.0}]
            rec.append(
                {
                    "key": sweeps.trial_key(cfg),
                    "config": cfg,
                    "history": hist,
                    "info": {"final_test_accuracy": acc},
                }
            )
    sweeps.write_report(rec, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "## lfp-epsilon, lr 0.001" in md and "## lfp-epsilon, lr 0.003" in md
    assert "| 0.9 | 60.0 ± 14.1 |" in md and "seeds [0, 1]" in md


# ---------------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------------

CLI = [
    "--data",
    "digits",
    "--subset",
    "80",
    "--test-subset",
    "40",
    "--hidden",
    "16",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--methods",
    "lfp-epsilon",
    "--betas",
    "0.5",
    "0.9",
    "--steps-list",
    "2",
    "3",
]


def test_cli_runs_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["sweep", *CLI, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 trials, 0 already in" in text and text.count("done ") == 4
    assert {p.name for p in out.iterdir()} == {"sweep.h5", "results.md", "results.csv", "heatmap.png"}
    assert cli_main(["sweep", *CLI, "--out", str(out), "--betas", "0.5", "0.7", "0.9"]) == 0
    assert "6 trials, 4 already in" in capsys.readouterr().out
    assert cli_main(["sweep", *CLI, "--out", str(out), "--report-only", "--seeds", "0", "1"]) == 0
    assert "(4 of 8 trials)" in capsys.readouterr().out  # the grid asked for: β 0.5 0.9 × T 2 3 × seeds 0 1
    md = (out / "results.md").read_text()
    assert "4 of 8 in the results file" in md


def test_cli_refuses_a_damaged_results_file(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert cli_main(["sweep", *CLI, "--results", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "left untouched" in err and "--results NEW.h5" in err
    assert bad.read_bytes() == b"\x89HDF\r\n\x1a\n" + b"\0" * 100


def test_add_commands_registers_sweep():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    sweep_cli.add_command(sub, "help")
    a = p.parse_args(["sweep", "--betas", "0.3", "0.6", "-T", "5", "15", "--backend", "ray", "--lrs", "1e-3"])
    assert (
        a.betas == [0.3, 0.6]
        and a.steps_list == [5, 15]
        and a.lrs == [1e-3]
        and a.func is sweep_cli.cmd_sweep
    )
    assert a.backend == "ray" and a.threads_per_trial == 1 and a.workers == 1
    a = p.parse_args(["sweep", "--executor", "ray", "--backend", "triton", "--threads", "2"])
    assert (a.executor, a.backend, a.threads_per_trial) == ("ray", "triton", 2)


# ---------------------------------------------------------------------------------------------------------
# crashes and interrupts (subprocesses)
# ---------------------------------------------------------------------------------------------------------

SLOW_CLI = [
    "--data",
    "digits",
    "--subset",
    "600",
    "--test-subset",
    "100",
    "--hidden",
    "64",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--methods",
    "lfp-epsilon",
    "--betas",
    "0.5",
    "0.7",
    "0.9",
    "--steps-list",
    "6",
    "8",
]


def _count(path: Path) -> int:
    try:
        return len(sweeps.read_results(path))
    except (FileNotFoundError, sweeps.SweepFileError):
        return 0


def _live_in_group(pgid: int, wait: float = 10.0) -> list[int]:
    """Processes of group ``pgid`` still alive (zombies waiting to be reaped do not count), after waiting up
    to ``wait`` seconds for them to end."""
    t0 = time.monotonic()
    while True:
        live = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                live.append(int(stat.parent.name))
        if not live or time.monotonic() - t0 > wait:
            return live
        time.sleep(0.2)


def _start(args, tmp_path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout's lfp_snn
    return subprocess.Popen(
        [sys.executable, "-m", "lfp_snn.cli", "sweep", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=tmp_path,
        # a job started with & by a non-interactive shell (as CI may run us) inherits SIGINT ignored, and
        # Python then never raises KeyboardInterrupt: give the sweep the default, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(path: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        k = _count(path)
        if k >= n or proc.poll() is not None:
            return k
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the sweep made no progress")


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume(tmp_path):
    """SIGKILL at a random point after the first trial: the file stays readable with every recorded trial,
    and a rerun finishes the rest without redoing them."""
    results = tmp_path / "s.h5"
    # trials long enough that the kill lands mid-sweep on a fast machine too
    args = [*SLOW_CLI, "--epochs", "6", "--results", str(results), "--out", str(tmp_path / "out")]
    proc = _start(args, tmp_path)
    _wait_for(results, 1, proc)
    time.sleep(0.3)  # somewhere inside the next trial, or its write
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done = sweeps.read_results(results)  # readable: never half-written
    assert 1 <= len(done) < 6, "killed too late to test anything"
    again = _start(args, tmp_path)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    # a trial may have finished (its part file written) after the read above but before the kill: it is
    # merged on resume, so at least the trials seen above are already in, and not all 6
    m = re.search(r"6 trials, (\d+) already in", out)
    assert m and len(done) <= int(m.group(1)) < 6, out
    final = sweeps.read_results(results)
    assert len(final) == 6
    for k, r in done.items():  # the finished ones were kept as they were
        assert final[k]["info"]["finished_at"] == r["info"]["finished_at"]


@pytest.mark.slow
def test_ctrl_c_with_a_process_pool_keeps_finished_trials_and_ends_workers(tmp_path):
    results = tmp_path / "s.h5"
    # longer trials than SLOW_CLI's, so that on a fast machine the signal still finds the sweep running
    args = [
        *SLOW_CLI,
        "--epochs",
        "20",
        "--results",
        str(results),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "2",
    ]
    proc = _start(args, tmp_path)
    _wait_for(results, 1, proc)
    assert proc.poll() is None, "the sweep ended before the interrupt could be tested"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "interrupted:" in out and "run the same command again to resume" in out
    assert "Traceback" not in out
    done = sweeps.read_results(results)
    assert 1 <= len(done) <= 6
    assert _live_in_group(proc.pid) == [], "worker processes left running"
    again = _start(args, tmp_path)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    # a trial that finished as the signal arrived has its part file written; resume merges it, so at least
    # the trials read above are in
    m = re.search(r"6 trials, (\d+) already in", out)
    assert m and len(done) <= int(m.group(1)) <= 6, out
    assert len(sweeps.read_results(results)) == 6


# ---------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_sweep_on_a_local_instance(tmp_path, monkeypatch):
    ray = pytest.importorskip(
        "ray", reason="Ray is an optional extra: pip install -c scripts/constraints.txt 'ray[default]'"
    )
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    trials = _grid(methods=("lfp-epsilon",), betas=(0.9,), steps=(2, 3))
    assert len(trials) == 2
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        out = sweeps.run_sweep(trials, tmp_path / "ray.h5", executor="ray", workers=2, log=None)
    finally:
        ray.shutdown()
    assert sorted(out.ran) == sorted(t.key for t in trials) and not out.failed
    recs = sweeps.read_results(tmp_path / "ray.h5")
    assert set(recs) == {t.key for t in trials}
    local = sweeps.run_trial(trials[0].config)
    assert recs[trials[0].key]["info"]["final_test_accuracy"] == local["info"]["final_test_accuracy"]
    assert recs[trials[0].key]["info"]["host"]


def test_ray_missing_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match="--executor ray needs Ray"):
        sweeps.run_sweep(_grid()[:1], tmp_path / "r.h5", executor="ray", log=None)


def test_cli_scores_on_a_validation_split(tmp_path, capsys):
    """--val-fraction: every trial trains on the fit part of the training set and is scored on the held-out
    part; the report says so, and the trials are others than the test-scored ones (their keys differ)."""
    from lfp_snn.data import load_data
    from lfp_snn.experiments.sweeps import load_trial_data

    out = tmp_path / "val"
    base = [a for i, a in enumerate(CLI) if "--test-subset" not in CLI[max(i - 1, 0) : i + 1]]
    argv = ["sweep", *base, "--out", str(out), "--betas", "0.9", "--steps-list", "2", "--val-fraction", "0.25"]
    assert cli_main(argv) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1 and rows[0]["scored_on"] == "validation"
    md = (out / "results.md").read_text()
    assert "final validation accuracy" in md or "validation split" in md
    data = {"spec": "digits", "subset": 80, "test_subset": None, "subset_seed": 0, "validation": 0.25}
    fit, val = load_trial_data(data, 2)
    train = load_data("digits", 2)[0].subset(80, seed=0)
    assert (len(fit), len(val)) == (60, 20) and val.name.endswith("validation")
    assert torch.equal(torch.sort(torch.cat([fit.y, val.y])).values, torch.sort(train.y).values)
    assert cli_main([*argv[:-2], "--val-fraction", "1.5"]) == 2
    assert "--val-fraction must lie in (0, 1)" in capsys.readouterr().err
    assert cli_main([*argv, "--test-subset", "10"]) == 2
    assert "--test-subset does not apply" in capsys.readouterr().err
