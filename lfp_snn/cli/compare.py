"""``lfp-snn compare``: train several methods on the same data, model and seeds; write a table and plots
(:mod:`lfp_snn.experiments.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..experiments.compare import compare
from ..experiments.compare.report import REPORT_FILES
from ..experiments.compare.run import check_out_dir
from ..experiments.compare.tuning import TuneSpec
from ..experiments.metrics import PRUNE_FRACTIONS
from ..models import is_spiking_arch
from ..training import check_methods
from .options import (
    add_train_arguments,
    build_configs,
    check_backend_runs,
    default,
    load_run_data,
    refuse_unused_options,
    resolve_device,
    set_threads,
    value,
)

DEFAULT_METHODS = ("lfp-epsilon", "lfp-zplus-zminus", "bptt-snntorch", "bptt-norse")


def add_command(subparsers, help_text: str) -> None:
    """Add the ``compare`` subcommand: the ``train`` options with ``--methods``/``--seeds`` lists."""
    p = subparsers.add_parser(
        "compare",
        help=help_text,
        description="Train every method with every seed on the same data, model, encoder and initial weights; "
        "write results.md/results.csv (accuracy, time per epoch, peak memory, spike rate, weight sign changes, "
        "accuracy under magnitude pruning) and PNG plots to --out.",
        conflict_handler="resolve",
    )
    add_train_arguments(p)
    # --methods/--seeds replace train's single --method/--seed
    p.add_argument(
        "--methods",
        "--method",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help=f"methods to compare (default: {' '.join(DEFAULT_METHODS)}); lfp-<composite> or a registered "
        "method such as bptt-snntorch, bptt-norse, rstdp",
    )
    p.add_argument(
        "--seeds",
        "--seed",
        type=int,
        nargs="+",
        default=[default("seed")],
        help=f"seeds (default: {default('seed')})",
    )
    p.add_argument("--out", default="compare-out", help="output folder (default: compare-out)")
    p.add_argument(
        "--prune",
        type=float,
        nargs="+",
        default=[100 * f for f in PRUNE_FRACTIONS],
        help="percentages of weights to prune per layer (default: 0 25 50 75 90 95)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the comparison in --out (its report files and runs/); without it such a folder is refused",
    )
    p.add_argument(
        "--lr-for",
        action="append",
        default=[],
        metavar="METHOD=LR",
        help="learning rate for one method (repeatable); the others use --lr",
    )
    add_tune_arguments(p)
    p.set_defaults(func=cmd_compare)


TUNE_OPTIONS = {
    "tune_lr": "lr",
    "tune_beta": "beta",
    "tune_clip_value": "clip_value",
    "tune_weight_decay": "weight_decay",
}
"""Tuning option destination -> the config field it tunes."""


def add_tune_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose each method's settings on a validation split of the training set."""
    g = p.add_argument_group(
        "tuning (each method's setting chosen on a validation split of the training set, never on the test set)"
    )
    for dest, what in (
        ("tune_lr", "learning rates"),
        ("tune_beta", "membrane decays β (spiking models)"),
        ("tune_clip_value", "update clipping thresholds (with --clip)"),
        ("tune_weight_decay", "weight decays"),
    ):
        g.add_argument(
            "--" + dest.replace("_", "-"),
            type=float,
            nargs="+",
            metavar="V",
            help=f"{what} to try for every method (every combination with the other --tune-* lists); the best "
            "by final validation accuracy trains the reported runs",
        )
    g.add_argument(
        "--val-fraction",
        type=float,
        help="share of the training set held out (stratified) to score the candidates (default: 0.2)",
    )
    g.add_argument("--tune-epochs", type=int, help="epochs of each tuning run (default: --epochs)")


def tune_spec(a: argparse.Namespace, spiking: bool) -> TuneSpec | None:
    """The :class:`TuneSpec` of the --tune-* options (None when none is given); the options that do not
    apply are errors."""
    grid = {field: getattr(a, dest) for dest, field in TUNE_OPTIONS.items() if getattr(a, dest, None)}
    if not grid:
        given = [f for f, v in (("--val-fraction", a.val_fraction), ("--tune-epochs", a.tune_epochs)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} apply only with a --tune-* list (e.g. --tune-lr 1e-3 3e-3)")
        return None
    if "beta" in grid and not spiking:
        raise ValueError("--tune-beta applies to spiking models; this arch is an ANN")
    if "clip_value" in grid and value(a, "clip") == "none":
        raise ValueError("--tune-clip-value needs update clipping: give --clip norm or --clip agc")
    if "lr" in grid and a.lr_for:
        raise ValueError("--tune-lr and --lr-for both set learning rates; give one of them")
    if "lr" in grid and a.lr is not None and "lr" not in getattr(a, "recipe_set", ()):
        raise ValueError("--tune-lr and --lr both set the learning rate; give one of them")
    for dest, field in TUNE_OPTIONS.items():
        if (
            field in grid
            and field != "lr"
            and getattr(a, field, None) is not None
            and field not in getattr(a, "recipe_set", ())
        ):
            raise ValueError(f"--{dest.replace('_', '-')} and --{field.replace('_', '-')} both set {field}")
    return TuneSpec(grid, fraction=0.2 if a.val_fraction is None else a.val_fraction, epochs=a.tune_epochs)


def lr_overrides(items: list[str]) -> dict[str, float]:
    """``["METHOD=LR", ...]`` -> {method: lr}; ValueError naming a malformed item."""
    out = {}
    for item in items:
        name, sep, v = item.partition("=")
        try:
            out[name] = float(v)
        except ValueError:
            sep = ""
        if not sep or not out.get(name, 0) > 0:
            raise ValueError(f"--lr-for expects METHOD=LR with LR > 0, got {item!r}")
    return out


def cmd_compare(a: argparse.Namespace) -> int:
    set_threads(a.threads)
    device = resolve_device(a.device)
    if a.rule is not None:
        raise ValueError(
            "--rule does not apply to compare: name each method with its rule, as in lfp-zplus-zminus"
        )
    try:
        resolved = check_methods(a.methods)
    except ImportError as e:
        raise SystemExit(f"error: {e}") from None
    dup = sorted({s for s in a.seeds if a.seeds.count(s) > 1})
    if dup:
        raise ValueError(f"--seeds lists {dup} twice; each seed is one run per method")
    lrs = lr_overrides(a.lr_for)
    unknown = sorted(set(lrs) - set(a.methods))
    if unknown:
        raise ValueError(f"--lr-for names methods that are not compared: {unknown}")
    prune = [p / 100 for p in a.prune]
    if any(not 0 <= p <= 1 for p in prune):
        raise ValueError(f"--prune takes percentages in [0, 100], got {a.prune}")
    check_out_dir(Path(a.out), a.overwrite)
    train, test = load_run_data(a, a.seeds[0])
    temporal = getattr(train, "temporal", False)
    tune = tune_spec(a, is_spiking_arch(value(a, "arch")))

    def make_configs(name: str, method: str, rule: str, seed: int, overrides: dict | None = None):
        fields = {**({"lr": lrs[name]} if name in lrs else {}), **(overrides or {})}
        mc, tc = build_configs(a, train, method=method, rule=rule, seed=seed, progress=False, **fields)
        try:
            refuse_unused_options(a, mc, tc, temporal)
        except ValueError as e:
            raise ValueError(f"method {name}: {e}") from None
        if is_spiking_arch(mc.arch):
            check_backend_runs(mc.backend, device)
        return mc, tc

    configs = [  # all checked now, with every candidate of the tuning grid
        make_configs(name, method, rule, a.seeds[0], cand)
        for name, method, rule in resolved
        for cand in (tune.candidates() if tune else [{}])
    ]
    mc, tc = configs[0]
    spiking = is_spiking_arch(mc.arch)
    meta = {
        "data": f"{a.data} ({len(train)} train / {len(test)} test)",
        "model": f"{mc.arch}"
        + (
            f", T={train.steps if temporal else tc.steps}, β={mc.beta}, θ={mc.threshold}, reset={mc.reset}, "
            f"neuron={mc.neuron}"
            if spiking
            else ""
        ),
        "reset delay / encoder": f"{mc.reset_delay} / {tc.encoder if not temporal else 'event frames'}"
        if spiking
        else "n/a",
        "training": f"{tc.epochs} epochs, batch {tc.batch_size}, {tc.optimizer}"
        + ("" if tune and "lr" in tune.grid else f" lr {value(a, 'lr')}")
        + (f", schedule {tc.schedule}" if tc.schedule != "none" else "")
        + (f", clip {tc.clip} {tc.clip_value:g}" if tc.clip != "none" else "")
        + (f", recipe {a.recipe}" if a.recipe else "")
        + (f" (per method: {lrs})" if lrs else ""),
        **({"tuned": tune.describe(len(train), tc.epochs, a.seeds[0])} if tune else {}),
        "seeds": " ".join(map(str, a.seeds)),
        "device": f"{device} ({torch.get_num_threads()} CPU threads)"
        if device.type == "cpu"
        else str(device),
    }
    print(
        f"comparing {' '.join(a.methods)} on {meta['data']}, {meta['model']}, seeds {meta['seeds']}",
        flush=True,
    )
    results = compare(
        a.methods,
        a.seeds,
        train,
        test,
        make_configs,
        a.out,
        device,
        prune,
        meta=meta,
        overwrite=a.overwrite,
        tune=tune,
    )
    for r in results:
        print(
            f"result {r['method']} seed {r['seed']}: "
            + (f"tuned {r['tuned']} (validation {r['validation_accuracy']:.4f}), " if "tuned" in r else "")
            + f"test acc {r['test_accuracy']:.4f}  "
            f"{r['epoch_time_s']:.2f}s/epoch  peak {r['peak_memory_mib']:.1f} MiB",
            flush=True,
        )
    print(f"wrote {a.out}/{', '.join(REPORT_FILES)} and runs/")
    return 0
