"""Figures read from the benchmarks' JSON outputs (issue 8, the report's sections).

**Tagging agreement** (:func:`tagging_agreement`) and **latency** (:func:`latency`) come from
``bench/distill_report.py``, ``bench/student_vs_teachers.py``, ``bench/query_latency.py``,
``bench/api_load.py`` and ``bench/vector_search.py``; missing files make the section "not
available".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from training.evaluation.results import not_available

TAGGING_METRICS = ("top1", "ndcg@5", "ndcg@10")


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    if not text.strip():
        return None, f"{path} is empty"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{path} is not JSON ({exc.msg}, line {exc.lineno})"


def _head_figures(test: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{head: {"all": {...}} or {...}} -> {head: {frames, top1, ndcg@5, ndcg@10}}."""
    out = {}
    for head, values in sorted((test or {}).items()):
        if isinstance(values, dict) and isinstance(values.get("all"), dict):
            values = values["all"]
        if not isinstance(values, dict):
            continue
        figures = {m: values[m] for m in ("frames", *TAGGING_METRICS)
                   if isinstance(values.get(m), int | float)}
        if figures:
            out[head] = figures
    return out


def tagging_agreement(distill_report: Path | None, bench_dir: Path | None = None
                      ) -> dict[str, Any]:
    """Per head, the student's agreement with its teacher on held-out footage: top-1 and
    nDCG@5/@10 of every run of a ``bench/distill_report.py`` JSON, with the thesis's figures
    and the train-prior baseline. Without that file, ``student_vs_teachers.json`` in
    ``bench_dir`` (the same evaluation of the production student) is used when present."""
    reasons = []
    if distill_report is not None:
        data, why = _read_json(distill_report)
        if why is None and isinstance(data, dict) and isinstance(data.get("runs"), list):
            heads = data.get("heads") or {}
            runs = []
            for run in data["runs"]:
                loss = run.get("loss")
                name = loss.get("name") if isinstance(loss, dict) else str(loss or "student")
                runs.append({"name": str(name), "config": run.get("config"),
                             "heads": _head_figures(run.get("test", {}))})
            thesis = {}
            for setting, roles in (data.get("thesis") or {}).items():
                thesis[setting] = {heads.get(role, role): {m: v for m, v in figures.items()
                                                           if m in TAGGING_METRICS}
                                   for role, figures in roles.items()}
            prior = _head_figures(data.get("prior", {}))
            return {"available": True, "source": str(distill_report),
                    "gain": data.get("gain"), "split": data.get("split"), "roles": heads,
                    "runs": runs, "thesis": thesis, "prior": prior or None}
        reasons.append(why or f"{distill_report} has no 'runs'")
    if bench_dir is not None:
        path = Path(bench_dir) / "student_vs_teachers.json"
        data, why = _read_json(path)
        if why is None and isinstance(data, dict) and isinstance(data.get("results"), list):
            runs = []
            for res in data["results"]:
                if not isinstance(res.get("test"), dict):
                    continue
                runs.append({"name": f"{res.get('loss', 'student')} @ "
                                     f"{res.get('image_size', '?')} px",
                             "config": res.get("checkpoint"),
                             "heads": _head_figures(res["test"])})
            if runs:
                return {"available": True, "source": str(path), "gain": "linear",
                        "split": "test", "roles": {}, "runs": runs, "thesis": {},
                        "prior": None, "fallback_reason": "; ".join(reasons) or None}
        reasons.append(why or f"{path} has no test figures")
    return not_available("; ".join(reasons) or "no distillation report given")


LATENCY_BENCHES = ("query_latency", "api_load", "vector_search")
_PERCENTILES = (50, 90, 95, 99)


def _latency_rows(node: Any, path: str) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        row: dict[str, Any] = {}
        for p in _PERCENTILES:
            for key, unit in ((f"p{p}_ms", "ms"), (f"p{p}", "ms" if "ms" in path else "?"),
                              (f"p{p}_ms_per_batch", "ms per batch")):
                v = node.get(key)
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    row[f"p{p}"] = float(v)
                    row["unit"] = unit
                    break
        if row:
            n = node.get("n")
            yield {"measurement": path, "n": n if isinstance(n, int) else None, **row}
        for key, value in node.items():
            yield from _latency_rows(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _latency_rows(value, f"{path}[{i}]")


def latency(bench_dir: Path | None, benches: Sequence[str] = LATENCY_BENCHES) -> dict[str, Any]:
    """Every latency percentile block (p50/p90/p95/p99, in ms) found in the benchmarks' JSON
    files ``<bench>*.json`` in ``bench_dir``, one row per block, with its JSON path."""
    if bench_dir is None or not Path(bench_dir).is_dir():
        return not_available(f"no benchmark folder {bench_dir}")
    files, rows, problems = [], [], []
    for bench in benches:
        for path in sorted(Path(bench_dir).glob(f"{bench}*.json")):
            data, why = _read_json(path)
            if why:
                problems.append(why)
                continue
            files.append(str(path))
            for row in _latency_rows(data, ""):
                rows.append({"benchmark": bench, "file": path.name, **row})
    if not rows:
        return {**not_available("no latency percentiles in "
                                f"{', '.join(b + '*.json' for b in benches)} under {bench_dir}"
                                + (f" ({'; '.join(problems)})" if problems else "")),
                "files": files}
    return {"available": True, "files": files, "problems": problems, "rows": rows}
