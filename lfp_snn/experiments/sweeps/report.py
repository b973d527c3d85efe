"""The report of a sweep: tables (Markdown, CSV) and heatmaps of the final test accuracy over β × T."""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

CSV_COLUMNS = (
    "key",
    "method",
    "beta",
    "steps",
    "seed",
    "lr",
    "arch",
    "data",
    "epochs",
    "final_test_accuracy",
    "scored_on",
    "final_train_accuracy",
    "wall_s",
    "mean_epoch_s",
)


def summarize(records: Iterable[dict]) -> list[dict]:
    """One flat row per trial (see CSV_COLUMNS, plus ``spike_rate/<layer>`` of the last epoch)."""
    rows = []
    for r in records:
        cfg, info, hist = r["config"], r["info"], r["history"]
        row = {
            "key": r["key"],
            "method": cfg["method"],
            "beta": float(cfg["model"]["beta"]),
            "steps": int(cfg["train"]["steps"]),
            "seed": int(cfg["train"]["seed"]),
            "lr": float(cfg["train"]["lr"]),
            "arch": cfg["model"]["arch"],
            "data": cfg["data"]["spec"],
            "epochs": len(hist),
            "final_test_accuracy": float(info["final_test_accuracy"]),
            "scored_on": info.get("scored_on", "test"),
            "final_train_accuracy": float(info.get("final_train_accuracy", math.nan)),
            "wall_s": float(info.get("wall_s", math.nan)),
            "mean_epoch_s": statistics.fmean(h["time_s"] for h in hist) if hist else math.nan,
        }
        if hist:
            row.update({k: v for k, v in hist[-1].items() if k.startswith("spike_rate/")})
        rows.append(row)
    order = {m: i for i, m in enumerate(dict.fromkeys(row["method"] for row in rows))}
    rows.sort(key=lambda x: (order[x["method"]], x["lr"], x["beta"], x["steps"], x["seed"]))
    return rows


def _panels(rows: list[dict]) -> dict[tuple[str, float], dict[tuple[float, int], list[float]]]:
    """{(method, lr): {(beta, steps): [final accuracy per seed]}} in order of appearance."""
    out: dict = {}
    for row in rows:
        cell = out.setdefault((row["method"], row["lr"]), {}).setdefault((row["beta"], row["steps"]), [])
        cell.append(row["final_test_accuracy"])
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _cell(values: list[float]) -> str:
    mean, std = _mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f}" + ("" if math.isnan(std) else f" ± {100 * std:.1f}")


def markdown(rows: list[dict], betas: Sequence[float], steps: Sequence[int], meta: dict | None = None) -> str:
    """Tables of final test accuracy (%) over β (rows) × T (columns), one per method (and lr)."""
    panels = _panels(rows)
    seeds = sorted({r["seed"] for r in rows})
    lines = ["# β × T sweep", ""]
    for k, v in (meta or {}).items():
        lines.append(f"- {k}: {v}")
    lines += [
        "- cells: final test accuracy (%) after the last epoch"
        + (f", mean ± std over seeds {seeds}" if len(seeds) > 1 else f", seed {seeds[0]}" if seeds else ""),
        "- –: trial missing (not run yet, or failed)",
        "",
    ]
    multi_lr = len({lr for _, lr in panels}) > 1
    for (method, lr), cells in panels.items():
        lines += [f"## {method}" + (f", lr {lr:g}" if multi_lr else ""), ""]
        lines += ["| β \\ T | " + " | ".join(str(t) for t in steps) + " |", "|---|" + "---|" * len(steps)]
        for b in betas:
            lines.append(f"| {b:g} | " + " | ".join(_cell(cells.get((b, t), [])) for t in steps) + " |")
        lines.append("")
    lines += ["![final test accuracy over β and T](heatmap.png)", ""]
    return "\n".join(lines)


def plot_heatmaps(
    rows: list[dict], betas: Sequence[float], steps: Sequence[int], path: str | os.PathLike, title: str = ""
) -> Path:
    """One heatmap of final test accuracy (%) over (β, T) per method (columns) and learning rate (rows),
    annotated cells (mean over seeds; ± std when there are several), one colour scale for all panels."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = _panels(rows)
    methods = list(dict.fromkeys(m for m, _ in panels))
    lrs = sorted({lr for _, lr in panels})
    grids = {
        key: np.array([[_mean_std(cells.get((b, t), []))[0] for t in steps] for b in betas]) * 100
        for key, cells in panels.items()
    }
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()] or [np.array([])])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    if vmax - vmin < 1:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    nr, nc = len(lrs), max(len(methods), 1)
    w = 1.0 + 0.62 * len(steps)
    h = 0.9 + 0.5 * len(betas)
    fig, axes = plt.subplots(
        nr, nc, figsize=(w * nc + 1.4, h * nr + 0.9), dpi=130, squeeze=False, constrained_layout=True
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")  # missing cells in grey
    seeds = sorted({r["seed"] for r in rows})
    image = None
    for i, lr in enumerate(lrs):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            key = (method, lr)
            if key not in panels:
                ax.axis("off")
                continue
            g = grids[key]
            image = ax.imshow(
                np.ma.masked_invalid(g), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto"
            )
            for bi, b in enumerate(betas):
                for ti, t in enumerate(steps):
                    vals = panels[key].get((b, t), [])
                    mean, std = _mean_std(vals)
                    if math.isnan(mean):
                        ax.text(ti, bi, "–", ha="center", va="center", color="#555555", fontsize=10)
                        continue
                    frac = (100 * mean - vmin) / (vmax - vmin)
                    color = "black" if frac > 0.55 else "white"
                    text = f"{100 * mean:.1f}" + ("" if math.isnan(std) else f"\n±{100 * std:.1f}")
                    ax.text(
                        ti, bi, text, ha="center", va="center", color=color, fontsize=9, fontweight="bold"
                    )
            ax.set_xticks(range(len(steps)), [str(t) for t in steps])
            ax.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
            ax.set_xlabel("time steps T")
            if j == 0:
                ax.set_ylabel("membrane decay β")
            ax.set_title(method + (f"\nlr {lr:g}" if len(lrs) > 1 else ""), fontsize=10)
    if image is not None:
        cb = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
        seed_note = f"mean over seeds {seeds}" if len(seeds) > 1 else f"seed {seeds[0]}"
        cb.set_label(f"final test accuracy (%)\n{seed_note}")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    records: Iterable[dict],
    out_dir: str | os.PathLike,
    betas: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    meta: dict | None = None,
    title: str = "",
) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and ``heatmap.png`` to ``out_dir``; return their paths. The β and
    T axes default to the values present in ``records``."""
    rows = summarize(records)
    betas = sorted(set(betas if betas is not None else (r["beta"] for r in rows)))
    steps = sorted(set(steps if steps is not None else (r["steps"] for r in rows)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in rows for k in r if k not in CSV_COLUMNS})
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*CSV_COLUMNS, *extra], restval="")
        w.writeheader()
        w.writerows(rows)
    (out / "results.md").write_text(markdown(rows, betas, steps, meta))
    paths = [out / "results.csv", out / "results.md"]
    if rows:
        paths.append(plot_heatmaps(rows, betas, steps, out / "heatmap.png", title))
    return paths
