"""The comparison's report: results.csv, epochs.csv, results.json, results.md and four PNG figures."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from pathlib import Path

REPORT_FILES = (
    "results.csv",
    "epochs.csv",
    "results.json",
    "results.md",
    "accuracy.png",
    "time.png",
    "pruning.png",
    "summary.png",
)
"""The files :func:`write_report` writes (besides the runs' folders)."""

COLUMNS = (
    "method",
    "seed",
    "lr",
    "beta",
    "validation_accuracy",
    "test_accuracy",
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


EFFICIENCY = (
    ("activation_sparsity", "act. sparsity", 4),
    ("synops_effective_acs", "eff. ACs", 0),
    ("synops_effective_macs", "eff. MACs", 0),
    ("synops_dense", "dense ops", 0),
    ("connection_sparsity", "conn. sparsity", 4),
    ("footprint_bytes", "footprint (B)", 0),
)
"""NeuroBench's metrics in the report: key of the efficiency dict, column name, decimals."""


def flat_row(r: dict) -> dict:
    """A result as one flat row: the scalar columns (``validation_accuracy`` NaN when not tuned), the tuned
    setting as ``tuned`` (``lr=0.001 beta=0.9``; empty when not tuned) and ``prune_<percent>`` accuracies."""
    row = {k: r.get(k, math.nan) for k in COLUMNS}
    row["tuned"] = " ".join(f"{k}={v:g}" for k, v in r.get("tuned", {}).items())
    eff = r.get("efficiency") or {}
    for key, _, _ in EFFICIENCY:
        row[f"nb_{key}"] = eff.get(key, math.nan)
    row["nb_source"] = eff.get("source", "")
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
    lrs = {r["method"]: r["lr"] for r in results}
    lines += [
        f"- peak memory (MiB): {', '.join(kinds) or 'n/a'}, the same measure for every method",
        "- accuracy, spike rate and pruning are evaluated on the test set with lfp-snn's engine",
        "- sign changed: share of weights whose sign differs from the initial weights",
        "- prune p%: test accuracy after zeroing the p% smallest |w| in every Linear/Conv layer",
    ]
    tuned = any("tuned" in r for r in results)
    if tuned:
        lines.append(
            "- each method's setting (lr, and β, clipping or weight decay where listed) was chosen by its "
            "validation accuracy (see Tuning); the test accuracy is the final epoch's"
        )
    elif len(lrs) > 1 and len(set(lrs.values())) == 1:
        lines.append(
            f"- **note: all methods share one learning rate ({next(iter(lrs.values())):g})**; the best one differs "
            "between methods (LFP and BPTT especially), so differences in accuracy may come from it: give each "
            "method its own, chosen on a validation split with --tune-lr LR [LR ...] (or set with --lr-for "
            "METHOD=LR)"
        )
    lines += [
        "",
        "## Runs",
        "",
    ]
    fractions = sorted({f for r in results for f in r["pruning"]})
    head = [
        "method",
        "seed",
        "setting" if tuned else "lr",
        *(["val acc"] if tuned else []),
        "test acc",
        "s/epoch",
        "peak MiB",
        "spike rate",
        "sign changed",
        *[f"prune {_pct(f)}%" for f in fractions],
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        setting = flat_row(r)["tuned"] or f"lr={r['lr']:g}"
        cells = [
            r["method"],
            str(r["seed"]),
            setting if tuned else f"{r['lr']:g}",
            *([_fmt(r.get("validation_accuracy", math.nan))] if tuned else []),
            _fmt(r["test_accuracy"]),
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
    lines += efficiency_section(results)
    if tuned:
        lines += tuning_section(results)
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


def efficiency_section(results: list[dict]) -> list[str]:
    """NeuroBench's efficiency metrics per method (mean ± std over seeds) and where they came from."""
    rows = [r for r in results if r.get("efficiency")]
    if not rows:
        return []
    lines = [
        "",
        "## Efficiency (NeuroBench's metrics on the test set, per sample; mean ± std over seeds)",
        "",
    ]
    head = ["method", *[name for _, name, _ in EFFICIENCY], "source"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, rs in _by_method(rows).items():
        cells = [method]
        for key, _, digits in EFFICIENCY:
            cells.append(_mean_std([float(r["efficiency"][key]) for r in rs], digits))
        cells.append("; ".join(sorted({r["efficiency"]["source"] for r in rs})))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "- act. sparsity: 1 − non-zero outputs / all outputs of the neuron (activation) layers, over steps and "
        "samples; eff. ACs / MACs: synaptic operations with a non-zero input and a non-zero weight, as "
        "accumulates (spike inputs) or multiply-accumulates (real-valued inputs, e.g. the first layer's "
        "pixels); dense ops: all of them; conn. sparsity: zero weights / all weights; footprint: bytes of "
        "parameters and buffers",
    ]
    return lines


def tuning_section(results: list[dict]) -> list[str]:
    """The Markdown section listing every method's tuning trials (validation accuracy per candidate)."""
    lines = ["", "## Tuning (validation split of the training set)", ""]
    for method, rs in _by_method(results).items():
        t = rs[0].get("tuning")
        if t is None:
            continue
        lines.append(
            f"- {method} ({t['fit_size']} fit / {t['validation_size']} validation samples): "
            + ", ".join(
                " ".join(f"{k}={v:g}" for k, v in trial["setting"].items())
                + f" → {trial['validation_accuracy']:.4f}"
                + (" **(chosen)**" if trial["setting"] == t["best"] else "")
                for trial in t["trials"]
            )
        )
    return lines


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
