"""Ablation: which option closes LFP's gap to surrogate-gradient BPTT at small β and short T.

    .venv/bin/python benchmarks/ablation_small_beta.py --out docs/small_beta_ablation.md

trains the spiking MLP (spiking-small: 64-256-10 on digits, 784-256-10 on a Fashion-MNIST subset) for every
data set × β × T × variant × seed with the :class:`lfp_snn.training.Trainer` and writes one Markdown table per
data set (final test accuracy, mean ± std over seeds, and the share of hidden neurons that never spiked in
the last training epoch, the Trainer's ``silent/<layer>``). Variants:

- ``LFP-ε``: the reference rule;
- ``noise``: Gaussian noise on the inputs of every parametric layer while training, decayed to zero by a
  cosine schedule (``input_noise``, ``noise_schedule``);
- ``membrane``: the membrane-aware ε rule (``membrane_share`` λ; :mod:`lfp_snn.rules.membrane_share`);
- ``homeostasis``: per-neuron threshold homeostasis (``homeostasis`` η; :mod:`lfp_snn.homeostasis`);
- ``membrane+homeostasis``: both;
- ``BPTT``: snntorch BPTT with the fast-sigmoid surrogate (``method="bptt-snntorch"``).

For a given seed every variant starts from the same initial weights and sees the same batches (the Trainer
seeds both from ``seed``). Trials run in ``--jobs`` processes with one torch thread each; every finished
trial is appended to a JSON-lines file next to ``--out`` (``--results``), and a rerun skips the trials already
there, so an interrupted run resumes (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

VARIANTS: dict[str, dict] = {
    "LFP-ε": {},
    "noise": {"input_noise": 0.02, "noise_schedule": "cosine"},
    "membrane": {"membrane_share": 0.3},
    "homeostasis": {"homeostasis": 0.05, "homeostasis_target": 0.005},
    "membrane+homeostasis": {"membrane_share": 0.3, "homeostasis": 0.05, "homeostasis_target": 0.005},
    "BPTT": {"method": "bptt-snntorch"},
}
DATASETS = {"digits": "digits", "fmnist": "fashion-mnist"}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


@lru_cache(maxsize=4)
def _data(name: str, train_n: int | None, test_n: int | None):
    from lfp_snn.data import load_dataset

    train, test = load_dataset(DATASETS[name])
    if train_n:
        train = train.subset(train_n, seed=0)
    if test_n:
        test = test.subset(test_n, seed=0)
    return train, test


def run_trial(trial: dict) -> dict:
    """Train one configuration; return the trial with its results."""
    import torch

    from lfp_snn.models import ModelConfig
    from lfp_snn.training import TrainConfig, Trainer

    torch.set_num_threads(1)
    train, test = _data(trial["data"], trial["train_n"], trial["test_n"])
    mc = ModelConfig(
        arch="spiking-small",
        input_shape=tuple(train.x.shape[1:]),
        classes=train.classes,
        hidden=(trial["hidden"],),
        beta=trial["beta"],
    )
    tc = TrainConfig(
        **{
            "lr": trial["lr"],
            "epochs": trial["epochs"],
            "batch_size": trial["batch_size"],
            "steps": trial["steps"],
            "seed": trial["seed"],
            "progress": False,
            **trial["overrides"],
        }
    )
    t0 = time.perf_counter()
    history = Trainer(mc, tc).fit(train, test)
    last = history[-1]
    hidden = "2"  # spiking-small: Flatten, Linear, LIF (2), Linear, LIF (4)
    return {
        **trial,
        "n_train": len(train),
        "n_test": len(test),
        "test_accuracy": last["test_accuracy"],
        "best_test_accuracy": max(r["test_accuracy"] for r in history),
        "silent_hidden": last[f"silent/{hidden}"],
        "silent_hidden_epoch1": history[0][f"silent/{hidden}"],
        "spike_rate_hidden": last[f"spike_rate/{hidden}"],
        "curve": [round(r["test_accuracy"], 4) for r in history],
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _key(t: dict) -> tuple:
    """What identifies a trial: a variant whose settings change is run again."""
    settings = json.dumps(t.get("overrides"), sort_keys=True)
    return (
        t["data"],
        t["beta"],
        t["steps"],
        t["variant"],
        settings,
        t["seed"],
        t["epochs"],
        t["train_n"],
        t["lr"],
    )


def make_trials(a: argparse.Namespace) -> list[dict]:
    trials = []
    for data in a.datasets:
        fm = data == "fmnist"
        for beta in a.betas:
            for steps in a.steps:
                for variant in a.variants:
                    for seed in a.seeds:
                        trials.append(
                            {
                                "data": data,
                                "train_n": a.fmnist_train if fm else a.digits_train,
                                "test_n": a.fmnist_test if fm else None,
                                "hidden": a.hidden,
                                "beta": beta,
                                "steps": steps,
                                "variant": variant,
                                "overrides": VARIANTS[variant],
                                "seed": seed,
                                "epochs": a.epochs_fmnist if fm else a.epochs_digits,
                                "lr": a.lr,
                                "batch_size": a.batch_size,
                            }
                        )
    # longest first (BPTT and long T), so the two workers finish together
    return sorted(trials, key=lambda t: -(t["steps"] * (2.5 if t["variant"] == "BPTT" else 1) * t["epochs"]))


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_all(trials: list[dict], results_path: Path, jobs: int) -> list[dict]:
    done = {_key(r): r for r in load_results(results_path)}
    todo = [t for t in trials if _key(t) not in done]
    print(
        f"{len(trials)} trials, {len(trials) - len(todo)} already in {results_path}, {len(todo)} to run",
        flush=True,
    )
    results_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def record(r: dict, n: int) -> None:
        done[_key(r)] = r
        with open(results_path, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(
            f"[{n}/{len(todo)} {time.perf_counter() - t0:6.0f}s] {r['data']} β={r['beta']} T={r['steps']} "
            f"{r['variant']:<21} seed {r['seed']}: acc {r['test_accuracy']:.4f} silent {r['silent_hidden']:.2f} "
            f"({r['wall_s']:.0f}s)",
            flush=True,
        )

    if jobs <= 1:
        _init_worker()
        for n, t in enumerate(todo, 1):
            record(run_trial(t), n)
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
            futures = [pool.submit(run_trial, t) for t in todo]
            for n, f in enumerate(as_completed(futures), 1):
                record(f.result(), n)
    return [done[_key(t)] for t in trials]


def _mean_sd(v: list[float], scale: float = 100.0) -> str:
    if len(v) == 1:
        return f"{scale * v[0]:.1f}"
    return f"{scale * statistics.mean(v):.1f} ± {scale * statistics.stdev(v):.1f}"


def markdown(results: list[dict], a: argparse.Namespace, wall_s: float) -> str:
    variants = [v for v in VARIANTS if v in a.variants]
    sizes = {r["data"]: f"{r['n_train']} train / {r['n_test']} test" for r in results}
    lines = [
        "# Small-β ablation: keeping every neuron learning",
        "",
        "Produced by `.venv/bin/python benchmarks/ablation_small_beta.py "
        + " ".join(a.argv)
        + "`; raw trials in "
        f"`{Path(a.results).name}`. See docs/small_beta.md for the options and what they mean.",
        "",
        f"Spiking MLP `spiking-small` (hidden {a.hidden}, LIF subtract reset with delay, θ = 1), constant input "
        f"encoding, sequence reward (Eq. A.16) for LFP, cross-entropy on spike counts for BPTT; Adam lr {a.lr}, "
        f"batch {a.batch_size}; digits: {a.epochs_digits} epochs on scikit-learn's 8×8 digits "
        f"({sizes.get('digits', '?')}); fmnist: {a.epochs_fmnist} epochs on a stratified Fashion-MNIST subset "
        f"({sizes.get('fmnist', '?')}, 784 inputs). Seeds {', '.join(map(str, a.seeds))}: same initial weights and "
        "batches for every variant of a seed. Cells: final-epoch test accuracy in %, mean ± std over seeds, and "
        "in brackets the share of the 256 hidden neurons that never spiked during the last training epoch.",
        "",
        "Variants: " + "; ".join(f"**{v}** `{VARIANTS[v] or 'reference'}`" for v in variants) + ".",
        "",
    ]
    by = {}
    for r in results:
        by.setdefault((r["data"], r["beta"], r["steps"], r["variant"]), []).append(r)
    lfp_variants = [v for v in variants if v not in ("BPTT", "LFP-ε")]
    for data in a.datasets:
        lines += [f"## {data}", ""]
        head = ["β", "T", *variants]
        if "BPTT" in variants:
            head.append("best option − BPTT")
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for beta in a.betas:
            for steps in a.steps:
                row = [f"{beta}", f"{steps}"]
                means = {}
                for v in variants:
                    rs = by.get((data, beta, steps, v), [])
                    if not rs:
                        row.append("–")
                        continue
                    acc = [r["test_accuracy"] for r in rs]
                    silent = statistics.mean(r["silent_hidden"] for r in rs)
                    means[v] = statistics.mean(acc)
                    row.append(f"{_mean_sd(acc)} ({100 * silent:.0f}%)")
                if "BPTT" in variants:
                    opts = {v: means[v] for v in lfp_variants if v in means}
                    if opts and "BPTT" in means:
                        best = max(opts, key=opts.get)
                        row.append(f"{100 * (opts[best] - means['BPTT']):+.1f} ({best})")
                    else:
                        row.append("–")
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "## Mean over all cells",
        "",
        "| variant | " + " | ".join(a.datasets) + " |",
        "|---|" + "---|" * len(a.datasets),
    ]
    for v in variants:
        cells = []
        for data in a.datasets:
            acc = [r["test_accuracy"] for r in results if r["data"] == data and r["variant"] == v]
            cells.append(f"{100 * statistics.mean(acc):.1f}" if acc else "–")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines.append("")
    total = sum(r["wall_s"] for r in results)
    lines.append(
        f"Compute: {len(results)} trials, {total / 60:.0f} min of training in all ({platform.machine()}, "
        f"{a.jobs} processes × 1 torch thread; this invocation took {wall_s / 60:.0f} min, trials already in the "
        "log are not rerun)."
    )
    lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="docs/small_beta_ablation.md", help="Markdown table to write")
    p.add_argument("--results", default=None, help="JSON-lines trial log (default: --out with .jsonl)")
    p.add_argument("--fresh", action="store_true", help="ignore the trials already in --results")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--betas", nargs="+", type=float, default=[0.3, 0.6, 0.9])
    p.add_argument("--steps", nargs="+", type=int, default=[5, 25])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs-digits", type=int, default=30)
    p.add_argument("--epochs-fmnist", type=int, default=15)
    p.add_argument(
        "--digits-train", type=int, default=None, help="digits training subset (default: all 1347)"
    )
    p.add_argument("--fmnist-train", type=int, default=2000)
    p.add_argument("--fmnist-test", type=int, default=500)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--jobs", type=int, default=2, help="parallel processes, one torch thread each")
    a = p.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    a.results = a.results or str(Path(a.out).with_suffix(".jsonl"))
    return a


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    a = parse_args(argv)
    results_path = Path(a.results)
    if a.fresh and results_path.exists():
        results_path.unlink()
    t0 = time.perf_counter()
    results = run_all(make_trials(a), results_path, a.jobs)
    text = markdown(results, a, time.perf_counter() - t0)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
