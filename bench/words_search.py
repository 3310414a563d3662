"""Word search on SQLite (issue 17): the cost of writing text segments and of word terms in a
query, against a label-only query on the same catalogue as the baseline.

A synthetic catalogue of ``--hours`` one-hour episodes: a shot every 5 s (720 per hour, one
label set of 8 labels, one label per shot), and programme-like speech: a segment every 4 s
(900 per hour) of 8-14 words drawn from a Zipf-like vocabulary of ``--vocabulary`` made-up
words in Catalan, Spanish or English (per episode), plus a few planted phrases. Words are
written through ``SqliteStore.write_words`` (the FTS5 index with its Snowball stems).

Queries (``search.engine.run_search``, limit 20), in interleaved rounds (``--rounds``), each
timed at shot and episode level: ``label`` (object:dog, the baseline), ``rare`` (a word in
~0.1 % of segments), ``common`` (a word in ~5 %), ``phrase`` (a planted 3-word phrase),
``word+label`` (common word and object:dog). Prints one JSON object: medians and spreads
(min/max over rounds) per query and level, write throughput, the file size per hour of speech
and the load average before and after.

    python bench/words_search.py [--hours 40] [--rounds 7]
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

from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeRecord,
    EpisodeTags,
    ProgrammeRecord,
    SegmentTags,
)
from tvindex.core.stats import aggregate
from tvindex.core.words import EpisodeWords, TextSegment

LABELS = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle", "cat", "bus",
                                        "boat", "chair"))
PHRASE = "obrim el pavelló"
LANGS = ("ca", "es", "en")


def made_up_words(n: int, rng: np.random.Generator) -> list[str]:
    letters = "abcdefghilmnoprstuv"
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(list(letters), int(rng.integers(3, 10)))))
    return sorted(out)


def build(path: Path, hours: int, vocabulary: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    words = made_up_words(vocabulary, rng)
    ranks = np.arange(1, len(words) + 1)
    p = 1.0 / ranks
    p /= p.sum()
    store = SqliteStore(path, top_k=0)
    eps = [EpisodeRecord(f"e{i}", f"p{i % 10}", f"Episode {i}", f"/m/e{i}.mp4")
           for i in range(hours)]
    store.upsert_catalogue([ProgrammeRecord(f"p{j}", f"Programme {j}") for j in range(10)], eps)
    store.register_label_sets([LABELS])
    eye = np.eye(len(LABELS), dtype=np.float32) * 0.9
    t_words = 0.0
    n_segments = 0
    for i, ep in enumerate(eps):
        which = rng.integers(0, len(LABELS), 720)
        shots = [SegmentTags(k, 5.0 * k, 5.0 * k + 5, 5.0 * k + 2.5,
                             {"coco80": aggregate(eye[which[k]][None], 0.5)})
                 for k in range(720)]
        store.write_episode(EpisodeTags(ep.id, "fp", "v1", 3600.0, shots,
                                        {"coco80": aggregate(eye[which], 0.5)}, "shots"))
        lang = LANGS[i % 3]
        segs = []
        for k in range(900):
            text = " ".join(rng.choice(words, int(rng.integers(8, 15)), p=p))
            if rng.random() < 0.002:
                text += " " + PHRASE
            segs.append(TextSegment(4.0 * k, 4.0 * k + 3.5, "speech", text, lang, 0.9))
        t0 = time.perf_counter()
        store.write_words(EpisodeWords(ep.id, "speech", "bench/1", segs))
        t_words += time.perf_counter() - t0
        n_segments += len(segs)
    store.close()
    # A segment holds ~11 words, word of rank r with probability 1 / (r H): in ~5 % of the
    # segments at rank 24, ~0.1 % at rank 1200 (5 000 words).
    return {"write_s": t_words, "segments": n_segments,
            "rare": words[min(1199, len(words) - 1)], "common": words[23]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--vocabulary", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "words.sqlite"
        t0 = time.perf_counter()
        built = build(path, args.hours, args.vocabulary, args.seed)
        build_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        store = SqliteStore(path, top_k=0)
        queries = {"label": "object:dog", "rare": f"said:{built['rare']}",
                   "common": f"said:{built['common']}", "phrase": f'said:"{PHRASE}"',
                   "word+label": f"said:{built['common']} object:dog"}
        totals: dict[str, dict[str, int]] = {}
        times: dict[str, list[float]] = {f"{q}@{lv}": [] for q in queries
                                         for lv in ("shot", "episode")}
        for name, text in queries.items():  # warm-up, and the hit counts
            for level in ("shot", "episode"):
                totals.setdefault(name, {})[level] = run_search(store, text, level, 20).total
        for _ in range(args.rounds):
            for name, text in queries.items():
                for level in ("shot", "episode"):
                    t = time.perf_counter()
                    run_search(store, text, level, 20)
                    times[f"{name}@{level}"].append(1000 * (time.perf_counter() - t))
        store.close()
    out = {
        "hours": args.hours, "segments": built["segments"], "build_s": round(build_s, 1),
        "write_words_segments_per_s": round(built["segments"] / built["write_s"]),
        "write_words_s_per_hour": round(built["write_s"] / args.hours, 3),
        "catalogue_mb": round(size / 2**20, 1),
        "queries": queries, "hits": totals,
        "ms": {k: {"median": round(statistics.median(v), 2), "min": round(min(v), 2),
                   "max": round(max(v), 2)} for k, v in times.items()},
        "vs_label_baseline": {k: round(statistics.median(v) / statistics.median(
            times["label@" + k.split("@")[1]]), 2) for k, v in times.items()},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
