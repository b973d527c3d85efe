"""Compare training methods (LFP rules, surrogate-gradient BPTT baselines) on the same data, model and seeds.

:func:`compare` trains every method × seed with the :class:`~lfp_snn.training.Trainer` (same model config,
encoder, batches and initial weights for a given seed), evaluates every model with lfp-snn's own engine
(:func:`lfp_snn.run`) and, given a folder, writes there:

- ``results.md`` and ``results.csv``: one row per method × seed (final and best test accuracy, time per epoch,
  peak memory, mean spike rate, share of weights whose sign changed, accuracy under magnitude pruning) and,
  in the Markdown, a mean ± std summary per method;
- ``epochs.csv``: test accuracy, time and training spike rate per epoch; ``results.json``: everything;
- ``accuracy.png``, ``time.png``, ``pruning.png``, ``summary.png``;
- ``runs/<method>_seed<s>/``: the Trainer's metrics, config and final weights.

Peak memory is measured while training (the test evaluation between epochs is left out, and a one-batch
warm-up with a throw-away Trainer runs first so imports and lazily loaded kernels are not charged to the
run): on the CPU the largest increase of the process's resident set size (RSS) over its value at the start,
sampled every 5 ms (free heap is returned to the OS first with ``malloc_trim`` so memory kept from earlier
runs does not hide the run's own needs); on a GPU ``torch.cuda.max_memory_allocated`` above the allocation at
the start. The table says which.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ...engine import run
from ...models import ModelConfig, is_spiking_arch
from ...training import TrainConfig, Trainer, check_methods, sign_changed
from ..memory import PeakMemory
from ..metrics import PRUNE_FRACTIONS, evaluate, lif_sizes, pruning_curve, train_rate
from .report import write_report

ConfigMaker = Callable[[str, str, str, int], tuple[ModelConfig, TrainConfig]]


def run_one(
    name: str,
    seed: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    train,
    test,
    device: torch.device | str = "cpu",
    out_dir: str | os.PathLike | None = None,
    prune: Sequence[float] = PRUNE_FRACTIONS,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train one method with one seed and measure it; returns a dict (see :func:`compare`)."""
    spiking = is_spiking_arch(model_config.arch)

    def on_epoch(r: dict) -> None:
        if log is not None:
            log(
                f"[{name} seed {seed}] epoch {r['epoch']}/{train_config.epochs}  test acc "
                f"{r.get('test_accuracy', math.nan):.4f}  {r['time_s']:.2f}s"
            )

    if out_dir is not None:  # a fresh run folder: the Trainer appends to an existing metrics file
        for stale in ("metrics.jsonl", "metrics.csv"):
            Path(out_dir, stale).unlink(missing_ok=True)
    warm_up(model_config, train_config, train, device)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        trainer = Trainer(model_config, train_config, out_dir=out_dir, device=device)
        initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n.endswith("weight")}
        evaluate_epoch = trainer.evaluate

        def evaluate_unmeasured(*args, **kwargs):
            with mem.paused():
                return evaluate_epoch(*args, **kwargs)

        trainer.evaluate = evaluate_unmeasured  # the test evaluation between epochs is not training memory
        history = trainer.fit(train, test, on_epoch=on_epoch)
        wall = time.perf_counter() - t0
    model = trainer.model
    final = evaluate(model, test, trainer.encoder, spiking, train_config.eval_batch_size, seed)
    curve = pruning_curve(model, test, trainer.encoder, spiking, prune, train_config.eval_batch_size, seed)
    sizes = lif_sizes(model, test, trainer.encoder)
    epochs = [
        {
            "epoch": r["epoch"],
            "test_accuracy": r.get("test_accuracy", math.nan),
            "train_accuracy": r["train_accuracy"],
            "time_s": r["time_s"],
            "train_spike_rate": train_rate(r, sizes),
        }
        for r in history
    ]
    times = [e["time_s"] for e in epochs]
    return {
        "method": name,
        "seed": seed,
        "test_accuracy": final["accuracy"],
        "best_test_accuracy": max((e["test_accuracy"] for e in epochs), default=final["accuracy"]),
        "train_accuracy": epochs[-1]["train_accuracy"] if epochs else math.nan,
        "epoch_time_s": statistics.fmean(times) if times else math.nan,
        "total_time_s": wall,
        "peak_memory_mib": mem.peak / 2**20,
        "memory_measure": mem.kind,
        "spike_rate": final["spike_rate"],
        "sign_changed": sign_changed(model, initial),
        "pruning": {float(f): a for f, a in curve.items()},
        "epochs": epochs,
    }


def warm_up(model_config: ModelConfig, train_config: TrainConfig, train, device) -> None:
    """One training step and one inference with a throw-away Trainer, so that imports, lazily loaded kernels
    and thread pools are not charged to the measured run (its time, memory and random streams)."""
    trainer = Trainer(model_config, dataclasses.replace(train_config, progress=False), device=device)
    x, y = next(iter(train.batches(min(train_config.batch_size, len(train)), shuffle=False)))
    xs = trainer.encode(x)
    trainer.step_fn(xs, y.to(trainer.device))
    trainer.optimizer.zero_grad()
    with torch.no_grad():
        run(trainer.model, xs) if trainer.spiking else trainer.model(xs)
    del trainer


def compare(
    methods: Sequence[str],
    seeds: Sequence[int],
    train,
    test,
    make_configs: ConfigMaker,
    out_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    prune: Sequence[float] = PRUNE_FRACTIONS,
    log: Callable[[str], None] | None = print,
    meta: dict | None = None,
) -> list[dict]:
    """Train every method with every seed and return one result dict per run.

    ``make_configs(name, method, rule, seed) -> (ModelConfig, TrainConfig)`` gives each run its configs (the
    CLI builds them from the ``train`` arguments, so every method shares data, model, encoder and T).
    Each result has ``method, seed, test_accuracy, best_test_accuracy, train_accuracy, epoch_time_s,
    total_time_s, peak_memory_mib, memory_measure, spike_rate, sign_changed, pruning`` ({fraction:
    accuracy}) and ``epochs`` (per-epoch records). With ``out_dir`` each run's Trainer output goes to
    ``out_dir/runs/<name>_seed<s>/`` and the report (:func:`write_report`, with ``meta`` listed at its top)
    to ``out_dir``.
    """
    resolved = check_methods(methods)
    if not seeds:
        raise ValueError("no seeds given")
    if any(not 0 <= f <= 1 for f in prune):
        raise ValueError(f"pruning fractions must lie in [0, 1], got {list(prune)}")
    results = []
    for name, method, rule in resolved:
        for seed in seeds:
            mc, tc = make_configs(name, method, rule, seed)
            run_dir = None if out_dir is None else Path(out_dir) / "runs" / f"{name}_seed{seed}"
            results.append(run_one(name, seed, mc, tc, train, test, device, run_dir, prune, log))
    if out_dir is not None:
        write_report(results, out_dir, meta)
    return results
