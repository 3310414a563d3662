"""The documents of the Elasticsearch catalogue, built from what was indexed: the label
fields of a programme, episode or shot (see ``mappings``), the score/coverage vectors, the
episode metadata kept through a commit, and an episode write's *generation* (a hash of
everything written for it, which names its shot documents: writing the same tags twice
writes the same documents)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import numpy as np

from search.backends.derive import kept_labels
from search.backends.elasticsearch import query as es_query
from tvindex.core.records import EpisodeTags, LabelStats

EPISODE_META = ("id", "programme_id", "title", "media_path", "air_date", "description",
                "start_s", "end_s", "genre_lc", "seq")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode("ascii")


def unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float32)


def generation(tags: EpisodeTags) -> str:
    """A hash of everything written for an episode: same tags, same shot document ids."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{tags.episode_id}|{tags.fingerprint}|{tags.config_version}|{tags.sampling}|"
             f"{tags.duration_s}".encode())

    def stats(d: dict[str, LabelStats]) -> None:
        for name in sorted(d):
            st = d[name]
            h.update(f"{name}|{st.n_frames}|".encode())
            h.update(np.ascontiguousarray(st.score, np.float32).tobytes())
            h.update(np.ascontiguousarray(st.coverage, np.float32).tobytes())

    # Embeddings count only when the episode has some, so tags without any keep the
    # generation they had before embeddings were stored.
    embedded = tags.embedding is not None
    for seg in tags.segments:
        h.update(f"|{seg.index}|{seg.start_s}|{seg.end_s}|{seg.time_s}|".encode())
        stats(seg.stats)
        h.update(hashlib.sha256(seg.thumbnail or b"").digest())
        if embedded and seg.embedding is not None:
            h.update(b"|e|" + np.ascontiguousarray(seg.embedding, np.float32).tobytes())
    stats(tags.stats)
    if embedded:
        h.update(f"|{tags.embedding_model}|".encode())
        h.update(np.ascontiguousarray(tags.embedding, np.float32).tobytes())
    return h.hexdigest()



def label_fields(stats: dict[str, LabelStats], first: dict[str, int], min_score: float,
                 top_k: int, present_ok: dict[str, np.ndarray] | None = None
                 ) -> dict[str, Any]:
    """The label fields of a document (see mappings): kept labels with their scores."""
    labels: list[str] = []
    present: list[str] = []
    p: dict[str, float] = {}
    q: dict[str, float] = {}
    s: dict[str, float] = {}
    for lid, name, i, v, cov in kept_labels(stats, first, min_score, top_k):
        key = str(lid)
        labels.append(key)
        s[key] = v
        p[key] = es_query.clamp(v)
        q[key] = es_query.clamp(1.0 - v)
        if cov > 0 and (present_ok is None or present_ok[name][i]):
            present.append(key)
    return {"labels": labels, "present": present, "p": p, "q": q, "s": s, "rf": dict(p)}


def vector_fields(stats: dict[str, LabelStats]) -> dict[str, Any]:
    return {name: {"n_frames": int(st.n_frames), "score": b64(st.score),
                   "coverage": b64(st.coverage)} for name, st in stats.items()}


def stats_of(vec: dict[str, Any]) -> LabelStats:
    return LabelStats(unb64(vec["score"]), unb64(vec["coverage"]), int(vec["n_frames"]))


EMPTY_LABELS = {"labels": [], "present": [], "p": {}, "q": {}, "s": {}, "rf": {}, "vectors": {}}
