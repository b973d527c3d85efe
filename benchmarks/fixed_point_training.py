"""Integer-in-the-loop LFP against quantisation after float training, on the FPGA bundle's integer network.

    .venv/bin/python benchmarks/fixed_point_training.py --out docs/fixed_point_training.md

For every data set × seed it trains the spiking MLP (``spiking-small``: 64-256-10 on digits, 784-256-10 on a
Fashion-MNIST subset; ``--datasets digits-lenet``: the spiking LeNet on digits) with rate-coded input (``encoder="rate"``, T = 10) three times with the
:class:`lfp_snn.training.Trainer`: in float, and in the loop with 8-bit and with 4-bit weights (16-bit
membranes, decay ``multiply`` with 8 fraction bits, power-of-two scales: ``lfp-snn train --weight-bits W``).
A fourth run trains in the loop with 4-bit weights and ``scale="mse"`` (each layer's power of two with the
least squared quantisation error, which saturates the largest weights). Every model is then scored on one fixed rate-coded draw of the test set (the same spikes for all):

- ``float``: the float model (the engine's float forward);
- ``after W``: the float run exported with ``export_fpga(..., weight_bits=W)`` (and ``scale="mse"`` for the
  ``mse`` column) and run by the bundle's integer simulator (``simulate_bundle``), i.e. quantised after
  training;
- ``in the loop W``: the run trained with ``weight_bits=W``, exported from its folder (the formats come from
  its config) and run by ``simulate_bundle``; the script checks that this equals the accuracy of the
  trainer's own integer forward on the same spikes, exactly.

Trials run in ``--jobs`` processes with one torch thread each; each finished trial is appended to a
JSON-lines file (``--results``), and a rerun skips trials already there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DATASETS = {
    "digits": dict(data="digits", subset=None, test_subset=None, epochs=10, arch="spiking-small"),
    "fashion": dict(data="fashion-mnist", subset=5000, test_subset=1000, epochs=3, arch="spiking-small"),
    "digits-lenet": dict(data="digits", subset=None, test_subset=None, epochs=10, arch="spiking-lenet"),
}
VARIANTS = ("float", "loop8", "loop4", "loop4mse")
BITS = {"float": (None, "pow2"), "loop8": (8, "pow2"), "loop4": (4, "pow2"), "loop4mse": (4, "mse")}
STEPS = 10
TEST_SEED = 12345  # the one rate-coded draw of the test set that every model is scored on


def _data(name: str, seed: int):
    from lfp_snn.data import load_dataset

    spec = DATASETS[name]
    train, test = load_dataset(spec["data"])
    if spec["subset"]:
        train = train.subset(spec["subset"], seed=seed)
    if spec["test_subset"]:
        test = test.subset(spec["test_subset"], seed=0)  # the same test images for every seed
    return train, test


def trial(name: str, seed: int, variant: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from lfp_snn.encoders.static import rate_encode
    from lfp_snn.engine import run
    from lfp_snn.export import export_fpga, simulate_bundle
    from lfp_snn.models import ModelConfig
    from lfp_snn.training import TrainConfig, Trainer

    warnings.simplefilter("ignore")
    spec = DATASETS[name]
    train, test = _data(name, seed)
    x = rate_encode(test.x, STEPS, generator=torch.Generator().manual_seed(TEST_SEED))
    y = test.y.numpy()
    bits, scale = BITS[variant]
    mc = ModelConfig(arch=spec["arch"], input_shape=tuple(train.x.shape[1:]))
    tc = TrainConfig(
        epochs=spec["epochs"],
        seed=seed,
        encoder="rate",
        steps=STEPS,
        weight_bits=bits,
        scale=scale,
        progress=False,
    )
    out = {"dataset": name, "seed": seed, "variant": variant}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer = Trainer(mc, tc, out_dir=Path(tmp) / "run")
        history = trainer.fit(train, test)
        out["train_s"] = round(time.perf_counter() - t0, 1)
        out["reported_test_accuracy"] = history[-1]["test_accuracy"]

        def bundle_accuracy(**formats) -> float:
            folder = Path(tempfile.mkdtemp(dir=tmp))
            b = export_fpga(Path(tmp) / "run", folder / "b", samples=1, steps=2, **formats)
            return float((simulate_bundle(b, x)["counts"].argmax(-1) == y).mean())

        model = trainer.model.eval()
        if bits is None:
            with torch.no_grad():
                out["float"] = float((run(model, x).sum(0).argmax(-1).numpy() == y).mean())
            out["after8"] = bundle_accuracy(weight_bits=8)
            out["after4"] = bundle_accuracy(weight_bits=4)
            out["after4mse"] = bundle_accuracy(weight_bits=4, scale="mse")
        else:
            acc = bundle_accuracy()
            own = run(model, x, plan=trainer.eval_plan).sum(0).argmax(-1).numpy()
            assert float((own == y).mean()) == acc, "the in-the-loop forward and the bundle disagree"
            out[variant] = acc
    return out


def _load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(values: list[float]) -> str:
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.1f}"
    return f"{statistics.mean(pct):.1f} ± {statistics.stdev(pct):.1f}"


def table(rows: list[dict]) -> str:
    cols = [("float", "float"), ("after8", "8-bit after training"), ("loop8", "8-bit in the loop"),
            ("after4", "4-bit after training"), ("loop4", "4-bit in the loop"),
            ("after4mse", "4-bit mse after training"), ("loop4mse", "4-bit mse in the loop")]  # fmt: skip
    lines = [
        "| data set, model (epochs, seeds) | "
        + " | ".join(c[1] for c in cols)
        + " | 4-bit mse in the loop − float |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for name, spec in DATASETS.items():
        mine = [r for r in rows if r["dataset"] == name and all(k in r for k, _ in cols)]
        mine.sort(key=lambda r: r["seed"])
        if not mine:
            continue
        got = {k: [r[k] for r in mine] for k, _ in cols}
        gap = [100 * (a - b) for a, b in zip(got["loop4mse"], got["float"])]
        gap_s = f"{statistics.mean(gap):+.1f}" + (f" ± {statistics.stdev(gap):.1f}" if len(gap) > 1 else "")
        what = f"{spec['data']}, {spec['arch']} ({spec['epochs']}, {len(mine)})"
        lines.append(f"| {what} | " + " | ".join(_fmt(got[k]) for k, _ in cols) + f" | {gap_s} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/fixed_point_training.md")
    p.add_argument("--results", default=None, help="JSON lines of finished trials (default: beside --out)")
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion"], choices=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args(argv)
    out = Path(a.out)
    results = Path(a.results) if a.results else out.with_suffix(".jsonl")
    done = {(r["dataset"], r["seed"], r["variant"]) for r in _load(results)}
    todo = [(d, s, v) for d in a.datasets for s in a.seeds for v in VARIANTS if (d, s, v) not in done]
    with ProcessPoolExecutor(a.jobs) as pool:
        for r in pool.map(trial, *zip(*todo)) if todo else []:
            with open(results, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
    rows = _load(results)
    merged: dict = {}
    for r in rows:
        merged.setdefault((r["dataset"], r["seed"]), {"dataset": r["dataset"], "seed": r["seed"]}).update(r)
    text = table(list(merged.values()))
    out.write_text(
        "# Integer-in-the-loop LFP vs quantisation after training\n\n"
        "Written by `benchmarks/fixed_point_training.py` (test accuracy in %, mean ± std over the seeds, all on one "
        "rate-coded draw of the test set).\n\n" + text + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
