"""The retrieval-quality report (issue 8): one JSON file with every figure, and a self-contained
HTML page (``index.html`` beside its PNG plots and ``report.json``).

Sections (metrics in ``search/retrieval_eval.py``):

- **tagging agreement** per head: the student against its teachers on held-out footage, with
  the thesis's figures (from ``bench/distill_report.py``'s JSON);
- **retrieval agreement**: nDCG@10 per label of the evaluated (student-indexed) catalogue's
  shot, episode and programme rankings against the reference (teacher-indexed) catalogue's
  scores; distribution over labels and the worst labels;
- **recommendation quality**, leave-one-episode-out: precision@1, MRR and nDCG of an episode's
  own programme, per representation (embedding, label profile, blend) and over the blend's
  weight, for the evaluated catalogue and the reference;
- **latency** percentiles from the benchmarks' JSON.

A section that cannot be computed says why (``{"available": false, "reason": ...}``); the JSON
never holds NaN or infinity (``None`` instead).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from search.retrieval_eval import (
    REPRESENTATIONS,
    TAGGING_METRICS,
    latency,
    leave_one_episode_out,
    not_available,
    retrieval_agreement,
    tagging_agreement,
)
from tvindex.core.records import LEVELS
from tvindex.core.store import CatalogueStore

PLOTS = {
    "retrieval": "retrieval_ndcg.png",
    "recommendation": "recommendation_loo.png",
    "weights": "recommendation_weights.png",
    "tagging": "tagging_agreement.png",
}
REPRESENTATION_NAMES = {"embedding": "embedding", "labels": "label profile", "blend": "blend"}


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def finite_json(obj: Any) -> Any:
    """A JSON-able copy: numpy scalars and arrays become Python values, NaN and infinities
    become None, tuples lists, paths strings."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def walk_numbers(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every number in a JSON value, with its path (for checking that all are finite)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, obj


def describe_store(store: CatalogueStore, location: str) -> dict[str, Any]:
    states = store.episode_states()
    indexed = [s for s in states if s.status == "indexed"]
    return {"location": location, "backend": store.backend,
            "episodes_indexed": len(indexed), "episodes_total": len(states),
            "programmes": len({s.programme_id for s in indexed}),
            "segments": sum(s.n_segments or 0 for s in indexed),
            "frames": sum(s.n_frames or 0 for s in indexed),
            "label_sets": [{"name": ls.name, "activation": ls.activation,
                            "labels": len(ls.labels)} for ls in store.label_sets()],
            "embedding_model": store.embedding_model()}


def build_report(evaluated: CatalogueStore, *, evaluated_location: str,
                 reference: CatalogueStore | None = None, reference_location: str | None = None,
                 distill_report: Path | None = None, bench_dir: Path | None = None,
                 max_labels: int = 60, seed: int = 0, k: int = 10, depth: int = 200,
                 min_score: float = 0.05, embedding_weight: float = 0.7,
                 label_weight: float = 0.3, idf_min_score: float = 0.05) -> dict[str, Any]:
    """Every section of the report as finite JSON-able data."""
    t0 = time.perf_counter()
    loo = {"embedding_weight": embedding_weight, "label_weight": label_weight,
           "idf_min_score": idf_min_score}
    report: dict[str, Any] = {
        "report": "tvindex retrieval-quality report",
        "version": 1,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "catalogues": {"evaluated": describe_store(evaluated, evaluated_location),
                       "reference": (describe_store(reference, reference_location or "")
                                     if reference is not None else None)},
        "tagging_agreement": tagging_agreement(distill_report, bench_dir),
    }
    if reference is None:
        report["retrieval_agreement"] = not_available(
            "no reference catalogue (tvindex report --reference DATA_DIR)")
    else:
        report["retrieval_agreement"] = retrieval_agreement(
            evaluated, reference, k=k, max_labels=max_labels, seed=seed, min_score=min_score,
            depth=depth)
    report["recommendation"] = {
        "method": ("leave one episode out: each episode's own programme profile is rebuilt "
                   "without it; programmes ranked by Recommender.blend of cosine similarities; "
                   "relevance: the episode's own programme"),
        "evaluated": leave_one_episode_out(evaluated, **loo),
        "reference": (leave_one_episode_out(reference, **loo) if reference is not None
                      else not_available("no reference catalogue")),
    }
    report["latency"] = latency(bench_dir)
    report["plots"] = {}
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return finite_json(report)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    lines = []
    ev = report["catalogues"]["evaluated"]
    lines.append(f"evaluated: {ev['location']} ({ev['episodes_indexed']} episodes, "
                 f"{ev['programmes']} programmes, embeddings: {ev['embedding_model'] or 'none'})")
    ref = report["catalogues"]["reference"]
    if ref:
        lines.append(f"reference: {ref['location']} ({ref['episodes_indexed']} episodes, "
                     f"embeddings: {ref['embedding_model'] or 'none'})")
    ra = report["retrieval_agreement"]
    if ra.get("available"):
        parts = [f"{level} {_fmt(s['mean'])} (median {_fmt(s['median'])}, "
                 f"{s['n_labels']} labels)" for level, s in ra["levels"].items()]
        lines.append(f"retrieval nDCG@{ra['k']} vs reference: " + "; ".join(parts))
    else:
        lines.append(f"retrieval agreement: not available ({ra.get('reason')})")
    for side in ("evaluated", "reference"):
        loo = report["recommendation"][side]
        if not loo.get("available"):
            if side == "evaluated":
                lines.append(f"leave-one-episode-out: not available ({loo.get('reason')})")
            continue
        reps = loo["representations"]
        parts = [f"{REPRESENTATION_NAMES[r]} P@1 {_fmt(reps[r]['precision@1'])} "
                 f"MRR {_fmt(reps[r]['mrr'])} nDCG {_fmt(reps[r]['ndcg'])}"
                 for r in REPRESENTATIONS if reps[r]["available"]]
        lines.append(f"leave-one-episode-out ({side}, {loo['queries']} episodes, "
                     f"{loo['skipped_single_episode']} skipped): " + "; ".join(parts))
    ta = report["tagging_agreement"]
    lines.append("tagging agreement: " + (f"{len(ta['runs'])} run(s) from {ta['source']}"
                                          if ta.get("available") else
                                          f"not available ({ta.get('reason')})"))
    la = report["latency"]
    lines.append("latency: " + (f"{len(la['rows'])} percentile rows from "
                                f"{len(la['files'])} file(s)" if la.get("available") else
                                f"not available ({la.get('reason')})"))
    return lines


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# --------------------------------------------------------------------------------------------
# Plots (matplotlib's Agg canvas; no pyplot, no global state)
# --------------------------------------------------------------------------------------------


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
                 label=f"{lv} (mean {_fmt(ra['levels'][lv]['mean'], 2)})")
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


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.na { color: #a00; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _e(value: Any) -> str:
    return html.escape(_fmt(value), quote=True)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if isinstance(c, int | float)
                         and not isinstance(c, bool) else f"<td>{_e(c)}</td>" for c in row)
        + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _na(section: dict[str, Any]) -> str:
    return f'<p class="na">Not available: {_e(section.get("reason"))}</p>'


def _img(report: dict[str, Any], key: str, alt: str) -> str:
    name = report.get("plots", {}).get(key)
    return f'<p><img src="{html.escape(name)}" alt="{html.escape(alt)}"></p>' if name else ""


def render_html(report: dict[str, Any]) -> str:
    cat = report["catalogues"]
    names = _side_names(report)
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>tvindex retrieval-quality report</title>", f"<style>{_STYLE}</style>",
           "</head><body>", "<h1>Retrieval-quality report</h1>",
           (f"<p>Generated {_e(report['generated_at'])} in {_e(report['seconds'])} s. "
            'Every figure is also in <a href="report.json">report.json</a>.</p>')]
    rows = []
    for side in ("evaluated", "reference"):
        c = cat.get(side)
        if c:
            rows.append([names[side], c["location"], c["episodes_indexed"], c["programmes"],
                         c["segments"], c["frames"],
                         ", ".join(f"{ls['name']} ({ls['labels']})" for ls in c["label_sets"]),
                         c["embedding_model"] or "none"])
    out.append(_table(["catalogue", "location", "episodes", "programmes", "segments", "frames",
                       "label sets", "embeddings"], rows))

    # Tagging agreement.
    ta = report["tagging_agreement"]
    out.append("<h2>Tagging agreement per head</h2>")
    if ta.get("available"):
        out.append(f"<p>The student against its teachers on held-out footage "
                   f"({_e(ta.get('split'))}); gain: {_e(ta.get('gain'))}. "
                   f"Source: <code>{_e(ta['source'])}</code>"
                   + (f" (instead of the distillation report: {_e(ta['fallback_reason'])})"
                      if ta.get("fallback_reason") else "") + ".</p>")
        out.append(_img(report, "tagging", "tagging agreement per head"))
        trows = []
        for run in ta["runs"]:
            for head, figs in run["heads"].items():
                trows.append([run["name"], head, figs.get("frames"),
                              *[figs.get(m) for m in TAGGING_METRICS]])
        for head, figs in (ta.get("prior") or {}).items():
            trows.append(["train prior (no student)", head, figs.get("frames"),
                          *[figs.get(m) for m in TAGGING_METRICS]])
        for setting, heads in (ta.get("thesis") or {}).items():
            for head, figs in heads.items():
                trows.append([f"thesis, {setting}", head, None,
                              *[figs.get(m) for m in TAGGING_METRICS]])
        out.append(_table(["run", "head", "frames", *TAGGING_METRICS], trows))
    else:
        out.append(_na(ta))

    # Retrieval agreement.
    ra = report["retrieval_agreement"]
    out.append("<h2>Retrieval agreement</h2>")
    if ra.get("available"):
        sel = ra["selection"]
        out.append(f"<p>nDCG@{_e(ra['k'])} of the evaluated catalogue's ranking for each label, "
                   f"with the reference catalogue's scores as graded relevance ({_e(ra['gain'])}"
                   f"; reference depth {_e(ra['reference_depth'])}). Labels: {_e(sel['rule'])}: "
                   f"{_e(sel['evaluated'])} of {_e(sel['present'])} present.</p>")
        out.append(_img(report, "retrieval", "nDCG@10 distribution per level"))
        srows = [[lv, s["n_labels"], s["mean"], s["median"], s["p10"], s["min"],
                  s["mean_overlap"], s["no_reference_hits"]] for lv, s in ra["levels"].items()]
        out.append(_table(["level", "labels", "mean", "median", "10th pct", "min",
                           "top-10 overlap", "labels the reference ranks nothing for"], srows))
        for lv, s in ra["levels"].items():
            out.append(f"<h3>Worst labels, {_e(lv)} level</h3>")
            out.append(_table(
                ["label set", "label", "nDCG", "reference episodes", "evaluated hits",
                 "reference hits", "evaluated top 3", "reference top 3"],
                [[r["label_set"], r["label"], r["ndcg"], r["frequency"], r["evaluated_hits"],
                  r["reference_hits"], ", ".join(r["evaluated_top"]),
                  ", ".join(r["reference_top"])] for r in s["worst"]]))
    else:
        out.append(_na(ra))

    # Recommendation.
    rec = report["recommendation"]
    out.append("<h2>Recommendation quality (leave one episode out)</h2>")
    out.append(f"<p>{_e(rec['method'])}.</p>")
    out.append(_img(report, "recommendation", "leave-one-episode-out metrics"))
    out.append(_img(report, "weights", "metrics over the blend weight"))
    for side in ("evaluated", "reference"):
        loo = rec[side]
        out.append(f"<h3>{_e(names[side])}</h3>")
        if not loo.get("available"):
            out.append(_na(loo))
            continue
        w = loo["weights"]
        out.append(f"<p>{_e(loo['queries'])} query episodes over {_e(loo['programmes'])} "
                   f"programmes; {_e(loo['skipped_single_episode'])} skipped (single-episode "
                   f"programmes: {_e(', '.join(loo['skipped']) or 'none')}). Blend weights: "
                   f"embedding {_e(w['embedding_weight'])}, labels {_e(w['label_weight'])}. "
                   f"Chance: P@1 {_e(loo['chance']['precision@1'])}, MRR "
                   f"{_e(loo['chance']['mrr'])}.</p>")
        out.append(_table(["representation", "episodes", "precision@1", "MRR", "nDCG",
                           "mean rank", "mean margin", "smallest margin"],
                          [[REPRESENTATION_NAMES[r], m["episodes"], m["precision@1"], m["mrr"],
                            m["ndcg"], m.get("mean_rank"), m.get("margin_mean"),
                            m.get("margin_min")]
                           for r, m in loo["representations"].items()]))
        out.append("<p>Margin: the similarity to the episode's own programme minus the best "
                   "other programme's (positive: ranked first).</p>")
        out.append(_table(["episode", "programme", *[f"rank ({REPRESENTATION_NAMES[r]})"
                                                     for r in REPRESENTATIONS],
                           "top (blend)"],
                          [[p["episode"], p["programme"], *[p["rank"][r] for r in
                                                            REPRESENTATIONS],
                            p["top"]["blend"]] for p in loo["per_episode"]]))

    # Latency.
    la = report["latency"]
    out.append("<h2>Query latency</h2>")
    if la.get("available"):
        out.append("<p>From " + ", ".join(f"<code>{_e(f)}</code>" for f in la["files"])
                   + ".</p>")
        out.append(_table(["benchmark", "measurement", "n", "p50", "p90", "p95", "p99", "unit"],
                          [[r["benchmark"], r["measurement"], r.get("n"), r.get("p50"),
                            r.get("p90"), r.get("p95"), r.get("p99"), r.get("unit")]
                           for r in la["rows"]]))
    else:
        out.append(_na(la))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _side_names(report: dict[str, Any]) -> dict[str, str]:
    cat = report["catalogues"]
    def name(side: str) -> str:
        model = (cat.get(side) or {}).get("embedding_model")
        # The tagger's name, without its weights' fingerprints (the table has them all).
        return f"{side} ({model.split(':')[0] if model else 'no embeddings'})"

    return {side: name(side) if cat.get(side) else side for side in ("evaluated", "reference")}


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Plots, report.json and index.html into ``out_dir`` (created); returns index.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _side_names(report)
    plots = {}
    makers = {"retrieval": lambda p: plot_retrieval(report["retrieval_agreement"], p),
              "recommendation": lambda p: plot_recommendation(report["recommendation"], p,
                                                              names),
              "weights": lambda p: plot_weights(report["recommendation"], p, names),
              "tagging": lambda p: plot_tagging(report["tagging_agreement"], p)}
    for key, make in makers.items():
        path = out_dir / PLOTS[key]
        if make(path):
            plots[key] = PLOTS[key]
        elif path.exists():
            path.unlink()  # a stale plot from an earlier run
    report["plots"] = plots
    report = finite_json(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    index = out_dir / "index.html"
    index.write_text(render_html(report))
    return index
