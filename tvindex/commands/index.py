"""``tvindex index SOURCE``: index a catalogue (manifest or folder) into the store."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tvindex.commands._common import (
    add_data_dir,
    add_json,
    add_sampling_options,
    command_parser,
)
from tvindex.settings import Settings


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {text!r}")
    return i, n


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "index", help="index a catalogue manifest (CSV/JSONL) or folder tree",
        description="Sample, tag and aggregate every episode of a catalogue into the store "
                    "(created when missing), then sync the vector indexes. Unchanged episodes "
                    "are skipped; exits 1 when some episodes failed (each is listed).",
        examples=["tvindex index demo/catalogue.csv --data-dir var/demo",
                  "tvindex index /media/catalogue --sampling shots --taggers yolo places365",
                  "tvindex index catalogue.jsonl --shard 0/4 --no-progress --json"])
    p.add_argument("source", type=Path, help="manifest file or ROOT/<programme>/<files> folder")
    add_sampling_options(p)
    add_data_dir(p)
    p.add_argument("--force", action="store_true", help="re-index even unchanged episodes")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="index only shard I of N (0-based), for N parallel workers")
    add_json(p, "print the run's report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(settings_overrides=lambda a: {
        "sampling.mode": a.sampling, "sampling.every_s": a.every, "taggers.active": a.taggers,
        "paths.data_dir": a.data_dir})


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.catalogue import load_catalogue
    from indexer.claims import EpisodeClaims
    from indexer.fingerprints import FingerprintCache
    from indexer.frame_tagging import choose_embedder
    from indexer.indexing import run_index
    from indexer.taggers import taggers_from_settings
    from search.store import open_store
    from search.vector_catalogue import VectorCatalogue
    from tvindex.core.store import StoreUnavailable

    catalogue = load_catalogue(args.source)
    taggers = taggers_from_settings(settings)
    embedder = choose_embedder(taggers, settings.taggers.embedding)
    data_dir = settings.paths.data_dir
    with open_store(settings) as store:
        # Runs sharing the data dir claim episodes there (each is tagged once), and keep
        # the files' fingerprints there (a resume hashes only what changed).
        report = run_index(catalogue, store, taggers, settings.sampling, settings.aggregation,
                           embedder=embedder, batch_size=settings.taggers.batch_size,
                           force=args.force, shard=args.shard, progress=not args.no_progress,
                           fingerprints=FingerprintCache.in_data_dir(data_dir),
                           claims=EpisodeClaims.in_data_dir(data_dir))
        # Keep the vector indexes (similar shots, query by example) in step with the store.
        # A store that went away is not this run's failure: the episodes already say what
        # happened, and the next run (or the web server) syncs.
        try:
            report_vectors = VectorCatalogue.from_settings(store, settings).sync().to_dict()
        except StoreUnavailable as exc:
            print(f"tvindex: warning: vector indexes not synced ({exc}); the next run syncs",
                  file=sys.stderr)
            report_vectors = {"counts": {}, "error": str(exc)}
    if args.json:
        print(json.dumps(report.to_dict() | {"vectors": report_vectors}, indent=1))
    else:
        r = report.to_dict()
        by_other = (f", done by another run {len(r['by_other_run'])}"
                    if r["by_other_run"] else "")
        print(f"indexed {r['indexed']}, unchanged {r['skipped']}{by_other}, "
              f"failed {len(r['failed'])}; "
              f"{r['frames']} frames in {r['seconds']} s "
              f"({r['frames_per_s'] or 0} frames/s); vectors: "
              + (", ".join(f"{n} {level}s" for level, n in report_vectors["counts"].items())
                 or "not synced"))
        for ep, why in report.failed.items():
            print(f"  failed {ep}: {why}", file=sys.stderr)
    # 1: the run completed, but some episodes failed (listed above; see tvindex.cli).
    return 1 if report.failed else 0
