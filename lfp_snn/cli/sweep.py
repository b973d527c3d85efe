"""``lfp-snn sweep``: a grid over β × T × method × seed × lr, every trial recorded in one HDF5 file, and the
report (:mod:`lfp_snn.experiments.sweeps`)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import torch

from ..experiments.sweeps import (
    EXECUTORS,
    Trial,
    load_trial_data,
    make_grid,
    normalize_config,
    read_results,
    run_sweep,
    trial_key,
    write_report,
)
from ..kernels import CHOICES as BACKENDS
from ..models import is_spiking_arch
from .options import (
    add_train_arguments,
    build_configs,
    check_data_options,
    default,
    refuse_unused_options,
    resolve_device,
    value,
)

DEFAULT_METHODS = ("lfp-epsilon", "lfp-zplus-zminus", "bptt-snntorch")
DEFAULT_BETAS = (0.3, 0.6, 0.9)
DEFAULT_STEPS = (5, 15, 25)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` arguments, with the grid axes and the executor options on top."""
    add_train_arguments(p)
    g = p.add_argument_group("grid (each trial: one value of every list)")
    g.add_argument(
        "--methods",
        "--method",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help=f"methods (default: {' '.join(DEFAULT_METHODS)}); lfp-<composite> or a registered method",
    )
    g.add_argument(
        "--betas",
        "--beta",
        type=float,
        nargs="+",
        default=None,
        help=f"membrane decays β (default: {' '.join(map(str, DEFAULT_BETAS))}; spiking models only)",
    )
    g.add_argument(
        "--steps-list",
        "-T",
        "--steps",
        dest="steps_list",
        type=int,
        nargs="+",
        default=None,
        help=f"time steps T (default: {' '.join(map(str, DEFAULT_STEPS))}; spiking models only)",
    )
    g.add_argument(
        "--seeds",
        "--seed",
        type=int,
        nargs="+",
        default=[default("seed")],
        help=f"seeds (default: {default('seed')})",
    )
    g.add_argument(
        "--lrs",
        "--lr",
        type=float,
        nargs="+",
        default=[default("lr")],
        help=f"learning rates (default: {default('lr')}, the train default)",
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="score every trial on a stratified validation split of this share of the training set (trained "
        "on the rest) instead of the test set: for choosing settings; the test set is then not used",
    )
    g.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the --subset/--test-subset draw (default 0, all trials)",
    )
    g = p.add_argument_group("results and execution")
    g.add_argument("--out", default="sweep-out", help="folder for heatmap.png, results.md, results.csv")
    g.add_argument(
        "--results", default=None, help="HDF5 results file (default: OUT/sweep.h5); a rerun skips its trials"
    )
    g.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local (default: this process, or a process pool with --workers > 1) or ray",
    )
    g.add_argument(
        "--backend",
        default=None,
        choices=(*BACKENDS, *EXECUTORS),
        help=f"LIF kernels ({', '.join(BACKENDS)}) as in train (default: {default('backend')}); 'ray' or "
        "'local' here means --executor",
    )
    g.add_argument("--workers", type=int, default=1, help="trials at once (default 1: in this process)")
    g.add_argument(
        "--threads-per-trial",
        "--threads",
        dest="threads_per_trial",
        type=int,
        default=1,
        help="torch CPU threads per trial (default 1)",
    )
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    g.add_argument(
        "--report-only", action="store_true", help="write the report from the results file; train nothing"
    )


def add_command(subparsers, help_text: str) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep",
        help=help_text,
        description="Train one model per point of the grid --methods × --betas × --steps-list × --seeds × --lrs "
        "(the other train arguments are shared), record every finished trial in one HDF5 file keyed by the "
        "sha256 of its config (a rerun skips finished trials), and write heatmap.png, results.md and "
        "results.csv to --out.",
        conflict_handler="resolve",
    )
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)


def grid_axes(a: argparse.Namespace) -> tuple[list[float], list[int], bool]:
    """``(betas, steps, spiking)``: the β and T axes of the grid. A spiking model takes ``--betas`` and
    ``--steps-list`` (or their defaults); an ANN has neither, so the axes are the configs' one default value
    and giving them is an error."""
    arch = value(a, "arch")
    if is_spiking_arch(arch):
        return list(a.betas or DEFAULT_BETAS), list(a.steps_list or DEFAULT_STEPS), True
    for option, given in (("--betas", a.betas), ("--steps-list", a.steps_list)):
        if given is not None:
            raise ValueError(
                f"{option} does not apply: it is an axis of spiking models; --arch {arch} is an ANN"
            )
    return [default("beta")], [default("steps")], False


def grid_from_args(a: argparse.Namespace) -> tuple[list[Trial], dict]:
    """The trials of the command line's grid, and a description of the shared settings."""
    if a.rule is not None:
        raise ValueError(
            "--rule does not apply to sweep: name each method with its rule, as in lfp-zplus-zminus"
        )
    check_data_options(a)
    a.betas, a.steps_list, spiking = grid_axes(a)
    data = {"spec": a.data, "subset": a.subset, "test_subset": a.test_subset, "subset_seed": a.data_seed}
    if a.limit is not None:  # only when given, so that the keys of sweeps without it stay as they were
        data["limit"] = a.limit
    if a.val_fraction is not None:
        if a.test_subset is not None:
            raise ValueError("--test-subset does not apply: with --val-fraction the test set is not used")
        if not 0 < a.val_fraction < 1:
            raise ValueError(f"--val-fraction must lie in (0, 1), got {a.val_fraction}")
        data["validation"] = a.val_fraction
    train, test = load_trial_data(data, a.steps_list[0], a.download)
    temporal = getattr(train, "temporal", False)
    checked: set[str] = set()

    def make_configs(name, method, rule, beta, steps, seed, lr):
        axes = {"beta": beta, "steps": steps} if spiking else {}
        mc, tc = build_configs(a, train, method=method, rule=rule, seed=seed, lr=lr, progress=False, **axes)
        if name not in checked:
            try:
                refuse_unused_options(a, mc, tc, temporal)
            except ValueError as e:
                raise ValueError(f"method {name}: {e}") from None
            checked.add(name)
        return mc, tc

    trials = make_grid(a.methods, a.betas, a.steps_list, a.seeds, a.lrs, make_configs, data)
    arch = value(a, "arch")
    split = "validation" if a.val_fraction is not None else "test"
    meta = {
        "data": f"{a.data} ({len(train)} train / {len(test)} {split}, subset seed {a.data_seed})"
        + (
            f"; scored on a stratified validation split ({a.val_fraction:g} of the training set), not on "
            "the test set"
            if split == "validation"
            else ""
        ),
        "model": arch
        + (f" hidden {' '.join(map(str, a.hidden))}" if a.hidden else "")
        + (
            f", θ={value(a, 'threshold')}, reset={value(a, 'reset')}, encoder={value(a, 'encoder')}"
            if spiking
            else ""
        ),
        "training": f"{value(a, 'epochs')} epochs, batch {value(a, 'batch_size')}, {value(a, 'optimizer')}, "
        f"lr {' '.join(f'{x:g}' for x in a.lrs)}",
        "grid": f"methods {' '.join(a.methods)}; β {' '.join(f'{b:g}' for b in a.betas)}; "
        f"T {' '.join(map(str, a.steps_list))}; seeds {' '.join(map(str, a.seeds))}",
    }
    return trials, meta


def cmd_sweep(a: argparse.Namespace) -> int:
    if a.backend in EXECUTORS:
        a.executor, a.backend = a.backend, None
    if a.threads_per_trial < 1:
        raise ValueError(f"--threads-per-trial must be >= 1, got {a.threads_per_trial}")
    if a.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {a.workers}")
    if a.ray_address is not None and a.executor != "ray":
        raise ValueError(
            f"--ray-address does not apply: it is the cluster of --executor ray, not {a.executor}"
        )
    if a.report_only:
        for option, off in (("--workers", a.workers == 1), ("--executor", a.executor == "local")):
            if not off:
                raise ValueError(f"{option} does not apply: --report-only trains nothing")
    if a.executor == "local" or not a.device.startswith("cuda"):
        device = str(resolve_device(a.device))
    else:
        device = a.device  # the Ray cluster's GPUs, not this machine's
    torch.set_num_threads(a.threads_per_trial)
    results = Path(a.results) if a.results else Path(a.out) / "sweep.h5"
    if results.exists():
        read_results(results)  # a damaged file is reported before any data is loaded
    try:
        trials, meta = grid_from_args(a)
    except ImportError as e:
        raise SystemExit(f"error: {e}") from None
    if not a.report_only:
        meta["executor"] = f"{a.executor}, {a.workers} worker(s) × {a.threads_per_trial} thread(s), {device}"
    meta["results"] = str(results)
    outcome = None
    if a.report_only:
        if not results.exists():
            raise FileNotFoundError(f"{results}: no results file to report on")
        stored = read_results(results)
        current = {trial_key(normalize_config(r["config"])): r for r in stored.values()}
        records = {t.key: current[t.key] for t in trials if t.key in current}
    else:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            outcome = run_sweep(
                trials,
                results,
                executor=a.executor,
                workers=a.workers,
                threads_per_trial=a.threads_per_trial,
                device=device,
                ray_address=a.ray_address,
                retain_memory=a.allocator == "retain",
                log=lambda s: print(s, flush=True),
            )
        except ImportError as e:
            raise SystemExit(f"error: {e}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        records = outcome.records
    meta["trials"] = f"{len(records)} of {len(trials)} in the results file"
    split = "validation" if a.val_fraction is not None else "test"
    title = f"{a.data}, {value(a, 'arch')}, {value(a, 'epochs')} epochs — final {split} accuracy"
    paths = write_report(records.values(), a.out, a.betas, a.steps_list, meta, title)
    print(f"wrote {', '.join(str(p) for p in paths)} ({len(records)} of {len(trials)} trials)")
    if outcome is not None and outcome.interrupted:
        return 130
    if outcome is not None and outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed; rerun to retry them:", file=sys.stderr)
        for key, err in outcome.failed.items():
            print(f"  {key[:12]}: {err}", file=sys.stderr)
        return 1
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
