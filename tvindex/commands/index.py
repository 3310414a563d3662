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
    int_in,
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
                  "tvindex index catalogue.jsonl --shard 0/4 --no-progress --json",
                  "tvindex index catalogue.csv --workers 4",
                  "tvindex index catalogue.csv --engine ray --ray-address auto"])
    p.add_argument("source", type=Path, help="manifest file or ROOT/<programme>/<files> folder")
    add_sampling_options(p)
    add_data_dir(p)
    p.add_argument("--force", action="store_true", help="re-index even unchanged episodes")
    p.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="index only shard I of N (0-based), for N parallel workers")
    p.add_argument("--workers", type=int_in(0, 256), metavar="N", default=None,
                   help="decode processes (default: the number of cores; 0: decode in the "
                        "tagging process)")
    p.add_argument("--decode-threads", type=int_in(0, 64), metavar="N", default=0,
                   help="threads per video decoder (default 0: FFmpeg's choice, every core; "
                        "1: one per decode process, for as many workers as cores)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this machine (default); ray: a Ray cluster (pip install "
                        "'tvindex[ray]')")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    add_json(p, "print the run's report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--words", action=argparse.BooleanOptionalAction, default=None,
                   help="index words (subtitles, speech, on-screen text) after the pictures "
                        "(default: when words.enabled lists sources)")
    p.set_defaults(settings_overrides=lambda a: {
        "sampling.mode": a.sampling, "sampling.every_s": a.every, "taggers.active": a.taggers,
        "sampling.shot_detector": a.shot_detector,
        "paths.data_dir": a.data_dir})


def index_words_pass(args: argparse.Namespace, settings: Settings, catalogue, store
                     ) -> dict | None:
    """The words pass after the pictures (indexer.words.run); None when it is off. A word
    source's failure is recorded for its episode and never fails the run."""
    if args.words is False or (args.words is None and not settings.words.enabled):
        return None
    from indexer.fingerprints import FingerprintCache
    from indexer.indexing import in_shard
    from indexer.words import word_extractors_from_settings
    from indexer.words.run import index_words

    extractors = word_extractors_from_settings(settings)
    return index_words(catalogue, store, extractors, force=args.force,
                       progress=not args.no_progress,
                       fingerprints=FingerprintCache.in_data_dir(settings.paths.data_dir),
                       select=lambda eid: in_shard(eid, args.shard)).to_dict()


def print_words(report: dict | None) -> None:
    if report is None:
        return
    if report["error"]:
        print(f"words: not indexed ({report['error']})", file=sys.stderr)
        return
    sources = sorted(set(report["written"]) | set(report["unchanged"]) | set(report["failed"]))
    print("words: " + ("; ".join(
        f"{s} {report['written'].get(s, 0)} written ({report['segments'].get(s, 0)} segments), "
        f"{report['unchanged'].get(s, 0)} unchanged, {len(report['failed'].get(s, {}))} failed"
        for s in sources) or "nothing to do"))
    for source, failed in report["failed"].items():
        for ep, why in failed.items():
            print(f"  words {source} {ep}: {why}", file=sys.stderr)


def sync_visual(store, vectors, settings: Settings) -> dict | None:
    """Bring the CLIP index (visual: terms) up to date, when the openclip tagger is active or
    the index exists (so that deactivating the tagger empties it); None otherwise."""
    from search.visual_vectors import visual_catalogue

    visual = visual_catalogue(store, vectors)
    if "openclip" not in settings.taggers.active and not visual.dir.is_dir():
        return None
    return visual.sync().to_dict()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.catalogue import load_catalogue
    from indexer.claims import EpisodeClaims
    from indexer.fingerprints import FingerprintCache
    from indexer.media import set_decode_threads
    from indexer.pipeline.engine import index_catalogue
    from indexer.pipeline.models import Models
    from indexer.pipeline.workers import usable_cpus
    from search.store import open_store
    from search.vector_catalogue import VectorCatalogue
    from search.visual_vectors import visual_writer
    from tvindex.core.store import StoreUnavailable

    catalogue = load_catalogue(args.source)
    data_dir = settings.paths.data_dir
    # The taggers are built when the first episode needs tagging (never for a run with
    # nothing to do); the configuration version is remembered in the data dir meanwhile.
    models = Models.from_settings(settings, data_dir)
    workers = args.workers if args.workers is not None else usable_cpus()
    set_decode_threads(args.decode_threads)  # forked decode workers inherit it
    with open_store(settings) as store:
        vectors = VectorCatalogue.from_settings(store, settings)
        # The openclip tagger's embeddings go beside the store (search/visual_vectors.py).
        writer = visual_writer(store, vectors)
        # Runs sharing the data dir claim episodes there (each is tagged once), and keep
        # the files' fingerprints there (a resume hashes only what changed).
        common = {"batch_size": settings.taggers.batch_size, "force": args.force,
                  "shard": args.shard, "progress": not args.no_progress,
                  "fingerprints": FingerprintCache.in_data_dir(data_dir),
                  "claims": EpisodeClaims.in_data_dir(data_dir)}
        if args.engine == "ray":
            from indexer.pipeline.ray_engine import index_on_ray

            report = index_on_ray(catalogue, writer, models, settings.sampling,
                                  settings.aggregation, address=args.ray_address,
                                  decoders=args.workers,
                                  decode_threads=args.decode_threads, **common)
        else:
            report = index_catalogue(catalogue, writer, models, settings.sampling,
                                     settings.aggregation, workers=workers, **common)
        # Keep the vector indexes (similar shots, query by example) in step with the store.
        # A store that went away is not this run's failure: the episodes already say what
        # happened, and the next run (or the web server) syncs.
        try:
            report_vectors = vectors.sync().to_dict()
            visual = sync_visual(store, vectors, settings)
            if visual is not None:
                report_vectors["visual"] = visual
        except StoreUnavailable as exc:
            print(f"tvindex: warning: vector indexes not synced ({exc}); the next run syncs",
                  file=sys.stderr)
            report_vectors = {"counts": {}, "error": str(exc)}
        report_words = index_words_pass(args, settings, catalogue, store)
    if args.json:
        print(json.dumps(report.to_dict() | {"vectors": report_vectors, "words": report_words},
                         indent=1))
    else:
        r = report.to_dict()
        by_other = (f", done by another run {len(r['by_other_run'])}"
                    if r["by_other_run"] else "")
        print(f"indexed {r['indexed']}, unchanged {r['skipped']}{by_other}, "
              f"failed {len(r['failed'])}; "
              f"{r['frames']} frames in {r['seconds']} s "
              f"({r['frames_per_s'] or 0} frames/s); vectors: "
              + (", ".join(f"{n} {level}s" for level, n in report_vectors["counts"].items())
                 or "not synced")
              + (f"; CLIP (visual:): {report_vectors['visual']['counts'].get('shot', 0)} shots"
                 if "visual" in report_vectors else ""))
        for ep, why in report.failed.items():
            print(f"  failed {ep}: {why}", file=sys.stderr)
        print_words(report_words)
    # 1: the run completed, but some episodes failed (listed above; see tvindex.cli).
    return 1 if report.failed else 0
