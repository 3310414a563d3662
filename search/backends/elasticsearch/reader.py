"""Reading the Elasticsearch catalogue: episode states, labels with their counts,
programmes, episodes and their segments (as the read models of ``tvindex.core.records``),
thumbnails, score vectors and embeddings. Shots are read in their episode's committed
generation only."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from search.backends.derive import (
    kept_labels,
    no_embeddings,
    programme_embeddings,
    segment_view,
    top_labels,
)
from search.backends.elasticsearch import query as es_query
from search.backends.elasticsearch.documents import stats_of, unb64
from search.backends.elasticsearch.indices import EsIndices
from tvindex.core.records import (
    EpisodeDetail,
    EpisodeState,
    EpisodeSummary,
    LabelInfo,
    Level,
    ProgrammeDetail,
    ProgrammeSummary,
    SegmentView,
    TopLabel,
    shot_id,
)
from tvindex.core.store import NotFound, StoreError
from tvindex.core.timecode import EpisodeClock
from tvindex.core.vectors import unit_rows

MAX_TERMS = 10_000  # ids in one terms filter (the cluster's default limit is 65 536)


class EsReader(EsIndices):
    """The :class:`tvindex.core.store.CatalogueReader` half of ``EsStore`` (search aside:
    ``search.backends.elasticsearch.search``)."""

    min_score: float
    top_k: int

    def episode_states(self) -> list[EpisodeState]:
        out = []
        for hit in self._scan("episodes", {"match_all": {}},
                              [{"programme_id": "asc"}, {"id": "asc"}],
                              ["id", "programme_id", "title", "status", "fingerprint",
                               "config_version", "error", "indexed_at", "n_segments",
                               "n_frames"]):
            s = hit["_source"]
            out.append(EpisodeState(s["id"], s["programme_id"], s["title"], s["status"],
                                    s.get("fingerprint"), s.get("config_version"),
                                    s.get("error"), s.get("indexed_at"), s.get("n_segments"),
                                    s.get("n_frames")))
        return out

    def _labels_by_id(self) -> dict[int, tuple[str, int, str]]:
        out = {}
        for s in self._slots():
            for i, name in enumerate(s["labels"]):
                out[int(s["first_id"]) + i] = (s["name"], i, name)
        return out

    def _terms_counts(self, kind: str, query: dict[str, Any], size: int) -> dict[int, int]:
        resp = self._call(f"count labels in {kind}", self.es.search, index=self._idx[kind],
                          size=0, query=query,
                          aggs={"l": {"terms": {"field": "present", "size": max(size, 1)}}})
        return {int(b["key"]): int(b["doc_count"])
                for b in resp["aggregations"]["l"]["buckets"]}

    def labels(self, label_set: str | None = None, match: str | None = None,
               counts: bool = True) -> list[LabelInfo]:
        slots = self._slots(reload=True)
        wanted = es_query.ascii_lower(match) if match else None
        rows = []
        for s in slots:
            if label_set and s["name"] != label_set:
                continue
            for i, name in enumerate(s["labels"]):
                if wanted is not None and wanted not in es_query.ascii_lower(name):
                    continue
                rows.append((int(s["first_id"]) + i, s["name"], s["activation"], name))
        shots: dict[int, int] = {}
        eps: dict[int, int] = {}
        if counts and rows:
            n = sum(int(s["size"]) for s in slots)
            eps = self._terms_counts("episodes", {"term": {"status": "indexed"}}, n)
            shots = self._terms_counts("shots", {"bool": {"must_not": self._hidden_shots()}}, n)
        return [LabelInfo(r[0], r[1], r[2], r[3], shots.get(r[0], 0), eps.get(r[0], 0))
                for r in rows]

    def programmes(self) -> list[ProgrammeSummary]:
        progs = [h["_source"] for h in self._scan(
            "programmes", {"match_all": {}}, [{"seq": "asc"}, {"id": "asc"}],
            ["id", "title", "description", "genre", "seq"])]
        agg: dict[str, list[Any]] = {p["id"]: [0, 0, None, None] for p in progs}
        for hit in self._scan("episodes", {"match_all": {}}, [{"id": "asc"}],
                              ["programme_id", "status", "air_date"]):
            s = hit["_source"]
            a = agg.get(s["programme_id"])
            if a is None:
                continue
            a[0] += 1
            a[1] += s.get("status") == "indexed"
            d = s.get("air_date")
            if d:
                a[2] = d if a[2] is None else min(a[2], d)
                a[3] = d if a[3] is None else max(a[3], d)
        progs.sort(key=lambda p: (p["title"], p["seq"]))
        return [ProgrammeSummary(p["id"], p["title"], p.get("description", ""),
                                 p.get("genre", ""), *agg[p["id"]]) for p in progs]

    def programme_titles(self) -> list[tuple[str, str]]:
        return [(h["_source"]["id"], h["_source"]["title"]) for h in self._scan(
            "programmes", {"match_all": {}}, [{"seq": "asc"}, {"id": "asc"}], ["id", "title"])]

    def _top_labels(self, src: dict[str, Any]) -> dict[str, tuple[TopLabel, ...]]:
        """Kept labels per label set, by score (ties by label id), with coverage."""
        stats = {name: stats_of(vec) for name, vec in (src.get("vectors") or {}).items()}
        by_set = {s["name"]: s["labels"] for s in self._slots()}
        return top_labels((score, lid, name, by_set[name][i], cov)
                          for lid, name, i, score, cov in kept_labels(
                              stats, self._first_ids(), self.min_score, self.top_k))

    def programme(self, programme_id: str) -> ProgrammeDetail:
        doc = self._get("programmes", programme_id)
        if doc is None:
            raise NotFound(f"unknown programme {programme_id!r}")
        src = doc["_source"]
        eps = [h["_source"] for h in self._scan(
            "episodes", {"term": {"programme_id": programme_id}}, [{"id": "asc"}],
            ["id", "title", "air_date", "status", "n_segments", "duration_s"])]
        eps.sort(key=lambda e: (e.get("air_date") is not None, e.get("air_date") or "", e["id"]))
        return ProgrammeDetail(
            src["id"], src["title"], src.get("description", ""), src.get("genre", ""),
            tuple(EpisodeSummary(e["id"], e["title"], e.get("air_date"), e["status"],
                                 e.get("n_segments"), e.get("duration_s")) for e in eps),
            self._top_labels(src))

    def episode(self, episode_id: str) -> EpisodeDetail:
        src = self._episode_doc(episode_id)["_source"]
        prog = self._get("programmes", src["programme_id"], source=["title"])
        keys = ("id", "title", "air_date", "description", "media_path", "start_s", "end_s",
                "status", "error", "duration_s", "n_frames", "n_segments", "sampling")
        return EpisodeDetail(
            *(src.get(k) for k in keys), programme_id=src["programme_id"],
            programme_title=prog["_source"]["title"] if prog else None,
            reindex_requested=src.get("status") == "indexed" and src.get("fingerprint") is None,
            top_labels=self._top_labels(src), clock=_clock(src))

    def episode_clocks(self, episode_ids: Sequence[str]) -> dict[str, EpisodeClock]:
        docs = self._mget("episodes", list(episode_ids),
                          source=["frame_rate", "start_tc", "drop_frame", "vfr", "start_s"])
        clocks = {eid: _clock(src) for eid, src in docs.items()}
        return {eid: c for eid, c in clocks.items() if c is not None}

    def segments(self, episode_id: str) -> list[SegmentView]:
        src = self._episode_doc(episode_id)["_source"]
        if not src.get("gen") or src.get("status") != "indexed":
            return []
        by_set = {s["name"]: s["labels"] for s in self._slots()}
        return [segment_view(episode_id, s["index"], s["start_s"], s["end_s"], s["time_s"],
                             s["n_frames"], s.get("top") or {}, by_set)
                for s in (hit["_source"] for hit in self._scan(
                    "shots", {"bool": {"filter": [{"term": {"episode_id": episode_id}},
                                                  {"term": {"gen": src["gen"]}}]}},
                    [{"index": "asc"}],
                    ["index", "start_s", "end_s", "time_s", "n_frames", "top"]))]

    def thumbnail(self, episode_id: str, index: int) -> bytes:
        src = self._episode_doc(episode_id)["_source"]
        doc = None
        if src.get("gen") and src.get("status") == "indexed":
            doc = self._get("shots", f"{shot_id(episode_id, index)}#{src['gen']}",
                            source=["thumbnail"])
        if doc is None or not doc["_source"].get("thumbnail"):
            raise NotFound(f"no thumbnail for {shot_id(episode_id, index)}")
        return base64.b64decode(doc["_source"]["thumbnail"])

    def vectors(self, level: Level, label_set: str) -> tuple[list[str], np.ndarray]:
        if level == "episode":
            kind, query = "episodes", {"term": {"status": "indexed"}}
        elif level == "programme":
            kind, query = "programmes", {"range": {"indexed_episodes": {"gt": 0}}}
        else:
            raise StoreError("vectors are kept per episode and per programme")
        ids, rows = [], []
        for hit in self._scan(kind, query, [{"id": "asc"}], ["id", f"vectors.{label_set}"]):
            vec = (hit["_source"].get("vectors") or {}).get(label_set)
            if vec is not None:
                ids.append(hit["_source"]["id"])
                rows.append(unb64(vec["score"]))
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        return ids, np.stack(rows)

    # --- embeddings ----------------------------------------------------------------------
    def embedding_model(self) -> str | None:
        resp = self._call("read embedding model", self.es.search, index=self._idx["episodes"],
                          query={"bool": {"filter": [{"term": {"status": "indexed"}},
                                                     {"exists": {"field": "embedding_model"}}]}},
                          sort=[{"embedding_at": "desc"}, {"id": "desc"}], size=1,
                          source=["embedding_model"], track_total_hits=False)
        hits = resp["hits"]["hits"]
        return hits[0]["_source"]["embedding_model"] if hits else None

    def embeddings(self, level: Level, episode_ids: Sequence[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
        """See ``CatalogueStore.embeddings``. Episodes and programmes come from one scan of
        the indexed episodes of the current model (programmes: frame-weighted means computed
        here); shots from a ``search_after`` scan of the shots of that model reading only
        ``episode_id``, ``index``, ``gen`` and ``embedding``, minus the generations their
        episodes have not committed (as searches hide them)."""
        if level not in ("shot", "episode", "programme"):
            raise StoreError(f"unknown level {level!r}")
        model = self.embedding_model()
        if model is None:
            return no_embeddings()
        wanted = None if episode_ids is None else sorted(set(episode_ids))
        if wanted is not None and not wanted:
            return no_embeddings()
        clauses: list[dict[str, Any]] = [{"term": {"status": "indexed"}},
                                         {"term": {"embedding_model": model}}]
        if level == "programme":
            if wanted is not None:
                progs = sorted({src["programme_id"] for src in self._mget(
                    "episodes", wanted, ["programme_id"]).values()})
                if not progs:
                    return no_embeddings()
                clauses.append({"terms": {"programme_id": progs}})
            return self._programme_embeddings(clauses)
        # Longer id lists than a terms query takes (65 536 by default) filter here instead.
        keep = set(wanted) if wanted is not None and len(wanted) > MAX_TERMS else None
        if wanted is not None and keep is None:
            clauses.append({"terms": {"id": wanted}})
        if level == "episode":
            ids, rows = [], []
            for hit in self._scan("episodes", {"bool": {"filter": clauses}}, [{"id": "asc"}],
                                  ["id", "embedding"]):
                if keep is None or hit["_source"]["id"] in keep:
                    ids.append(hit["_source"]["id"])
                    rows.append(unb64(hit["_source"]["embedding"]))
            return ids, self._matrix(rows, model)
        committed = {h["_source"]["id"]: h["_source"]["gen"] for h in self._scan(
            "episodes", {"bool": {"filter": clauses}}, [{"id": "asc"}], ["id", "gen"])
            if keep is None or h["_source"]["id"] in keep}
        if not committed:
            return no_embeddings()
        shot_filter: list[dict[str, Any]] = [{"term": {"embedding_model": model}}]
        if wanted is not None and len(committed) <= MAX_TERMS:
            shot_filter.append({"terms": {"episode_id": sorted(committed)}})
        query = {"bool": {"filter": shot_filter, "must_not": self._hidden_shots()}}
        # Preallocate for the count; a concurrent write may change it (then grow or trim).
        expected = int(self._call("count shots", self.es.count, index=self._idx["shots"],
                                  query=query)["count"])
        names: list[str] = []
        out: np.ndarray | None = None
        extra: list[np.ndarray] = []
        d = 0
        # (episode id, index) is unique among visible shots; gen breaks ties with a
        # generation written while the scan runs, so search_after never skips a document.
        for hit in self._scan("shots", query, [{"episode_id": "asc"}, {"index": "asc"},
                                                {"gen": "asc"}],
                              ["episode_id", "index", "gen", "embedding"]):
            src = hit["_source"]
            if committed.get(src["episode_id"]) != src.get("gen") or not src.get("embedding"):
                continue
            v = unb64(src["embedding"])
            if out is None:
                d = v.size
                out = np.empty((expected, d), np.float32)
            if v.size != d:
                raise StoreError(f"shot {shot_id(src['episode_id'], src['index'])}: embedding "
                                 f"of dimension {v.size}, model {model!r} has {d}")
            if len(names) < expected:
                out[len(names)] = v
            else:
                extra.append(v)
            names.append(shot_id(src["episode_id"], int(src["index"])))
        if out is None:
            return no_embeddings()
        if extra:
            out = np.concatenate([out, np.stack(extra)])
        elif len(names) < expected:
            out = out[:len(names)].copy()
        return names, unit_rows(out, in_place=True)

    def _programme_embeddings(self, clauses: list[dict[str, Any]]
                              ) -> tuple[list[str], np.ndarray]:
        return programme_embeddings(
            (src["programme_id"], int(src.get("embedding_frames") or 1), unb64(src["embedding"]))
            for src in (hit["_source"] for hit in self._scan(
                "episodes", {"bool": {"filter": clauses}},
                [{"programme_id": "asc"}, {"id": "asc"}],
                ["programme_id", "embedding", "embedding_frames"])))

    @staticmethod
    def _matrix(rows: list[np.ndarray], model: str) -> np.ndarray:
        if not rows:
            return np.zeros((0, 0), np.float32)
        if len({r.size for r in rows}) > 1:
            raise StoreError(f"embeddings of model {model!r} have different dimensions")
        return unit_rows(np.stack(rows), in_place=True)


def _clock(src: dict[str, Any]) -> EpisodeClock | None:
    """An episode document's broadcast clock (None: indexed before clocks were kept)."""
    return EpisodeClock.stored(src.get("frame_rate"), src.get("start_tc"),
                               bool(src.get("drop_frame")), bool(src.get("vfr")),
                               src.get("start_s"))
