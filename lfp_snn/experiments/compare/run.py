"""Compare training methods (LFP rules, surrogate-gradient BPTT baselines) on the same data, model and seeds.

:func:`compare` trains every method × seed with the :class:`~lfp_snn.training.Trainer` (same model config,
encoder, batches and initial weights for a given seed), evaluates every model with lfp-snn's own engine
(:func:`lfp_snn.run`) and, given a folder, writes there:

- ``results.md`` and ``results.csv``: one row per method × seed (the setting it ran with, validation accuracy
  when tuned, final test accuracy, time per epoch, peak memory, mean spike rate, share of weights whose sign
  changed, NeuroBench's efficiency metrics on the test set (:func:`~lfp_snn.experiments.efficiency.
  efficiency_report`: through the neurobench package where it runs the model, else by their definition,
  with the source named), accuracy under magnitude pruning) and, in the Markdown, a mean ± std summary per method and the
  tuning trials;
- ``epochs.csv``: test accuracy, time and training spike rate per epoch; ``results.json``: everything;
- ``accuracy.png``, ``time.png``, ``pruning.png``, ``summary.png``;
- ``runs/<method>_seed<s>/``: the Trainer's metrics, config and final weights.

Peak memory is that of one training step on a full batch (forward, feedback or backward, update clipping and the
optimiser step), measured for every method the same way: the peak of the bytes held by live tensors, from
torch's memory profiler (:func:`lfp_snn.experiments.memory.tensor_peak_mib`), with a throw-away Trainer after
one warm-up step, so that neither the allocator's caching nor lazily loaded kernels enter the figure, and the
measured run's time and random streams are not touched.

With a :class:`~.tuning.TuneSpec` each method's settings (learning rate, and optionally β, clipping, weight
decay) are first chosen on a validation split of the training set (:func:`~.tuning.tune_method`); no number
in the report is chosen on the test set (the test accuracy is the final epoch's, not the best one's).
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

from ...models import ModelConfig, is_spiking_arch
from ...training import TrainConfig, Trainer, check_methods, clip_updates, sign_changed
from ..efficiency import efficiency_report
from ..memory import tensor_peak_mib
from ..metrics import PRUNE_FRACTIONS, evaluate, lif_sizes, pruning_curve, train_rate
from .report import REPORT_FILES, write_report
from .tuning import TuneSpec, tune_method

MEMORY_MEASURE = "tensors held during one training step (torch profiler)"

ConfigMaker = Callable[[str, str, str, int, dict], tuple[ModelConfig, TrainConfig]]


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
    overwrite: bool = False,
) -> dict:
    """Train one method with one seed and measure it; returns a dict (see :func:`compare`)."""
    spiking = is_spiking_arch(model_config.arch)

    def on_epoch(r: dict) -> None:
        if log is not None:
            log(
                f"[{name} seed {seed}] epoch {r['epoch']}/{train_config.epochs}  test acc "
                f"{r.get('test_accuracy', math.nan):.4f}  {r['time_s']:.2f}s"
            )

    peak = step_peak_mib(model_config, train_config, train, device)
    t0 = time.perf_counter()
    trainer = Trainer(model_config, train_config, out_dir=out_dir, device=device, overwrite=overwrite)
    initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if n.endswith("weight")}
    history = trainer.fit(train, test, on_epoch=on_epoch)
    wall = time.perf_counter() - t0
    model = trainer.model
    final = evaluate(model, test, trainer.encoder, spiking, train_config.eval_batch_size, seed)
    curve = pruning_curve(model, test, trainer.encoder, spiking, prune, train_config.eval_batch_size, seed)
    sizes = lif_sizes(model, test, trainer.encoder)
    eff = efficiency_report(model, test, trainer.encoder, spiking, train_config.eval_batch_size, seed)
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
        "train_accuracy": epochs[-1]["train_accuracy"] if epochs else math.nan,
        "epoch_time_s": statistics.fmean(times) if times else math.nan,
        "total_time_s": wall,
        "lr": train_config.lr,
        "beta": model_config.beta if spiking else math.nan,
        "peak_memory_mib": peak,
        "memory_measure": MEMORY_MEASURE,
        "spike_rate": final["spike_rate"],
        "sign_changed": sign_changed(model, initial),
        "pruning": {float(f): a for f, a in curve.items()},
        "efficiency": eff,
        "epochs": epochs,
    }


def step_peak_mib(model_config: ModelConfig, train_config: TrainConfig, train, device) -> float:
    """Peak MiB of tensors held during one training step on a full batch (see the module docstring), with a
    throw-away Trainer after one warm-up step (imports, lazily loaded kernels, the optimiser's state)."""
    trainer = Trainer(model_config, dataclasses.replace(train_config, progress=False), device=device)
    x, y = next(iter(train.batches(min(train_config.batch_size, len(train)), shuffle=False)))
    xs, y = trainer.encode(x, getattr(train, "temporal", False)), y.to(trainer.device)

    def step() -> None:
        trainer.step_fn(xs, y)
        clip_updates(trainer.model, train_config.clip, train_config.clip_value)
        trainer.optimizer.step()

    step()
    return tensor_peak_mib(step, trainer.device)


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
    overwrite: bool = False,
    tune: TuneSpec | None = None,
) -> list[dict]:
    """Train every method with every seed and return one result dict per run.

    ``out_dir`` must not hold a comparison already (its report or ``runs/``) unless ``overwrite``.

    ``make_configs(name, method, rule, seed, overrides) -> (ModelConfig, TrainConfig)`` gives each run its
    configs with the config fields in ``overrides`` set (the CLI builds them from the ``train`` arguments,
    so every method shares data, model, encoder and T). With ``tune`` each method's overrides are chosen on
    a validation split of ``train`` first (see :mod:`.tuning`; ``test`` is not touched until the runs).
    Each result has ``method, seed, lr, beta, test_accuracy, train_accuracy, epoch_time_s, total_time_s,
    peak_memory_mib, memory_measure, spike_rate, sign_changed, pruning`` ({fraction: accuracy}), ``epochs``
    (per-epoch records) and, when tuned, ``tuned`` (the chosen setting), ``validation_accuracy`` and
    ``tuning`` (every trial). With ``out_dir`` each run's Trainer output goes to
    ``out_dir/runs/<name>_seed<s>/`` and the report (:func:`write_report`, with ``meta`` listed at its top)
    to ``out_dir``.
    """
    resolved = check_methods(methods)
    if not seeds:
        raise ValueError("no seeds given")
    if any(not 0 <= f <= 1 for f in prune):
        raise ValueError(f"pruning fractions must lie in [0, 1], got {list(prune)}")
    if out_dir is not None:
        check_out_dir(Path(out_dir), overwrite)
    results = []
    for name, method, rule in resolved:
        tuning = None
        if tune is not None:
            tseed = seeds[0] if tune.seed is None else tune.seed
            tuning = tune_method(
                name,
                lambda o, n=name, m=method, r=rule, s=tseed: make_configs(n, m, r, s, o),
                train,
                tune,
                tseed,
                device,
                log,
            )
        overrides = {} if tuning is None else tuning["best"]
        for seed in seeds:
            mc, tc = make_configs(name, method, rule, seed, overrides)
            run_dir = None if out_dir is None else Path(out_dir) / "runs" / f"{name}_seed{seed}"
            r = run_one(name, seed, mc, tc, train, test, device, run_dir, prune, log, overwrite)
            if tuning is not None:
                r.update(
                    tuned=dict(overrides), validation_accuracy=tuning["validation_accuracy"], tuning=tuning
                )
            results.append(r)
    if out_dir is not None:
        write_report(results, out_dir, meta)
    return results


def check_out_dir(out: Path, overwrite: bool) -> None:
    """FileExistsError when ``out`` holds a comparison (report files or ``runs/``) and not ``overwrite``;
    ValueError when it is a file."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"the output folder {out} is a file; give a folder")
    found = [n for n in (*REPORT_FILES, "runs") if (out / n).exists()]
    if found and not overwrite:
        raise FileExistsError(
            f"{out} holds a comparison already ({', '.join(found)}); pass overwrite=True (--overwrite) to "
            "replace it, or choose another folder"
        )
