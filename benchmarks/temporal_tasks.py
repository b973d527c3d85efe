"""Sequential images (each image row one time step): feed-forward LIF, CubaLIF, RecurrentLIF and AdaptiveLIF
networks trained by LFP, and the recurrent network trained by snntorch BPTT, with the same seeds, data,
architecture (rows -> hidden -> 10) and optimiser. Prints a Markdown table (test accuracy, time per epoch)
and writes the rows as JSON.

    .venv/bin/python benchmarks/temporal_tasks.py                       # digits and a Fashion-MNIST subset
    .venv/bin/python benchmarks/temporal_tasks.py --data sequential-digits --epochs 5 --seeds 0 1 2

Every run uses ``TrainConfig``'s defaults (Adam, batch size). With ``--tune-lr`` each row picks its learning
rate from the given ones by the accuracy on a validation split (a seeded stratified 20% of the training
samples; the test split is never looked at), then trains on all its training samples with that rate for every
seed; without it every row uses ``--lr`` (default: TrainConfig's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROWS = [
    ("LIF (feed-forward)", "lif", "lfp"),
    ("CubaLIF", "cuba", "lfp"),
    ("AdaptiveLIF", "adaptive", "lfp"),
    ("RecurrentLIF", "recurrent", "lfp"),
    ("RecurrentLIF, snntorch BPTT (RLeaky)", "recurrent", "bptt-snntorch"),
]


def run(data, neuron, method, seed, epochs, hidden, subset, test_subset, lr, threads, validate=False):
    import torch

    from lfp_snn.data import load_data
    from lfp_snn.models import ModelConfig
    from lfp_snn.training import TrainConfig, Trainer

    torch.set_num_threads(threads)
    train, test = load_data(data, steps=None)
    if subset:
        train = train.subset(subset, seed=0 if validate else seed)
    if validate:  # tuning: fit on 80% of the training samples, score on the other 20%; no test data
        train, test = train.holdout(0.2, seed=0)
    elif test_subset:
        test = test.subset(test_subset, seed=seed)
    mc = ModelConfig(
        arch="spiking-small",
        input_shape=train.input_shape,
        classes=train.classes,
        hidden=(hidden,),
        neuron=neuron,
    )
    kw = {} if lr is None else {"lr": lr}
    tc = TrainConfig(method=method, epochs=epochs, seed=seed, progress=False, **kw)
    t0 = time.perf_counter()
    history = Trainer(mc, tc).fit(train, test)
    wall = time.perf_counter() - t0
    return {
        "data": data,
        "neuron": neuron,
        "method": method,
        "seed": seed,
        "test_accuracy": history[-1]["test_accuracy"],
        "epoch_s": statistics.median(h["time_s"] for h in history),
        "wall_s": wall,
        "train": len(train),
        "test": len(test),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["sequential-digits", "sequential-fashion-mnist"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--subset", type=int, default=10000, help="training samples (stratified; 0: all)")
    p.add_argument("--test-subset", type=int, default=2000, help="test samples (stratified; 0: all)")
    p.add_argument("--lr", type=float, default=None, help="shared by every method (default: TrainConfig's)")
    p.add_argument(
        "--tune-lr",
        type=float,
        nargs="+",
        default=None,
        help="pick each row's lr from these by the accuracy on a validation split of the training samples",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/temporal_tasks.json")
    a = p.parse_args(argv)
    rows = []
    for data in a.data:
        small = data == "sequential-digits"
        sub, test_sub = (None if small else a.subset or None), (None if small else a.test_subset or None)
        for label, neuron, method in ROWS:
            lr, scores = a.lr, None
            if a.tune_lr:
                scores = {}
                for cand in a.tune_lr:
                    v = run(
                        data, neuron, method, 0, a.epochs, a.hidden, sub, None, cand, a.threads, validate=True
                    )
                    scores[cand] = v["test_accuracy"]  # here: the validation split's accuracy
                    print(
                        f"  tune {data} {label} lr {cand:g}: validation {scores[cand]:.4f}", file=sys.stderr
                    )
                lr = max(scores, key=scores.get)
            for seed in a.seeds:
                r = run(data, neuron, method, seed, a.epochs, a.hidden, sub, test_sub, lr, a.threads)
                r["label"], r["lr"], r["validation"] = label, lr, scores
                rows.append(r)
                print(
                    f"  {data} {label} seed {seed}: {r['test_accuracy']:.4f} ({r['epoch_s']:.1f} s/epoch)",
                    file=sys.stderr,
                    flush=True,
                )
    print("| data | network, training | lr | test accuracy (mean ± std over seeds) | s / epoch |")
    print("|---|---|---:|---:|---:|")
    for data in a.data:
        for label, _, _ in ROWS:
            sel = [r for r in rows if r["data"] == data and r["label"] == label]
            accs = [r["test_accuracy"] for r in sel]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            n = f"{sel[0]['train']} train / {sel[0]['test']} test"
            print(
                f"| {data} ({n}) | {label} | {sel[0]['lr'] or 'default'} | {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} | "
                f"{statistics.median(r['epoch_s'] for r in sel):.2f} |"
            )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
