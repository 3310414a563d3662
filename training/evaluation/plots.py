"""The report's PNG plots (matplotlib's Agg canvas; no pyplot, no global state). Each
``plot_*`` draws one section into ``path`` and returns False (writing nothing) when the section
has nothing to draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.benchmarks import TAGGING_METRICS
from training.evaluation.display import REPRESENTATION_NAMES, fmt
from training.evaluation.recommendation import REPRESENTATIONS
from tvindex.core.records import LEVELS

PLOTS = {
    "retrieval": "retrieval_ndcg.png",
    "recommendation": "recommendation_loo.png",
    "weights": "recommendation_weights.png",
    "tagging": "tagging_agreement.png",
}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _text(value: Any) -> str:
    """Catalogue text for a plot: no mathtext."""
    return str(value).replace("$", r"\$")


def plot_retrieval(ra: dict[str, Any], path: Path) -> bool:
    levels = [lv for lv in LEVELS if ra.get("levels", {}).get(lv, {}).get("n_labels")]
    if not levels:
        return False
    fig = _figure(8.0, 3.4)
    box, hist = fig.subplots(1, 2, width_ratios=[1, 1.3])
    data = [[r["ndcg"] for r in ra["levels"][lv]["per_label"] if r["ndcg"] is not None]
            for lv in levels]
    box.boxplot(data, showmeans=True, widths=0.5)
    box.set_xticks(range(1, len(levels) + 1), levels)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        box.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=8, alpha=0.5,
                    color="tab:blue", zorder=3)
    box.set_ylim(-0.03, 1.03)
    box.set_ylabel(f"nDCG@{ra['k']} per label")
    box.set_title("Retrieval agreement with the reference")
    edges = np.asarray(ra["levels"][levels[0]]["histogram"]["edges"])
    width = (edges[1] - edges[0]) / (len(levels) + 1)
    for j, lv in enumerate(levels):
        counts = ra["levels"][lv]["histogram"]["counts"]
        hist.bar(edges[:-1] + width * (j + 0.5), counts, width=width,
                 label=f"{lv} (mean {fmt(ra['levels'][lv]['mean'], 2)})")
    hist.set_xlim(0, 1)
    hist.set_xlabel(f"nDCG@{ra['k']}")
    hist.set_ylabel("labels")
    hist.legend(fontsize=8, loc="upper left")
    hist.set_title("labels per nDCG bin")
    fig.savefig(path)
    return True


def plot_recommendation(rec: dict[str, Any], path: Path, names: dict[str, str]) -> bool:
    sides = [s for s in ("evaluated", "reference") if rec.get(s, {}).get("available")]
    if not sides:
        return False
    fig = _figure(4.0 * len(sides) + 0.6, 3.8)
    axes = fig.subplots(1, len(sides), squeeze=False)[0]
    metrics = ("precision@1", "mrr", "ndcg")
    for ax, side in zip(axes, sides):
        loo = rec[side]
        reps = [r for r in REPRESENTATIONS if loo["representations"][r]["available"]]
        x = np.arange(len(reps))
        for j, m in enumerate(metrics):
            values = [loo["representations"][r][m] or 0.0 for r in reps]
            bars = ax.bar(x + (j - 1) * 0.26, values, width=0.26, label=m)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.axhline(loo["chance"]["precision@1"], color="grey", ls="--", lw=1,
                   label="chance P@1")
        ax.set_xticks(x, [REPRESENTATION_NAMES[r] for r in reps])
        ax.set_ylim(0, 1.12)
        ax.set_title(_text(f"{names.get(side, side)}: {loo['queries']} episodes, "
                           f"{loo['programmes']} programmes"), fontsize=9)
    axes[0].set_ylabel("own programme, leave one episode out")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8)
    fig.savefig(path)
    return True


def plot_weights(rec: dict[str, Any], path: Path, names: dict[str, str]) -> bool:
    sides = [s for s in ("evaluated", "reference")
             if rec.get(s, {}).get("available") and rec[s].get("weight_sweep")
             and rec[s]["representations"]["embedding"]["available"]]
    if not sides:
        return False
    fig = _figure(5.6, 3.2)
    ax = fig.subplots()
    for side, colour in zip(sides, ("tab:blue", "tab:orange")):
        sweep = [p for p in rec[side]["weight_sweep"] if p["precision@1"] is not None]
        w = [p["embedding_weight"] for p in sweep]
        ax.plot(w, [p["precision@1"] for p in sweep], "-", marker="o", color=colour,
                label=_text(f"P@1, {names.get(side, side)}"))
        ax.plot(w, [p["mrr"] for p in sweep], "--", marker="s", mfc="none", color=colour,
                label=_text(f"MRR, {names.get(side, side)}"))
        configured = rec[side]["weights"]
        total = configured["embedding_weight"] + configured["label_weight"]
        if total > 0:
            ax.axvline(configured["embedding_weight"] / total, color="grey", lw=1, ls=":")
    ax.set_xlabel("embedding weight (label weight = 1 - it); dotted: configured")
    ax.set_ylabel("leave one episode out")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="lower left")
    fig.savefig(path)
    return True


def plot_tagging(ta: dict[str, Any], path: Path) -> bool:
    if not ta.get("available") or not ta.get("runs"):
        return False
    heads = sorted({h for run in ta["runs"] for h in run["heads"]})
    if not heads:
        return False
    series = [(run["name"], run["heads"], None) for run in ta["runs"]]
    if ta.get("prior"):
        series.append(("train prior (no student)", ta["prior"], "..."))
    for setting, figures in (ta.get("thesis") or {}).items():
        series.append((f"thesis, {setting}", figures, "//"))
    fig = _figure(4.2 * len(heads) + 0.4, 4.0)
    axes = fig.subplots(1, len(heads), squeeze=False)[0]
    width = 0.8 / len(series)
    x = np.arange(len(TAGGING_METRICS))
    for ax, head in zip(axes, heads):
        for j, (name, figures, hatch) in enumerate(series):
            values = [(figures.get(head) or {}).get(m) for m in TAGGING_METRICS]
            ax.bar(x - 0.4 + width * (j + 0.5), [v or 0.0 for v in values], width=width,
                   hatch=hatch, label=_text(name), edgecolor="white" if hatch else None)
        ax.set_xticks(x, TAGGING_METRICS)
        ax.set_ylim(0, 1.05)
        ax.set_title(_text(f"head {head}"), fontsize=9)
    axes[0].set_ylabel("agreement with the teacher")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(series), 4),
               fontsize=7)
    fig.savefig(path)
    return True
