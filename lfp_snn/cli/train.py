"""``lfp-snn train``: train one model (LFP by default) and print per-epoch metrics and the test accuracy."""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..data import load_data
from ..models import is_spiking_arch
from ..training import Trainer
from .options import add_train_arguments, configs_from_args, resolve_device, value


def add_command(subparsers, help_text: str) -> None:
    """Add the ``train`` subcommand."""
    t = subparsers.add_parser(
        "train",
        help=help_text,
        description="Train an SNN (or ANN) with LFP or a baseline, print per-epoch metrics.",
    )
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)


def check_backend_runs(backend: str, device: torch.device) -> None:
    """SystemExit naming ``--backend`` when that backend cannot run on ``device`` here."""
    if backend in ("torch", "auto"):
        return
    from ..kernels import check_backend

    try:
        check_backend(backend, device)
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"error: --backend {backend}: {e}") from None


def load_run_data(a: argparse.Namespace, seed: int):
    """``(train, test)`` of ``--data`` (event data binned into ``-T`` frames), cut to ``--subset`` and
    ``--test-subset`` by a draw seeded with ``seed``."""
    train, test = load_data(a.data, value(a, "steps"), a.download, a.limit)
    if a.subset:
        train = train.subset(a.subset, seed=seed)
    if a.test_subset:
        test = test.subset(a.test_subset, seed=seed)
    return train, test


def layer_rates(record: dict) -> str:
    """The spike rate and share of silent neurons per LIF layer of an epoch's record, as one line."""
    parts = []
    for k, v in record.items():
        if k.startswith("spike_rate/"):
            name = k.split("/", 1)[1]
            parts.append(f"rate[{name}]={v:.3f}")
    for k, v in record.items():
        if k.startswith("silent/"):
            parts.append(f"silent[{k.split('/', 1)[1]}]={v:.2f}")
    return "  ".join(parts)


def cmd_train(a: argparse.Namespace) -> int:
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    check_backend_runs(value(a, "backend"), device)
    train, test = load_run_data(a, value(a, "seed"))
    model_cfg, train_cfg = configs_from_args(a, train)
    trainer = Trainer(model_cfg, train_cfg, out_dir=a.out, device=device)
    spiking = is_spiking_arch(model_cfg.arch)
    what = f"{model_cfg.arch} ({f'T={train_cfg.steps}, β={model_cfg.beta}' if spiking else 'ANN'})"
    method = f"lfp-{train_cfg.rule}" if train_cfg.method == "lfp" else train_cfg.method
    print(
        f"training {what} on {a.data}: {len(train)} train / {len(test)} test samples, method {method}, "
        f"{train_cfg.epochs} epochs",
        flush=True,
    )
    t0 = time.perf_counter()

    def report(r: dict) -> None:
        print(
            f"epoch {r['epoch']:3d}  train acc {r['train_accuracy']:.4f}  test acc {r.get('test_accuracy', float('nan')):.4f}"
            f"  {r['time_s']:.1f}s  {layer_rates(r)}".rstrip(),
            flush=True,
        )

    history = trainer.fit(train, test, on_epoch=report)
    final = history[-1] if history else {"test_accuracy": trainer.evaluate(test)["accuracy"]}
    summary = {"test_accuracy": final.get("test_accuracy"), "wall_s": round(time.perf_counter() - t0, 2)}
    summary.update({k: v for k, v in final.items() if k.startswith(("spike_rate/", "silent/"))})
    print("result " + json.dumps(summary))
    if a.out:
        print(f"wrote {a.out}/config.json, {a.out}/model.pt and metrics")
    return 0
