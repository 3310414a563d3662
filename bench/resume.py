"""Resume over an unchanged, fully indexed catalogue: how long `run_index` takes before it
would tag its first episode (here: until it ends, as nothing changed), with the data dir's
fingerprint cache and without it (every file hashed again, as before issue 14).

The catalogue: ``--episodes`` (100 000) episodes over ``--files`` small generated files
(default: as many files as episodes, one 4 KiB file each; fewer files make the episodes time
ranges of them), listed in a CSV manifest, ``--per-programme`` episodes per programme.
"Fully indexed" is written through the real ``SqliteStore`` (``write_episode``, one minimal
``EpisodeTags`` per episode: one segment, one label) with the same fingerprints and
configuration version a real run computes, so `run_index` finds every episode unchanged.
The timed region is what `tvindex index MANIFEST` does before it would tag: reading and
checking the manifest (every row's media file) and `run_index`. The tagger is a stand-in that
is never called (nothing needs tagging); it only names the
label set and enters the configuration version. A first `run_index` fills the cache (not
timed); then each measured run is a fresh process-level start of `run_index` (new store
connection, cache read from disk). Prints JSON: median of ``--repeats`` (3) runs each way,
their spread, and the load average.

    python bench/resume.py [--episodes 100000] [--files 100000] [--repeats 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.catalogue import load_catalogue
from indexer.fingerprints import FingerprintCache, content_fingerprint
from indexer.indexing import config_version, run_index
from indexer.taggers.base import Tagger
from search.backends.sqlite.store import SqliteStore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeTags, LabelStats, SegmentTags
from tvindex.settings import AggregationSettings, SamplingSettings


class StandIn(Tagger):
    """Names one label set; never asked to tag (every episode is unchanged)."""

    name = "bench-stand-in"
    weights_id = "0"
    label_sets = (LabelSet("coco80", "sigmoid", ("person", "car")),)

    def predict(self, frames):  # pragma: no cover - never called
        raise AssertionError("the resume benchmark tagged an episode")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def build(root: Path, n_episodes: int, n_files: int, per_programme: int) -> Path:
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_files):
        p = media / f"f{i // 1000:03d}" / f"{i:06d}.mp4"
        if not p.exists():
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(rng.bytes(4096))
    per_file = -(-n_episodes // n_files)
    rows = ["programme,programme_id,episode_id,title,media_path,start_s,end_s"]
    for e in range(n_episodes):
        f, k = divmod(e, per_file)
        prog = e // per_programme
        path = media / f"f{f // 1000:03d}" / f"{f:06d}.mp4"
        span = (f"{k * 60},{k * 60 + 60}" if per_file > 1 else ",")
        rows.append(f"P{prog},p{prog},e{e:06d},E{e},{path},{span}")
    manifest = root / "catalogue.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def mark_indexed(db: Path, catalogue, tagger: Tagger, version: str) -> None:
    stats = {"coco80": LabelStats(np.array([0.5, 0.1], np.float32),
                                  np.array([1.0, 0.0], np.float32), 1)}
    with SqliteStore(db) as store:
        store.upsert_catalogue(catalogue.programmes, catalogue.episodes)
        store.register_label_sets(tagger.label_sets)
        done = {s.id for s in store.episode_states() if s.status == "indexed"}
        t0 = time.perf_counter()
        for i, ep in enumerate(catalogue.episodes):
            if ep.id in done:
                continue
            seg = SegmentTags(0, 0.0, 1.0, 0.5, stats)
            store.write_episode(EpisodeTags(ep.id, content_fingerprint(ep), version, 1.0,
                                            [seg], stats, sampling="interval"))
            if i % 10000 == 0:
                log(f"  marked {i} indexed ({time.perf_counter() - t0:.0f} s)")


def timed_resume(db: Path, manifest: Path, tagger, sampling, aggregation, cache_path) -> dict:
    """What `tvindex index MANIFEST` does before it would tag: read and check the manifest
    (every row's media file), then `run_index` over it; both timed."""
    t0 = time.perf_counter()
    catalogue = load_catalogue(manifest)
    t_load = time.perf_counter()
    with SqliteStore(db) as store:
        cache = FingerprintCache(cache_path)
        report = run_index(catalogue, store, [tagger], sampling, aggregation, embedder=None,
                           progress=False, fingerprints=cache)
    seconds = time.perf_counter() - t0
    assert not report.indexed and not report.failed, report.to_dict()
    assert len(report.skipped) == len(catalogue.episodes)
    return {"seconds": round(seconds, 3), "manifest_s": round(t_load - t0, 3),
            "hashed": report.hashed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=None, help="default: one per episode")
    ap.add_argument("--per-programme", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None,
                    help="work folder, kept between runs (default: a new temporary folder)")
    a = ap.parse_args()
    n_files = a.files or a.episodes
    root = a.dir or Path(tempfile.mkdtemp(prefix="tvindex-resume-"))
    log(f"work folder {root}")
    t0 = time.perf_counter()
    manifest = build(root, a.episodes, n_files, a.per_programme)
    t_load = time.perf_counter()
    catalogue = load_catalogue(manifest)
    load_s = time.perf_counter() - t_load
    tagger, sampling, aggregation = StandIn(), SamplingSettings(), AggregationSettings()
    version = config_version([tagger], None, sampling, aggregation)
    db, cache_path = root / "catalogue.sqlite", root / "fingerprints.sqlite"
    mark_indexed(db, catalogue, tagger, version)
    log(f"set up in {time.perf_counter() - t0:.0f} s; filling the cache")
    timed_resume(db, manifest, tagger, sampling, aggregation, cache_path)
    runs: dict[str, list[dict]] = {"cached": [], "no_cache": []}
    for _ in range(a.repeats):  # interleaved, so both see the same machine
        runs["cached"].append(timed_resume(db, manifest, tagger, sampling, aggregation,
                                           cache_path))
        runs["no_cache"].append(timed_resume(db, manifest, tagger, sampling, aggregation,
                                             None))
        log(f"  cached {runs['cached'][-1]['seconds']} s, "
            f"no cache {runs['no_cache'][-1]['seconds']} s")
    out = {"episodes": a.episodes, "files": n_files, "file_bytes": 4096,
           "programmes": -(-a.episodes // a.per_programme), "manifest_load_s": round(load_s, 2),
           "repeats": a.repeats, "load_average": [round(x, 2) for x in os.getloadavg()],
           "cpus": os.cpu_count(), "target_s": 5.0}
    for name, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        out[name] = {"median_s": round(statistics.median(secs), 3), "min_s": min(secs),
                     "max_s": max(secs), "hashed": rs[-1]["hashed"],
                     "manifest_median_s": round(statistics.median(r["manifest_s"] for r in rs), 3)}
    out["speedup"] = round(out["no_cache"]["median_s"] / out["cached"]["median_s"], 1)
    out["meets_target"] = out["cached"]["median_s"] < out["target_s"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
