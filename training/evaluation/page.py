"""The report's self-contained HTML page (``index.html``: tables, and the PNG plots beside it)."""

from __future__ import annotations

import html
from typing import Any

from training.evaluation.benchmarks import TAGGING_METRICS
from training.evaluation.display import REPRESENTATION_NAMES, fmt, side_names
from training.evaluation.recommendation import REPRESENTATIONS
from training.genres.report import genre_html

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
    return html.escape(fmt(value), quote=True)


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
    names = side_names(report)
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

    if "genres" in report:  # training/genres/report.py
        out.append(genre_html(report["genres"]))

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
