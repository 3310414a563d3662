"""``tvindex report --out DIR``: the retrieval-quality report (HTML with plots, and JSON).

The evaluated catalogue is the configured store (``--data-dir``); ``--reference`` names a
second catalogue of the same footage and sampling (a data directory or its SQLite file),
typically indexed with the teachers while the evaluated one was indexed with the student.
Without it the retrieval-agreement section is "not available" and the rest still runs.
See ``training/evaluation/`` (``report.py`` and the modules beside it) for what is measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tvindex.commands._common import add_data_dir, add_json, command_parser, require_catalogue
from tvindex.settings import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "report", help="write the retrieval-quality report (HTML, plots, JSON)",
        description="The retrieval-quality report of the catalogue (--data-dir): tagging and "
                    "retrieval agreement with a reference catalogue, recommendation quality, "
                    "latency, the distillation results; index.html with plots and report.json.",
        examples=["tvindex report --out var/report --data-dir var/student",
                  ("tvindex report --out var/report --data-dir var/student "
                   "--reference var/teachers"),
                  "tvindex report --out var/report --json"])
    p.add_argument("--out", type=Path, required=True, help="folder for index.html, plots and "
                   "report.json (created)")
    p.add_argument("--reference", type=Path, metavar="DATA_DIR_OR_SQLITE_FILE",
                   help="the reference (teacher-indexed) catalogue for retrieval agreement")
    p.add_argument("--distill-report", type=Path, metavar="FILE",
                   help="bench/distill_report.py output (default: BENCH_DIR/distill_report.json)")
    p.add_argument("--bench-dir", type=Path, default=Path("var/bench"),
                   help="benchmark JSON outputs (default: var/bench)")
    p.add_argument("--labels", type=int, default=60, metavar="N",
                   help="at most N labels for retrieval agreement (stratified sample; 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the label sample")
    add_data_dir(p)
    add_json(p, "print the report's JSON to stdout")
    p.set_defaults(settings_overrides=lambda a: {"paths.data_dir": a.data_dir})


def reference_settings(path: Path, settings: Settings) -> Settings:
    """``settings`` with the catalogue pointed at the reference, a data directory (its
    catalogue.sqlite) or an SQLite file: the SQLite backend, that file, that data directory;
    everything else (the keep rule: store_min_score, store_top_k) as configured."""
    from tvindex.errors import UserError

    file = path / "catalogue.sqlite" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"--reference {path}: no catalogue there (expected a data directory "
                        "holding catalogue.sqlite, or an SQLite file)")
    data_dir = path if path.is_dir() else path.parent
    return settings.model_copy(update={
        "paths": settings.paths.model_copy(update={"data_dir": data_dir}),
        "catalogue": settings.catalogue.model_copy(update={"backend": "sqlite",
                                                           "sqlite_path": file}),
    })


def open_reference(path: Path, settings: Settings):
    """The reference catalogue, opened through the store registry (``open_store``)."""
    from search.store import open_store

    return open_store(reference_settings(path, settings))


def _location(settings: Settings) -> str:
    if settings.catalogue.backend == "sqlite":
        return str(settings.catalogue.sqlite_path
                   or Path(settings.paths.data_dir) / "catalogue.sqlite")
    return f"{settings.catalogue.backend} (configured)"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from search.store import open_store
    from training.evaluation.report import build_report, summary_lines, write_report
    from tvindex.errors import UserError

    if args.labels < 1:
        raise UserError("--labels must be at least 1")
    distill = args.distill_report or args.bench_dir / "distill_report.json"
    if args.distill_report is not None and not args.distill_report.is_file():
        raise UserError(f"--distill-report {args.distill_report}: no such file")
    r = settings.recommend
    require_catalogue(settings)
    reference = open_reference(args.reference, settings) if args.reference else None
    try:
        with open_store(settings) as store:
            if not any(s.status == "indexed" for s in store.episode_states()):
                raise UserError(f"the catalogue at {_location(settings)} has no indexed "
                                "episode (tvindex index first, or --data-dir)")
            report = build_report(
                store, evaluated_location=_location(settings), reference=reference,
                reference_location=str(args.reference) if args.reference else None,
                distill_report=distill, bench_dir=args.bench_dir, max_labels=args.labels,
                seed=args.seed, embedding_weight=r.embedding_weight,
                label_weight=r.label_weight, idf_min_score=r.idf_min_score)
    finally:
        if reference is not None:
            reference.close()
    index = write_report(report, args.out)
    if args.json:
        print(json.dumps(report, indent=1, allow_nan=False))
        return 0
    for line in summary_lines(report):
        print(line)
    print(f"report: {index}")
    return 0
