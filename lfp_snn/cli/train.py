"""``lfp-snn train``: train one model (LFP by default) and print per-epoch metrics and the test accuracy."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from ..models import is_spiking_arch
from ..training import Trainer
from .options import (
    add_train_arguments,
    check_backend_runs,
    configs_from_args,
    load_run_data,
    refuse_unused_options,
    resolve_device,
    set_threads,
    value,
)

RUNS_ENV = "LFP_SNN_RUNS"
"""Where ``train`` makes a new run folder when ``--out`` is not given (default ``runs``)."""


def add_command(subparsers, help_text: str) -> None:
    """Add the ``train`` subcommand."""
    t = subparsers.add_parser(
        "train",
        help=help_text,
        description="Train an SNN (or ANN) with LFP or a baseline, print per-epoch metrics. Without --out the "
        f"run goes to a new folder runs/<date-time> (under ${RUNS_ENV} when that is set).",
    )
    add_train_arguments(t)
    add_run_folder_arguments(t)
    t.set_defaults(func=cmd_train)


def add_run_folder_arguments(p: argparse.ArgumentParser) -> None:
    """``--overwrite`` and ``--resume``: what to do with an ``--out`` folder that holds a run."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (its config.json, model.pt, train_state.pt and metrics; other files stay)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last epoch up to --epochs, with the same options",
    )


def new_run_folder() -> Path:
    """A folder name ``runs/<date-time>`` (under ``$LFP_SNN_RUNS``) that does not exist yet."""
    base = Path(os.environ.get(RUNS_ENV) or "runs") / time.strftime("%Y-%m-%d_%H-%M-%S")
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def layer_rates(record: dict, layers: dict[str, str]) -> str:
    """Spike rate and share of silent neurons of every LIF layer in an epoch's record, each named by its
    module path and what it is (``layers``: path -> description)."""
    parts = []
    for k, v in record.items():
        if k.startswith("spike_rate/"):
            name = k.split("/", 1)[1]
            silent = record.get(f"silent/{name}", float("nan"))
            parts.append(f"{layers.get(name, name)}: rate {v:.3f} silent {silent:.2f}")
    return "  ".join(parts)


def describe_layers(model: torch.nn.Module) -> dict[str, str]:
    """Neuron layer path -> e.g. ``2 LIF(256)`` (the path in the model, the type and the neurons it feeds)."""
    from ..neurons import LIF, AdaptiveLIF, CubaLIF, RecurrentLIF

    out, width = {}, None
    for name, m in model.named_modules():
        w = getattr(m, "out_features", None) or getattr(m, "out_channels", None)
        if w is not None:
            width = w
        if isinstance(m, (LIF, CubaLIF, AdaptiveLIF, RecurrentLIF)):
            out[name] = f"{name} {type(m).__name__}({width if width is not None else '?'})"
    return out


def cmd_train(a: argparse.Namespace) -> int:
    set_threads(a.threads)
    device = resolve_device(a.device)
    train, test = load_run_data(a, value(a, "seed"))
    model_cfg, train_cfg = configs_from_args(a, train)
    temporal = getattr(train, "temporal", False)
    refuse_unused_options(a, model_cfg, train_cfg, temporal)
    spiking = is_spiking_arch(model_cfg.arch)
    if spiking:
        check_backend_runs(model_cfg.backend, device)
    if a.resume and a.out is None:
        raise ValueError("--resume needs --out: the folder of the run to continue")
    out = Path(a.out) if a.out is not None else new_run_folder()
    trainer = Trainer(
        model_cfg, train_cfg, out_dir=out, device=device, overwrite=a.overwrite, resume=a.resume
    )
    steps = train.steps if temporal else train_cfg.steps  # sequence data bring their own T
    what = f"{model_cfg.arch} ({f'T={steps}, β={model_cfg.beta}' if spiking else 'ANN'})"
    method = f"lfp-{train_cfg.rule}" if train_cfg.method == "lfp" else train_cfg.method
    todo = train_cfg.epochs - trainer.epoch
    print(
        f"training {what} on {a.data}: {len(train)} train / {len(test)} test samples, method {method}, "
        f"{todo} epochs" + (f" (resuming after epoch {trainer.epoch})" if a.resume else ""),
        flush=True,
    )
    if todo:
        print(
            f"saving to {out}{'' if a.out is not None else ' (a new folder; --out names another)'}",
            flush=True,
        )
    t0 = time.perf_counter()
    layers = describe_layers(trainer.model)

    def report(r: dict) -> None:
        print(
            f"epoch {r['epoch']:3d}  train acc {r['train_accuracy']:.4f}  test acc {r.get('test_accuracy', float('nan')):.4f}"
            f"  {r['time_s']:.1f}s  {layer_rates(r, layers)}".rstrip(),
            flush=True,
        )

    try:
        history = trainer.fit(train, test, on_epoch=report)
    except KeyboardInterrupt:
        if trainer.saved_epoch:
            kept = f"{out} holds the run up to epoch {trainer.saved_epoch}; add --resume to continue it"
        else:
            kept = f"nothing was written to {out}"
        print(f"interrupted: {kept}", file=sys.stderr)
        return 130
    final = history[-1] if history else {"test_accuracy": trainer.evaluate(test)["accuracy"]}
    summary = {"test_accuracy": final.get("test_accuracy"), "wall_s": round(time.perf_counter() - t0, 2)}
    summary.update({k: v for k, v in final.items() if k.startswith(("spike_rate/", "silent/"))})
    print("result " + json.dumps(summary))
    if trainer.written:
        print(f"wrote {', '.join(str(p) for p in trainer.written)}")
    else:
        print(f"nothing written to {out}: no epoch was trained (--epochs {train_cfg.epochs})")
    return 0
