"""The retrieval-quality report (issue 8): one JSON file with every figure, and a self-contained
HTML page (``index.html`` beside its PNG plots and ``report.json``).

Sections (metrics in ``retrieval``, ``recommendation`` and ``benchmarks`` beside this module):

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
import json
import time
from pathlib import Path
from typing import Any

from training.evaluation.benchmarks import latency, tagging_agreement
from training.evaluation.display import REPRESENTATION_NAMES, fmt, side_names
from training.evaluation.page import render_html
from training.evaluation.plots import (
    PLOTS,
    plot_recommendation,
    plot_retrieval,
    plot_tagging,
    plot_weights,
)
from training.evaluation.recommendation import REPRESENTATIONS, leave_one_episode_out
from training.evaluation.results import finite_json, not_available
from training.evaluation.retrieval import retrieval_agreement
from training.genres.report import genre_section
from training.genres.report import summary_line as genre_summary_line
from tvindex.core.store import CatalogueStore


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
    genres = genre_section(evaluated)  # only when genres were predicted (training/genres)
    if genres is not None:
        report["genres"] = genres
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
        parts = [f"{level} {fmt(s['mean'])} (median {fmt(s['median'])}, "
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
        parts = [f"{REPRESENTATION_NAMES[r]} P@1 {fmt(reps[r]['precision@1'])} "
                 f"MRR {fmt(reps[r]['mrr'])} nDCG {fmt(reps[r]['ndcg'])}"
                 for r in REPRESENTATIONS if reps[r]["available"]]
        lines.append(f"leave-one-episode-out ({side}, {loo['queries']} episodes, "
                     f"{loo['skipped_single_episode']} skipped): " + "; ".join(parts))
    ta = report["tagging_agreement"]
    lines.append("tagging agreement: " + (f"{len(ta['runs'])} run(s) from {ta['source']}"
                                          if ta.get("available") else
                                          f"not available ({ta.get('reason')})"))
    if "genres" in report:
        lines.append(genre_summary_line(report["genres"]))
    la = report["latency"]
    lines.append("latency: " + (f"{len(la['rows'])} percentile rows from "
                                f"{len(la['files'])} file(s)" if la.get("available") else
                                f"not available ({la.get('reason')})"))
    return lines



def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Plots, report.json and index.html into ``out_dir`` (created); returns index.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = side_names(report)
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
