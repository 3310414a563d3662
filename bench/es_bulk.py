"""Bulk indexing throughput and query latency: Elasticsearch backend against SQLite, on the
same synthetic catalogue in the same run. Prints JSON.

    python bench/es_bulk.py [--episodes 10] [--shots 360] [--repeat 10]

The cluster is ``ELASTICSEARCH_URL`` when set, else the emulator the tests use (noida-db,
started on a free port and stopped at the end); the JSON names the server and its version.
Episodes look like one hour sampled every 10 s (360 shots), with the real vocabularies' sizes
(coco80: 80 sigmoid labels; places365: 365 softmax labels), the default store_min_score /
store_top_k, and 12 KB thumbnails (the demo's are 8-16 KB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from es_server import EsServer, delete_prefix

from search.backends.elasticsearch.store import EsStore
from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeRecord,
    EpisodeTags,
    LabelStats,
    ProgrammeRecord,
    SegmentTags,
)
from tvindex.core.stats import aggregate

COCO = LabelSet("coco80", "sigmoid", tuple(f"object{i}" for i in range(80)))
PLACES = LabelSet("places365", "softmax", tuple(f"place{i}" for i in range(365)))
QUERIES = ["object:object0", "object:object1 object:object2", "object:object3 OR place7",
           "object:object0 -object:object4", "object:object5 genre:news",
           "object:object6 after:2021-01-01"]


def episode(rng: np.random.Generator, eid: str, shots: int) -> EpisodeTags:
    thumb = bytes(rng.integers(0, 256, 12_000, dtype=np.uint8))
    segs = []
    for i in range(shots):
        obj = rng.beta(0.3, 3.0, size=(3, len(COCO))).astype(np.float32)
        logits = rng.normal(0, 2, size=(3, len(PLACES)))
        scn = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
        segs.append(SegmentTags(i, 10.0 * i, 10.0 * i + 10, 10.0 * i + 5,
                                {"coco80": aggregate(obj, 0.5), "places365": aggregate(scn, 0.2)},
                                thumbnail=thumb))
    stats = {}
    for name in ("coco80", "places365"):
        score = np.mean([s.stats[name].score for s in segs], axis=0).astype(np.float32)
        cover = np.mean([s.stats[name].coverage for s in segs], axis=0).astype(np.float32)
        stats[name] = LabelStats(score, cover, 3 * shots)
    return EpisodeTags(eid, f"fp-{eid}", "bench", 10.0 * shots, segs, stats, "interval")


def fill(store, programmes, episodes, tags) -> dict[str, float]:
    store.upsert_catalogue(programmes, episodes)
    store.register_label_sets([COCO, PLACES])
    t0 = time.perf_counter()
    for t in tags:
        store.write_episode(t)
    seconds = time.perf_counter() - t0
    shots = sum(len(t.segments) for t in tags)
    return {"seconds": round(seconds, 2), "shot_docs_per_s": round(shots / seconds, 1),
            "episodes_per_s": round(len(tags) / seconds, 2)}


def latency(store, repeat: int) -> dict[str, dict[str, float]]:
    out = {}
    for level in ("shot", "episode", "programme"):
        times = []
        for _ in range(repeat):
            for q in QUERIES:
                t0 = time.perf_counter()
                run_search(store, q, level, limit=20)
                times.append(time.perf_counter() - t0)
        times.sort()
        out[level] = {"p50_ms": round(1000 * statistics.median(times), 2),
                      "p99_ms": round(1000 * times[min(len(times) - 1,
                                                       int(0.99 * len(times)))], 2),
                      "queries": len(times)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--shots", type=int, default=360)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    programmes = [ProgrammeRecord(f"p{i}", f"Programme {i}", genre=("news", "fiction")[i % 2])
                  for i in range(4)]
    episodes = [EpisodeRecord(f"e{i:03d}", f"p{i % 4}", f"Episode {i}", f"/m/{i}.mp4",
                              dt.date(2019, 1, 1) + dt.timedelta(days=30 * i))
                for i in range(args.episodes)]
    tags = [episode(rng, e.id, args.shots) for e in episodes]

    tmp = Path(tempfile.mkdtemp(prefix="es-bench-"))
    url = os.environ.get("ELASTICSEARCH_URL")
    server = EsServer(url) if url else EsServer(data_dir=tmp / "noida")
    server.start()
    cfg = server.config(f"bench-{os.getpid()}-", replicas=0, request_timeout_s=60)
    try:
        sqlite = SqliteStore(tmp / "catalogue.sqlite")
        es = EsStore(cfg)
        result = {
            "server": {"name": server.name, "version": server.version, "url": cfg.redacted_url()},
            "catalogue": {"episodes": args.episodes, "shots": args.episodes * args.shots,
                          "label_sets": {"coco80": 80, "places365": 365}},
            "write": {"sqlite": fill(sqlite, programmes, episodes, tags),
                      "elasticsearch": fill(es, programmes, episodes, tags)},
        }
        for level in ("shot", "episode", "programme"):  # same answers before timing them
            for q in QUERIES:
                a = [h.id for h in run_search(sqlite, q, level).hits]
                b = [h.id for h in run_search(es, q, level).hits]
                assert len(a) == len(b), (q, level)
        result["query"] = {"sqlite": latency(sqlite, args.repeat),
                           "elasticsearch": latency(es, args.repeat)}
        w = result["write"]
        result["ratio_es_over_sqlite"] = {
            "write_throughput": round(w["elasticsearch"]["shot_docs_per_s"]
                                      / w["sqlite"]["shot_docs_per_s"], 3),
            **{f"{lvl}_p50": round(result["query"]["elasticsearch"][lvl]["p50_ms"]
                                   / result["query"]["sqlite"][lvl]["p50_ms"], 2)
               for lvl in ("shot", "episode", "programme")}}
        stats = es.es.indices.stats(index=es._idx["shots"], metric="docs,store")
        prim = stats["_all"]["primaries"]
        result["es_shots_index"] = {"docs": prim["docs"]["count"],
                                    "bytes": prim["store"]["size_in_bytes"]}
        sqlite.close()
        es.close()
        print(json.dumps(result, indent=1))
    finally:
        delete_prefix(cfg)
        server.stop()


if __name__ == "__main__":
    main()
