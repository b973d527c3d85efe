"""Compare training methods (LFP rules, surrogate-gradient BPTT baselines) on the same data, model and seeds.

``lfp-snn compare --methods lfp-epsilon bptt-snntorch bptt-norse --data digits --epochs 10 --seeds 0 1
--out DIR`` trains every method × seed with the :class:`~lfp_snn.training.Trainer` (same model config,
encoder, batches and initial weights for a given seed), evaluates every model with lfp-snn's own engine
(:func:`lfp_snn.run`) and writes to DIR:

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

import argparse
import contextlib
import copy
import csv
import dataclasses
import gc
import importlib.util
import json
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .engine import forward_trace, run
from .models import ModelConfig, is_spiking_arch
from .ops import PARAMETRIC
from .rules import presets
from .training import METHODS, TrainConfig, Trainer, predictions

PRUNE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95)
DEFAULT_METHODS = ("lfp-epsilon", "lfp-zplus-zminus", "bptt-snntorch", "bptt-norse")
LIBRARIES = {"bptt-snntorch": "snntorch", "bptt-norse": "norse"}


def _register_baselines() -> None:
    from . import baselines  # noqa: F401  (registers bptt-snntorch and bptt-norse in METHODS)


# --------------------------------------------------------------------------------------------------------
# methods
# --------------------------------------------------------------------------------------------------------


def known_methods() -> list[str]:
    """Method names ``compare`` accepts: ``lfp-<composite>`` for every LFP preset and the registered methods
    (baselines included)."""
    _register_baselines()
    return [f"lfp-{p}" for p in presets()] + sorted(m for m in METHODS if m != "lfp")


def resolve_method(name: str) -> tuple[str, str]:
    """``lfp-<rule>`` -> ("lfp", rule); a registered method -> (name, "epsilon"); anything else is a
    ValueError that lists the accepted names."""
    _register_baselines()
    if name.startswith("lfp-") and name[4:] in presets():
        return "lfp", name[4:]
    if name in METHODS and name != "lfp":
        return name, "epsilon"
    if name == "lfp":
        return "lfp", "epsilon"
    raise ValueError(f"unknown method {name!r}; expected one of {', '.join(known_methods())}")


def check_methods(methods: Sequence[str]) -> list[tuple[str, str, str]]:
    """Validate all names (and that the baselines' libraries are installed) before anything runs."""
    if not methods:
        raise ValueError(f"no methods given; expected some of {', '.join(known_methods())}")
    dup = sorted({m for m in methods if list(methods).count(m) > 1})
    if dup:
        raise ValueError(f"methods listed twice: {dup}")
    out = []
    for name in methods:
        method, rule = resolve_method(name)
        lib = LIBRARIES.get(method)
        if lib is not None and importlib.util.find_spec(lib) is None:
            raise ImportError(
                f"method {name!r} needs the {lib!r} package, which is not installed; install it (without "
                f"letting pip replace torch: `pip install --no-deps {lib}`) or leave {name!r} out"
            )
        out.append((name, method, rule))
    return out


# --------------------------------------------------------------------------------------------------------
# evaluation: accuracy, spike rate, pruning, weight signs
# --------------------------------------------------------------------------------------------------------


def evaluate(
    model: nn.Module, data, encoder, spiking: bool, batch_size: int = 512, seed: int = 0
) -> dict[str, float]:
    """Accuracy and mean spike rate of ``model`` on ``data`` with lfp-snn's engine.

    Random encoders draw from a fresh generator seeded with ``seed``, so two calls (e.g. before and after
    pruning) see the same input spikes. The spike rate is spikes / (neurons · steps · samples) over all LIF
    layers together (NaN for ANNs).
    """
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = n = 0
    spikes = slots = 0.0
    with torch.no_grad():
        for x, y in data.batches(batch_size, shuffle=False):
            x = x.to(device)
            if spiking:
                xs = encoder(x, gen)
                trace = forward_trace(model, xs, keep=False)
                out = trace.output
                for c in trace.spike_counts.values():
                    spikes += float(c.sum())
                    slots += c.numel() * trace.steps * len(y)
            else:
                out = model(x)
            correct += int((predictions(out, spiking).cpu() == y).sum())
            n += len(y)
    model.train(was_training)
    return {"accuracy": correct / max(n, 1), "spike_rate": spikes / slots if slots else math.nan}


def prune_by_magnitude(model: nn.Module, fraction: float) -> nn.Module:
    """A copy of ``model`` with, in every Linear/Conv layer, the ``round(fraction · n)`` weights of smallest
    |w| set to zero (per layer; biases kept). ``fraction`` = 0 returns an unchanged copy."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"pruning fraction must lie in [0, 1], got {fraction}")
    pruned = copy.deepcopy(model)
    if fraction == 0:
        return pruned
    with torch.no_grad():
        for m in pruned.modules():
            if isinstance(m, tuple(PARAMETRIC)):
                w = m.weight
                k = round(fraction * w.numel())
                if k:
                    idx = torch.argsort(w.abs().flatten(), stable=True)[:k]
                    w.view(-1)[idx] = 0
    return pruned


def pruning_curve(
    model: nn.Module,
    data,
    encoder,
    spiking: bool,
    fractions: Sequence[float] = PRUNE_FRACTIONS,
    batch_size: int = 512,
    seed: int = 0,
) -> dict[float, float]:
    """Test accuracy after magnitude pruning, for each fraction of weights removed per layer."""
    return {
        f: evaluate(prune_by_magnitude(model, f), data, encoder, spiking, batch_size, seed)["accuracy"]
        for f in fractions
    }


def weight_sign_changes(model: nn.Module, initial: dict[str, Tensor]) -> float:
    """Share of weights (``*.weight`` of parametric layers) whose sign differs from ``initial``."""
    changed = total = 0
    for name, p in model.named_parameters():
        if name in initial:
            changed += int((torch.sign(p.detach()) != torch.sign(initial[name])).sum())
            total += p.numel()
    return changed / max(total, 1)


# --------------------------------------------------------------------------------------------------------
# peak memory
# --------------------------------------------------------------------------------------------------------


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _malloc_trim() -> None:
    from .allocator import trim

    trim()


def tensor_peak_mib(fn) -> float:
    """Peak of the bytes held by live CPU tensors while ``fn()`` runs (parameters, optimiser state, inputs,
    activations and temporaries), in MiB, from torch's memory profiler: independent of the allocator's
    caching, unlike the resident set that :class:`PeakMemory` samples."""
    import tempfile
    import warnings

    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        fn()
    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(d, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        with open(path) as f:
            _, sizes = json.load(f)
    return max(sum(s) for s in sizes) / 2**20


class PeakMemory:
    """Context manager: the peak memory a block adds, in bytes (``.peak``), and how it was measured
    (``.kind``). CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at entry. CPU on Linux: peak
    RSS above the RSS at entry, sampled every ``interval`` seconds by a thread (free heap is handed back to
    the OS with ``malloc_trim`` first). Elsewhere: the growth of ``ru_maxrss`` (a process-wide high-water
    mark, so 0 once an earlier run went higher). Inside ``with pm.paused():`` nothing counts."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak = 0
        self.kind = ""
        self._paused = False

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self._max = self._base
            self.kind = "cuda max_memory_allocated"
            return self
        _malloc_trim()
        self._base = _rss_bytes()
        if self._base is None:
            import resource

            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.kind = "ru_maxrss growth"
            return self
        self.kind = "peak RSS increase (sampled)"
        self._max = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _rss_bytes()
            if not self._paused and rss is not None and rss > self._max:
                self._max = rss
            self._stop.wait(self.interval)

    @contextlib.contextmanager
    def paused(self):
        """Leave a block out of the measurement (e.g. evaluation between training epochs)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._max = max(self._max, torch.cuda.max_memory_allocated(self.device))
        elif self.kind == "peak RSS increase (sampled)":
            rss = _rss_bytes()
            self._max = max(self._max, rss or 0)
        self._paused = True
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            else:
                _malloc_trim()
            self._paused = False

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = max(self._max, torch.cuda.max_memory_allocated(self.device)) - self._base
        elif self.kind == "ru_maxrss growth":
            import resource

            self.peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._base, 0)
        else:
            self._stop.set()
            self._thread.join()
            rss = None if self._paused else _rss_bytes()
            self.peak = max(max(self._max, rss or 0) - self._base, 0)


# --------------------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------------------

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
    _register_baselines()
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
            "train_spike_rate": _train_rate(r, sizes),
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
        "sign_changed": weight_sign_changes(model, initial),
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


def _train_rate(record: dict, sizes: dict[str, int]) -> float:
    """Spike rate over all LIF layers in a training epoch's record: the per-layer rates weighted by the
    layers' neuron counts ``sizes``; NaN when the record has none."""
    layers = [k.split("/", 1)[1] for k in record if k.startswith("spike_rate/")]
    total = sum(sizes.get(k, 0) for k in layers)
    if not layers or not total:
        return math.nan
    return sum(record[f"spike_rate/{k}"] * sizes.get(k, 0) for k in layers) / total


def lif_sizes(model: nn.Module, data, encoder) -> dict[str, int]:
    """Neurons per LIF layer (from one test sample through lfp-snn's engine); empty for ANNs."""
    if encoder is None or len(data) == 0:
        return {}
    device = next(model.parameters()).device
    x = data.x[:1].to(device)
    with torch.no_grad():
        trace = forward_trace(model, encoder(x, torch.Generator(device=device).manual_seed(0)), keep=False)
    return {k: c.numel() for k, c in trace.spike_counts.items()}


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


# --------------------------------------------------------------------------------------------------------
# report: tables and figures
# --------------------------------------------------------------------------------------------------------

COLUMNS = (
    "method",
    "seed",
    "test_accuracy",
    "best_test_accuracy",
    "train_accuracy",
    "epoch_time_s",
    "total_time_s",
    "peak_memory_mib",
    "memory_measure",
    "spike_rate",
    "sign_changed",
)


def _pct(f: float) -> str:
    return f"{100 * f:g}"


def flat_row(r: dict) -> dict:
    """A result as one flat row: the scalar columns plus ``prune_<percent>`` accuracies."""
    row = {k: r[k] for k in COLUMNS}
    row.update({f"prune_{_pct(f)}": a for f, a in sorted(r["pruning"].items())})
    return row


def write_report(results: list[dict], out_dir: str | os.PathLike, meta: dict | None = None) -> list[Path]:
    """Write results.csv, results.md, epochs.csv, results.json and the PNG figures; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [flat_row(r) for r in results]
    fields = list(rows[0]) if rows else list(COLUMNS)
    paths = [out / "results.csv", out / "epochs.csv", out / "results.json", out / "results.md"]
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(paths[1], "w", newline="") as f:
        keys = ["method", "seed", "epoch", "test_accuracy", "train_accuracy", "time_s", "train_spike_rate"]
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in results:
            for e in r["epochs"]:
                w.writerow({"method": r["method"], "seed": r["seed"], **e})
    with open(paths[2], "w") as f:
        json.dump({"meta": meta or {}, "results": results}, f, indent=1, default=str)
    paths[3].write_text(markdown(results, meta))
    return paths + plot_results(results, out)


def _fmt(v, digits: int = 4) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _mean_std(values: list[float], digits: int) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "nan"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(results: list[dict], meta: dict | None = None) -> str:
    """The Markdown report: settings, one row per run, a per-method summary and the figures."""
    lines = ["# Method comparison", ""]
    for k, v in (meta or {}).items():
        lines.append(f"- {k}: {v}")
    kinds = sorted({r["memory_measure"] for r in results})
    lines += [
        f"- peak memory (MiB): {', '.join(kinds) or 'n/a'} while training; the test evaluation between "
        "epochs is excluded, and a one-batch warm-up runs before each measured run",
        "- accuracy, spike rate and pruning are evaluated on the test set with lfp-snn's engine",
        "- sign changed: share of weights whose sign differs from the initial weights",
        "- prune p%: test accuracy after zeroing the p% smallest |w| in every Linear/Conv layer",
        "",
        "## Runs",
        "",
    ]
    fractions = sorted({f for r in results for f in r["pruning"]})
    head = [
        "method",
        "seed",
        "test acc",
        "best acc",
        "s/epoch",
        "peak MiB",
        "spike rate",
        "sign changed",
        *[f"prune {_pct(f)}%" for f in fractions],
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [
            r["method"],
            str(r["seed"]),
            _fmt(r["test_accuracy"]),
            _fmt(r["best_test_accuracy"]),
            _fmt(r["epoch_time_s"], 3),
            _fmt(r["peak_memory_mib"], 1),
            _fmt(r["spike_rate"]),
            _fmt(r["sign_changed"]),
            *[_fmt(r["pruning"].get(f, math.nan)) for f in fractions],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per method (mean ± std over seeds)", ""]
    head = ["method", "seeds", "test acc", "s/epoch", "peak MiB", "spike rate", "sign changed", "prune 90%"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, rs in _by_method(results).items():
        cells = [
            method,
            str(len(rs)),
            _mean_std([r["test_accuracy"] for r in rs], 4),
            _mean_std([r["epoch_time_s"] for r in rs], 3),
            _mean_std([r["peak_memory_mib"] for r in rs], 1),
            _mean_std([r["spike_rate"] for r in rs], 4),
            _mean_std([r["sign_changed"] for r in rs], 4),
            _mean_std([r["pruning"].get(0.9, math.nan) for r in rs], 4),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Figures",
        "",
        "![test accuracy per epoch](accuracy.png)",
        "",
        "![time per epoch](time.png)",
        "",
        "![accuracy under magnitude pruning](pruning.png)",
        "",
        "![memory, spike rate, sign changes](summary.png)",
        "",
    ]
    return "\n".join(lines)


def _by_method(results: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results:
        out.setdefault(r["method"], []).append(r)
    return out


def plot_results(results: list[dict], out_dir: str | os.PathLike) -> list[Path]:
    """accuracy.png, time.png, pruning.png and summary.png (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = Path(out_dir)
    groups = _by_method(results)
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(groups)}
    paths = []

    def per_epoch(key: str, ylabel: str, title: str, file: str) -> None:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for method, rs in groups.items():
            for r in rs:
                xs = [e["epoch"] for e in r["epochs"]]
                ax.plot(xs, [e[key] for e in r["epochs"]], color=colors[method], alpha=0.3, lw=1)
            mean = _mean_curve([[e[key] for e in r["epochs"]] for r in rs])
            ax.plot(range(1, len(mean) + 1), mean, color=colors[method], lw=2, marker="o", ms=4, label=method)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / file)
        plt.close(fig)
        paths.append(out / file)

    seeds = sorted({r["seed"] for r in results})
    note = f" (mean of seeds {seeds}; thin: single seeds)" if len(seeds) > 1 else f" (seed {seeds[0]})"
    per_epoch("test_accuracy", "test accuracy", "Test accuracy per epoch" + note, "accuracy.png")
    per_epoch("time_s", "seconds", "Training wall time per epoch" + note, "time.png")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, rs in groups.items():
        fr = sorted(rs[0]["pruning"])
        acc = [[r["pruning"][f] for f in fr] for r in rs]
        mean = [statistics.fmean(col) for col in zip(*acc)]
        err = [statistics.stdev(col) if len(col) > 1 else 0.0 for col in zip(*acc)]
        ax.errorbar(
            [100 * f for f in fr], mean, yerr=err, color=colors[method], marker="o", ms=4, lw=2, capsize=3
        )
        ax.plot([], [], color=colors[method], lw=2, label=method)
    ax.set_xlabel("weights removed per layer by |w| (%)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy under magnitude pruning")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pruning.png")
    plt.close(fig)
    paths.append(out / "pruning.png")

    kinds = sorted({r["memory_measure"] for r in results})
    panels = [
        ("peak_memory_mib", f"peak memory (MiB)\n{', '.join(kinds)}"),
        ("spike_rate", "mean spike rate\n(test set, spikes / neuron / step)"),
        ("sign_changed", "weights with changed sign\n(share of all weights)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), dpi=120)
    names = list(groups)
    for ax, (key, label) in zip(axes, panels):
        vals = [[r[key] for r in groups[m]] for m in names]
        means = [statistics.fmean(v) for v in vals]
        errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(range(len(names)), means, yerr=errs, color=[colors[m] for m in names], capsize=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=25, ha="right")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "summary.png")
    plt.close(fig)
    paths.append(out / "summary.png")
    return paths


def _mean_curve(curves: list[list[float]]) -> list[float]:
    n = min((len(c) for c in curves), default=0)
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]


# --------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------


def add_commands(subparsers) -> None:
    """Add the ``compare`` subcommand (for ``lfp_snn.cli.COMMAND_MODULES``)."""
    from .cli import add_train_arguments

    p = subparsers.add_parser(
        "compare",
        help="train several methods (LFP rules, BPTT baselines) on the same data and seeds; write a table and plots",
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
        "method such as bptt-snntorch, bptt-norse",
    )
    p.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    p.add_argument("--out", default="compare-out", help="output folder (default: compare-out)")
    p.add_argument(
        "--prune",
        type=float,
        nargs="+",
        default=[100 * f for f in PRUNE_FRACTIONS],
        help="percentages of weights to prune per layer (default: 0 25 50 75 90 95)",
    )
    p.add_argument(
        "--lr-for",
        action="append",
        default=[],
        metavar="METHOD=LR",
        help="learning rate for one method (repeatable); the others use --lr",
    )
    p.set_defaults(func=cmd_compare)


def _lr_overrides(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not out.get(name, 0) > 0:
            raise ValueError(f"--lr-for expects METHOD=LR with LR > 0, got {item!r}")
    return out


def cmd_compare(a: argparse.Namespace) -> int:
    from .cli import configs_from_args, load_any, resolve_device

    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    try:
        check_methods(a.methods)
    except ImportError as e:
        raise SystemExit(f"error: {e}") from None
    lrs = _lr_overrides(a.lr_for)
    unknown = sorted(set(lrs) - set(a.methods))
    if unknown:
        raise ValueError(f"--lr-for names methods that are not compared: {unknown}")
    prune = [p / 100 for p in a.prune]
    train, test = load_any(a.data, a.steps, a.download)
    if a.subset:
        train = train.subset(a.subset, seed=a.seeds[0])
    if a.test_subset:
        test = test.subset(a.test_subset, seed=a.seeds[0])

    def make_configs(name: str, method: str, rule: str, seed: int):
        ns = argparse.Namespace(**vars(a))
        ns.method, ns.rule, ns.seed, ns.no_progress = method, rule, seed, True
        ns.lr = lrs.get(name, a.lr)
        return configs_from_args(ns, train)

    spiking = is_spiking_arch(a.arch)
    meta = {
        "data": f"{a.data} ({len(train)} train / {len(test)} test)",
        "model": f"{a.arch}"
        + (f", T={a.steps}, β={a.beta}, θ={a.threshold}, reset={a.reset}" if spiking else ""),
        "reset delay / encoder": f"{a.reset_delay} / {a.encoder}" if spiking else "n/a",
        "training": f"{a.epochs} epochs, batch {a.batch_size}, {a.optimizer} lr {a.lr}"
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
    results = compare(a.methods, a.seeds, train, test, make_configs, a.out, device, prune, meta=meta)
    for r in results:
        print(
            f"result {r['method']} seed {r['seed']}: test acc {r['test_accuracy']:.4f}  "
            f"{r['epoch_time_s']:.2f}s/epoch  peak {r['peak_memory_mib']:.1f} MiB",
            flush=True,
        )
    print(
        f"wrote {a.out}/results.md, results.csv, epochs.csv, results.json, accuracy.png, time.png, pruning.png, "
        f"summary.png and runs/"
    )
    return 0
