"""``lfp-snn compare``: train several methods on the same data, model and seeds; write a table and plots
(:mod:`lfp_snn.experiments.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..experiments.compare import compare
from ..experiments.compare.report import REPORT_FILES
from ..experiments.compare.run import check_out_dir
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
    p.set_defaults(func=cmd_compare)


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

    def make_configs(name: str, method: str, rule: str, seed: int):
        mc, tc = build_configs(
            a, train, method=method, rule=rule, seed=seed, lr=lrs.get(name, value(a, "lr")), progress=False
        )
        try:
            refuse_unused_options(a, mc, tc, temporal)
        except ValueError as e:
            raise ValueError(f"method {name}: {e}") from None
        if is_spiking_arch(mc.arch):
            check_backend_runs(mc.backend, device)
        return mc, tc

    configs = [
        make_configs(name, method, rule, a.seeds[0]) for name, method, rule in resolved
    ]  # all checked now
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
        "training": f"{tc.epochs} epochs, batch {tc.batch_size}, {tc.optimizer} lr {value(a, 'lr')}"
        + (f" (per method: {lrs})" if lrs else ""),
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
        a.methods, a.seeds, train, test, make_configs, a.out, device, prune, meta=meta, overwrite=a.overwrite
    )
    for r in results:
        print(
            f"result {r['method']} seed {r['seed']}: test acc {r['test_accuracy']:.4f}  "
            f"{r['epoch_time_s']:.2f}s/epoch  peak {r['peak_memory_mib']:.1f} MiB",
            flush=True,
        )
    print(f"wrote {a.out}/{', '.join(REPORT_FILES)} and runs/")
    return 0
