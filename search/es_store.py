"""The scale-out catalogue store: Elasticsearch (official client, 8.x API), with the same
interface and query semantics as the SQLite backend (``search/sqlite_store.py``).

Layout: see ``search/es_mappings.py`` (four indices behind aliases; label scores as
``rank_features``, kept labels as ``keyword``, exact per-label floats, text with ca/es/en
analyzers). Document ids are deterministic: programme id, episode id, and for shots
``EPISODE@INDEX#GEN`` where GEN is a hash of everything written for the episode (so writing
the same tags twice writes the same documents: idempotent).

**Atomic episode replacement.** Elasticsearch has no multi-document transactions; an episode
is one episode document plus many shot documents. ``write_episode`` therefore:

1. marks the episode ``dirty`` with ``pending_gen = GEN`` (readers now hide every shot of it
   whose generation is not the committed one);
2. bulk-writes the new shots beside the old ones (ids differ by GEN; a failure here leaves the
   old generation visible and the episode dirty);
3. commits by replacing the episode document in one write (status, fingerprint, labels,
   vectors, ``gen = GEN``), conditional on its sequence number;
4. deletes the shots of other generations, clears ``dirty``, and recomputes the programme's
   aggregates (flagged ``stale`` before the commit; conditional write, retried on conflict).

Searches at shot level first read the (few) dirty episodes and exclude their non-committed
shots, then verify every hit's generation against its episode and retry on a race, so a
search never shows a half-written episode or a mix of two generations. A crash after step 3
is repaired by the next ``upsert_catalogue`` (which every indexing run calls): leftover
generations of committed episodes are deleted and stale programmes recomputed. A crash before
step 3 leaves the episode in its previous state (pending, or indexed with the old tags), and
the next run redoes it.

**Ranking** (``search/es_query.py``, run by ``search/es_search.py``): the cluster orders
candidates by n*ln(C) + the log-sum of the documented score, on exact float32 values; the
store fetches hits in that order (``search_after``) until the float32 rounding can no longer
change which hits belong to the requested page, then re-scores them exactly with
``search.ranking.rank``. Scores, evidence and order are the SQLite backend's; ties are broken
by insertion order (programme/episode
``seq``, then shot index), as SQLite's row keys do.

**Embeddings** (mapping version 2, see ``es_mappings``): each shot document carries its
segment's mean embedding and the model's identity, and the episode document (written by the
same commit) the episode's, so they are replaced, hidden and dropped exactly like the label
fields. Programme embeddings are computed on read from the episodes'.

**Model and mapping changes**: :meth:`EsStore.rebuilding` builds a fresh set of indices while
searches keep reading the current ones, then swaps every alias in one ``_aliases`` call; a
newer ``MAPPING_VERSION`` copies each index (``_reindex``) and swaps its alias on open.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from search import es_query
from search.es_client import EsClient, EsConfig
from search.es_mappings import KINDS, MAPPING_VERSION, alias, concrete, template_body
from search.es_search import EsSearch
from search.store import embedding_frames, episode_embeddings, keep_mask, no_embeddings
from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeRecord,
    EpisodeState,
    EpisodeTags,
    LabelInfo,
    LabelStats,
    Level,
    ProgrammeRecord,
    shot_id,
)
from tvindex.core.stats import combine
from tvindex.core.store import CatalogueStore, NotFound, StoreError
from tvindex.core.vectors import unit_rows

log = logging.getLogger(__name__)
SCAN_PAGE = 1000
MAX_TERMS = 10_000  # ids in one terms filter (the cluster's default limit is 65 536)
ABANDONED_WRITE_S = 3600  # an episode write takes seconds to minutes; older ones were abandoned
EPISODE_META = ("id", "programme_id", "title", "media_path", "air_date", "description",
                "start_s", "end_s", "genre_lc", "seq")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode("ascii")


def _unb64(s: str) -> np.ndarray:
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


def _label_fields(stats: dict[str, LabelStats], first: dict[str, int], min_score: float,
                  top_k: int, present_ok: dict[str, np.ndarray] | None = None
                  ) -> dict[str, Any]:
    """The label fields of a document (see es_mappings): kept labels with their scores."""
    labels: list[str] = []
    present: list[str] = []
    p: dict[str, float] = {}
    q: dict[str, float] = {}
    s: dict[str, float] = {}
    for name, st in stats.items():
        keep = keep_mask(st, min_score, top_k)
        for i in np.flatnonzero(keep):
            key = str(first[name] + int(i))
            v = float(st.score[i])
            labels.append(key)
            s[key] = v
            p[key] = es_query.clamp(v)
            q[key] = es_query.clamp(1.0 - v)
            if st.coverage[i] > 0 and (present_ok is None or present_ok[name][i]):
                present.append(key)
    return {"labels": labels, "present": present, "p": p, "q": q, "s": s, "rf": dict(p)}


def _vectors(stats: dict[str, LabelStats]) -> dict[str, Any]:
    return {name: {"n_frames": int(st.n_frames), "score": _b64(st.score),
                   "coverage": _b64(st.coverage)} for name, st in stats.items()}


def _stats_of(vec: dict[str, Any]) -> LabelStats:
    return LabelStats(_unb64(vec["score"]), _unb64(vec["coverage"]), int(vec["n_frames"]))


_EMPTY_LABELS = {"labels": [], "present": [], "p": {}, "q": {}, "s": {}, "rf": {}, "vectors": {}}


class EsStore(EsSearch, CatalogueStore):
    backend = "elasticsearch"
    supports_facets = True

    def __init__(self, cfg: EsConfig, *, min_score: float = 0.05, top_k: int = 10,
                 es: Any | None = None) -> None:
        self.cfg = cfg
        self.client = EsClient(cfg, es)
        self.es = self.client.es
        self.min_score = min_score
        self.top_k = top_k
        self._idx = {kind: alias(cfg.index_prefix, kind) for kind in KINDS}
        self._slots_cache: list[dict[str, Any]] = []
        self._ensure_indices()

    @classmethod
    def from_settings(cls, settings: Any) -> EsStore:
        return cls(EsConfig.from_settings(settings),
                   min_score=settings.aggregation.store_min_score,
                   top_k=settings.aggregation.store_top_k)

    def close(self) -> None:
        self.client.close()

    # --- plumbing ------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        return self.client.call(what, fn, **kwargs)

    def _ensure_indices(self) -> None:
        from elasticsearch import BadRequestError

        info = self._call("connect", self.es.info)
        self.server_version = str(info["version"]["number"])
        prefix = self.cfg.index_prefix
        for kind in KINDS:
            name = alias(prefix, kind)
            if not self._call("check alias", self.es.indices.exists_alias, name=name):
                # Templates are written only when indices are built, so a reader whose key
                # may only read and search the indices never needs template privileges.
                self._put_template(kind)
                try:
                    self._call("create index", self.es.indices.create,
                               index=concrete(prefix, kind), aliases={name: {}})
                except BadRequestError as exc:
                    if "already_exists" not in str(exc):
                        raise StoreError(f"cannot create index {concrete(prefix, kind)}: "
                                         f"{exc}") from exc
                continue
            version = self._mapping_version(name)
            if version > MAPPING_VERSION:
                raise StoreError(f"index {name} has mapping version {version}, newer than this "
                                 f"tvindex ({MAPPING_VERSION}); upgrade tvindex")
            if version < MAPPING_VERSION:
                self._migrate(kind)

    def _put_template(self, kind: str) -> None:
        prefix = self.cfg.index_prefix
        self._call("put index template", self.es.indices.put_index_template,
                   name=alias(prefix, kind),
                   **template_body(prefix, kind, self.cfg.shards, self.cfg.replicas))

    def _mapping_version(self, index: str) -> int:
        resp = self._call("get mapping", self.es.indices.get_mapping, index=index)
        versions = [int((m.get("mappings", {}).get("_meta") or {}).get("mapping_version", 0))
                    for m in resp.values()]
        return min(versions) if versions else 0

    def schema_version(self) -> int:
        return min(self._mapping_version(self._idx[k]) for k in KINDS)

    def _concrete_of(self, name: str) -> list[str]:
        from elasticsearch import NotFoundError

        try:
            return sorted(self._call("get alias", self.es.indices.get_alias, name=name).keys())
        except NotFoundError:
            return []

    def _migrate(self, kind: str) -> None:
        """Copy an index built with an older mapping into a new one, then swap the alias in
        one atomic call (readers see the old index until then) and drop the old index."""
        name = self._idx[kind]
        old = self._concrete_of(name)
        new = concrete(self.cfg.index_prefix, kind, f"{time.time_ns():x}")
        log.warning("migrating %s (%s) to mapping version %d: %s", name, old, MAPPING_VERSION, new)
        self._put_template(kind)
        self._call("create index", self.es.indices.create, index=new)
        resp = self._call("reindex", self.es.reindex, source={"index": name},
                          dest={"index": new}, refresh=True, wait_for_completion=True)
        if resp.get("failures"):
            self._call("delete index", self.es.indices.delete, index=new)
            raise StoreError(f"migrating {name}: {len(resp['failures'])} document(s) failed: "
                             f"{resp['failures'][:3]}")
        actions = [{"remove": {"index": i, "alias": name}} for i in old]
        actions.append({"add": {"index": new, "alias": name}})
        self._call("swap alias", self.es.indices.update_aliases, actions=actions)
        self._call("delete index", self.es.indices.delete, index=",".join(old))

    @contextmanager
    def rebuilding(self) -> Iterator[EsStore]:
        """Re-index into fresh indices (a model or vocabulary change): inside the block this
        store reads and writes a new set of indices while every other reader keeps the
        current ones; on success all aliases move to the new set in one atomic ``_aliases``
        call and the old indices are deleted; on an exception the new ones are deleted::

            with store.rebuilding():
                run_index(catalogue, store, taggers, settings, force=True)
        """
        prefix = self.cfg.index_prefix
        build = f"{time.time_ns():x}"
        new = {kind: concrete(prefix, kind, build) for kind in KINDS}
        for kind, index in new.items():
            self._put_template(kind)  # the current shards/replicas settings apply
            self._call("create index", self.es.indices.create, index=index)
        saved, saved_slots = self._idx, self._slots_cache
        self._idx, self._slots_cache = new, []
        try:
            yield self
        except BaseException:
            self._idx, self._slots_cache = saved, saved_slots
            self._call("delete index", self.es.indices.delete, index=",".join(new.values()))
            raise
        actions, old = [], []
        for kind in KINDS:
            name = alias(prefix, kind)
            for index in self._concrete_of(name):
                actions.append({"remove": {"index": index, "alias": name}})
                old.append(index)
            actions.append({"add": {"index": new[kind], "alias": name}})
        self._call("swap aliases", self.es.indices.update_aliases, actions=actions)
        self._idx, self._slots_cache = saved, []
        if old:
            self._call("delete index", self.es.indices.delete, index=",".join(old))

    def _get(self, kind: str, doc_id: str, **kwargs: Any) -> dict[str, Any] | None:
        from elasticsearch import NotFoundError

        try:
            return self._call(f"get {kind}", self.es.get, index=self._idx[kind], id=doc_id,
                              **kwargs).body
        except NotFoundError:
            return None

    def _mget(self, kind: str, ids: Sequence[str], source: Any = True) -> dict[str, dict]:
        out: dict[str, dict] = {}
        ids = list(dict.fromkeys(ids))
        for i in range(0, len(ids), SCAN_PAGE):
            resp = self._call(f"mget {kind}", self.es.mget, index=self._idx[kind],
                              ids=ids[i:i + SCAN_PAGE], source=source)
            for d in resp["docs"]:
                if d.get("found"):
                    out[d["_id"]] = d["_source"]
        return out

    def _scan(self, kind: str, query: dict[str, Any], sort: list[Any],
              source: Any = True) -> Iterator[dict[str, Any]]:
        """Every matching document, in ``sort`` order (which must be unique), by pages."""
        after = None
        while True:
            kwargs: dict[str, Any] = {"index": self._idx[kind], "query": query, "sort": sort,
                                      "size": SCAN_PAGE, "source": source,
                                      "track_total_hits": False}
            if after is not None:
                kwargs["search_after"] = after
            hits = self._call(f"search {kind}", self.es.search, **kwargs)["hits"]["hits"]
            yield from hits
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def _delete_by_query(self, kind: str, query: dict[str, Any], what: str) -> None:
        resp = self._call(what, self.es.delete_by_query, index=self._idx[kind], query=query,
                          refresh=True, conflicts="proceed")
        if resp.get("failures"):
            raise StoreError(f"{what}: {len(resp['failures'])} document(s) could not be "
                             f"deleted: {resp['failures'][:3]}")

    def _next_seq(self, kind: str) -> int:
        resp = self._call(f"max seq of {kind}", self.es.search, index=self._idx[kind], size=0,
                          aggs={"m": {"max": {"field": "seq"}}})
        value = resp["aggregations"]["m"]["value"]
        return int(value) + 1 if value is not None else 1

    # --- label sets ----------------------------------------------------------------------
    def _slots(self, reload: bool = False) -> list[dict[str, Any]]:
        """The label-set registry: slot k holds the k-th registered set. Slots are created
        with op_type=create, so concurrent registrations never share one; a set's labels get
        the global ids first_id .. first_id + size - 1, as in the SQLite backend."""
        if self._slots_cache and not reload:
            return self._slots_cache
        slots: list[dict[str, Any]] = []
        while True:
            ids = [f"labelset-{k}" for k in range(len(slots), len(slots) + 16)]
            found = self._mget("meta", ids)
            for doc_id in ids:
                if doc_id not in found:
                    self._slots_cache = slots
                    return slots
                slots.append(found[doc_id])

    def _first_ids(self) -> dict[str, int]:
        return {s["name"]: int(s["first_id"]) for s in self._slots()}

    def register_label_sets(self, label_sets: Sequence[LabelSet]) -> None:
        from elasticsearch import ConflictError

        for ls in label_sets:
            while True:
                slots = self._slots(reload=True)
                same = [s for s in slots if s["name"] == ls.name]
                if same:
                    if same[0]["fingerprint"] != ls.fingerprint():
                        raise StoreError(
                            f"label set {ls.name!r} in {self.cfg.index_prefix}* has different "
                            "labels from the tagger's; rebuild the indices (EsStore.rebuilding) "
                            "or use another elasticsearch.index_prefix")
                    break
                k = len(slots)
                first = 1 + sum(int(s["size"]) for s in slots)
                doc = {"kind": "labelset", "slot": k, "name": ls.name,
                       "activation": ls.activation, "fingerprint": ls.fingerprint(),
                       "first_id": first, "size": len(ls), "labels": list(ls.labels)}
                try:
                    self._call("register label set", self.es.create, index=self._idx["meta"],
                               id=f"labelset-{k}", document=doc, refresh=True)
                    break
                except ConflictError:
                    continue  # another process took slot k: re-read and try again
        self._slots(reload=True)

    def label_sets(self) -> list[LabelSet]:
        return [LabelSet(s["name"], s["activation"], tuple(s["labels"]))
                for s in self._slots(reload=True)]

    # --- writing -------------------------------------------------------------------------
    def upsert_catalogue(self, programmes: Sequence[ProgrammeRecord],
                         episodes: Sequence[EpisodeRecord]) -> None:
        old_p = self._mget("programmes", [p.id for p in programmes])
        known = set(old_p) | {p.id for p in programmes}
        unknown = [e for e in episodes if e.programme_id not in known]
        if unknown:
            rest = set(self._mget("programmes", [e.programme_id for e in unknown]))
            for e in unknown:
                if e.programme_id not in rest:
                    raise StoreError(f"episode {e.id}: unknown programme {e.programme_id!r}")
        genres = {pid: src.get("genre_lc", "") for pid, src in old_p.items()}
        seq = self._next_seq("programmes")
        actions: list[tuple[dict, dict | None]] = []
        regenred: list[str] = []
        for p in programmes:
            meta = {"title": p.title, "description": p.description, "genre": p.genre,
                    "genre_lc": es_query.ascii_lower(p.genre)}
            if p.id in old_p:
                if old_p[p.id].get("genre_lc") != meta["genre_lc"]:
                    regenred.append(p.id)
                actions.append(({"update": {"_index": self._idx["programmes"], "_id": p.id}},
                                {"doc": meta}))
            else:
                doc = {"id": p.id, "seq": seq, **meta, "air_dates": [], "indexed_episodes": 0,
                       "stale": False, "n_frames": 0, **_EMPTY_LABELS}
                seq += 1
                actions.append(({"create": {"_index": self._idx["programmes"], "_id": p.id}},
                                doc))
            genres[p.id] = meta["genre_lc"]
        self._create_or_update("programmes", actions, "write programmes")

        old_e = self._mget("episodes", [e.id for e in episodes], source=list(EPISODE_META) +
                           ["status", "gen"])
        missing_genres = {e.programme_id for e in episodes} - set(genres)
        for pid, src in self._mget("programmes", list(missing_genres), ["genre_lc"]).items():
            genres[pid] = src.get("genre_lc", "")
        seq = self._next_seq("episodes")
        actions = []
        moved: list[tuple[str, dict[str, Any]]] = []
        stale: set[str] = set()
        for e in episodes:
            meta = {"programme_id": e.programme_id, "title": e.title,
                    "media_path": e.media_path,
                    "air_date": e.air_date.isoformat() if e.air_date else None,
                    "description": e.description, "start_s": e.start_s, "end_s": e.end_s,
                    "genre_lc": genres.get(e.programme_id, "")}
            if e.id in old_e:
                src = old_e[e.id]
                denorm = {k: meta[k] for k in ("programme_id", "air_date", "genre_lc")}
                if any(src.get(k) != v for k, v in denorm.items()):
                    moved.append((e.id, denorm))
                    if src.get("status") == "indexed":
                        stale |= {src.get("programme_id"), e.programme_id}
                actions.append(({"update": {"_index": self._idx["episodes"], "_id": e.id}},
                                {"doc": meta}))
            else:
                doc = {"id": e.id, "seq": seq, **meta, "status": "pending", "fingerprint": None,
                       "config_version": None, "error": None, "indexed_at": None,
                       "duration_s": None, "n_frames": None, "n_segments": None,
                       "sampling": None, "gen": None, "pending_gen": None, "dirty": False,
                       **_EMPTY_LABELS}
                seq += 1
                actions.append(({"create": {"_index": self._idx["episodes"], "_id": e.id}},
                                doc))
        self._create_or_update("episodes", actions, "write episodes")
        # Denormalised copies (filters at shot level) follow the metadata.
        for pid in regenred:
            for kind in ("episodes", "shots"):
                self._update_by_query(kind, {"term": {"programme_id": pid}},
                                      {"genre_lc": genres[pid]})
        for eid, denorm in moved:
            self._update_by_query("shots", {"term": {"episode_id": eid}}, denorm)
        for pid in stale - {None}:
            self._refresh_programme(pid)
        self._repair()

    def _create_or_update(self, kind: str, actions: list[tuple[dict, dict | None]],
                          what: str) -> None:
        """New documents are created (never overwritten: a concurrent indexer, e.g. another
        ``--shard``, may have created and even indexed one meanwhile); those that turn out to
        exist get only their metadata updated."""
        if not actions:
            return
        conflicts: list[str] = []
        self.client.bulk(actions, what, refresh=True, conflicts=conflicts)
        if not conflicts:
            return
        existing = set(conflicts)
        meta_keys = ("title", "description", "genre", "genre_lc", "programme_id",
                     "media_path", "air_date", "start_s", "end_s")
        updates = []
        for action, src in actions:
            doc_id = action.get("create", {}).get("_id")
            if doc_id in existing and src is not None:
                updates.append(({"update": {"_index": self._idx[kind], "_id": doc_id}},
                                {"doc": {k: v for k, v in src.items() if k in meta_keys}}))
        self.client.bulk(updates, what, refresh=True)

    def _update_by_query(self, kind: str, query: dict[str, Any], values: dict[str, Any]) -> None:
        source = " ".join(f"ctx._source.{k} = params.{k};" for k in values)
        resp = self._call(f"update {kind}", self.es.update_by_query, index=self._idx[kind],
                          query=query, script={"source": source, "params": values,
                                               "lang": "painless"},
                          refresh=True, conflicts="proceed")
        if resp.get("failures"):
            raise StoreError(f"updating {kind}: {resp['failures'][:3]}")

    def _repair(self) -> None:
        """Finish what a crashed writer committed: drop leftover shot generations of
        committed episodes, and recompute programmes flagged stale. An uncommitted write
        (``pending_gen`` != ``gen``) is left to its writer, which may be alive, for
        ``ABANDONED_WRITE_S``; after that its shots are dropped (the committed state stays)."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=ABANDONED_WRITE_S)
        for hit in self._scan("episodes", {"term": {"dirty": True}}, [{"id": "asc"}],
                              ["id", "gen", "pending_gen", "dirty_since"]):
            src = hit["_source"]
            committed = src.get("gen") or "-"
            since = src.get("dirty_since")
            abandoned = since is not None and dt.datetime.fromisoformat(since) < cutoff
            if src.get("pending_gen") == committed or abandoned:
                self._drop_other_generations(src["id"], src.get("gen"))
                self._call("clear dirty", self.es.update, index=self._idx["episodes"],
                           id=src["id"], doc={"dirty": False}, refresh=True)
        for hit in self._scan("programmes", {"term": {"stale": True}}, [{"id": "asc"}], ["id"]):
            self._refresh_programme(hit["_source"]["id"])

    def _drop_other_generations(self, episode_id: str, gen: str | None) -> None:
        query: dict[str, Any] = {"bool": {"filter": [{"term": {"episode_id": episode_id}}]}}
        if gen:
            query["bool"]["must_not"] = [{"term": {"gen": gen}}]
        self._delete_by_query("shots", query, f"delete old shots of {episode_id}")

    def _episode_doc(self, episode_id: str) -> dict[str, Any]:
        doc = self._get("episodes", episode_id)
        if doc is None:
            raise NotFound(f"unknown episode {episode_id!r}")
        return doc

    def _commit_episode(self, episode_id: str, seq_no: int, primary_term: int,
                        fields: dict[str, Any]) -> None:
        """Replace the episode document (metadata kept from the stored one) in one write,
        conditional on its sequence number; a concurrent metadata update is merged and the
        write retried."""
        from elasticsearch import ConflictError

        for _ in range(10):
            current = self._episode_doc(episode_id)
            if (current["_seq_no"], current["_primary_term"]) != (seq_no, primary_term):
                seq_no, primary_term = current["_seq_no"], current["_primary_term"]
            doc = {k: current["_source"].get(k) for k in EPISODE_META}
            doc.update(fields)
            try:
                self._call("commit episode", self.es.index, index=self._idx["episodes"],
                           id=episode_id, document=doc, if_seq_no=seq_no,
                           if_primary_term=primary_term, refresh=True)
                return
            except ConflictError:
                continue
        raise StoreError(f"episode {episode_id}: kept changing while being written")

    def _mark_dirty(self, episode_id: str, pending: str) -> dict[str, Any]:
        resp = self._call("mark episode dirty", self.es.update, index=self._idx["episodes"],
                          id=episode_id, doc={"dirty": True, "pending_gen": pending,
                                              "dirty_since": _now()}, refresh=True)
        return resp.body

    def write_episode(self, tags: EpisodeTags) -> None:
        doc = self._episode_doc(tags.episode_id)
        src = doc["_source"]
        first = self._first_ids()
        if set(tags.stats) - set(first):
            first = {s["name"]: int(s["first_id"]) for s in self._slots(reload=True)}
        missing = set(tags.stats) - set(first)
        if missing:
            raise StoreError(f"label sets not registered: {sorted(missing)}")
        embedded = episode_embeddings(tags)
        seg_emb = dict(embedded[1]) if embedded is not None else {}
        gen = generation(tags)
        eid = tags.episode_id
        ep_keep = {name: keep_mask(st, self.min_score, self.top_k)
                   for name, st in tags.stats.items()}

        # 1. new shots stay invisible until the commit
        marked = self._mark_dirty(eid, gen)
        # 2. the new generation beside the old one
        base = {"episode_id": eid, "programme_id": src["programme_id"],
                "genre_lc": src.get("genre_lc", ""), "air_date": src.get("air_date"),
                "ep_seq": src["seq"], "gen": gen}

        def shot_docs() -> Iterator[tuple[dict, dict]]:
            for seg in tags.segments:
                top = {}
                for name, st in seg.stats.items():
                    order = np.argsort(-st.score, kind="stable")[:5]
                    top[name] = [[int(i), round(float(st.score[i]), 4)] for i in order]
                body = {**base, "index": seg.index, "start_s": seg.start_s,
                        "end_s": seg.end_s, "time_s": seg.time_s,
                        "n_frames": next(iter(seg.stats.values())).n_frames if seg.stats else 0,
                        "top": top,
                        "thumbnail": base64.b64encode(seg.thumbnail).decode("ascii")
                        if seg.thumbnail else None,
                        **_label_fields(seg.stats, first, self.min_score, self.top_k, ep_keep)}
                if seg.index in seg_emb:
                    body["embedding"] = _b64(seg_emb[seg.index])
                    body["embedding_model"] = tags.embedding_model
                yield ({"index": {"_index": self._idx["shots"],
                                  "_id": f"{shot_id(eid, seg.index)}#{gen}"}}, body)

        self.client.bulk(shot_docs(), f"write shots of {eid}", refresh=True)
        # 3. commit: one document write
        n_frames = max((st.n_frames for st in tags.stats.values()), default=0)
        emb_fields: dict[str, Any] = {}
        if embedded is not None:
            emb_fields = {"embedding": _b64(embedded[0]),
                          "embedding_model": tags.embedding_model,
                          "embedding_frames": embedding_frames(tags),
                          "embedding_at": time.time_ns()}
        self._flag_programme(src["programme_id"])
        self._commit_episode(eid, marked["_seq_no"], marked["_primary_term"], {
            "status": "indexed", "fingerprint": tags.fingerprint,
            "config_version": tags.config_version, "error": None,
            "indexed_at": _now(),
            "duration_s": tags.duration_s, "n_frames": n_frames,
            "n_segments": len(tags.segments), "sampling": tags.sampling,
            "gen": gen, "pending_gen": gen, "dirty": True,
            **_label_fields(tags.stats, first, self.min_score, self.top_k),
            "vectors": _vectors(tags.stats), **emb_fields})
        # 4. clean up and recompute the programme
        self._finish(eid, gen, src["programme_id"])

    def _finish(self, episode_id: str, gen: str | None, programme_id: str) -> None:
        self._drop_other_generations(episode_id, gen)
        self._call("clear dirty", self.es.update, index=self._idx["episodes"], id=episode_id,
                   doc={"dirty": False}, refresh=True)
        self._refresh_programme(programme_id)

    def _flag_programme(self, programme_id: str) -> None:
        from elasticsearch import NotFoundError

        try:
            self._call("flag programme", self.es.update, index=self._idx["programmes"],
                       id=programme_id, doc={"stale": True}, refresh=True)
        except NotFoundError:
            pass

    def _refresh_programme(self, programme_id: str) -> None:
        """Recompute a programme's aggregates exactly from its indexed episodes' vectors
        (conditional write; recomputed when another writer got there first)."""
        from elasticsearch import ConflictError

        for _ in range(10):
            current = self._get("programmes", programme_id)
            if current is None:
                return
            parts: dict[str, list[LabelStats]] = {}
            dates: set[str] = set()
            count = 0
            for hit in self._scan("episodes", {"bool": {"filter": [
                    {"term": {"programme_id": programme_id}}, {"term": {"status": "indexed"}}]}},
                    [{"id": "asc"}], ["vectors", "air_date"]):
                count += 1
                src = hit["_source"]
                if src.get("air_date"):
                    dates.add(src["air_date"])
                for name, vec in (src.get("vectors") or {}).items():
                    parts.setdefault(name, []).append(_stats_of(vec))
            stats = {name: combine(p) for name, p in parts.items()}
            first = self._first_ids()
            if set(stats) - set(first):
                first = {s["name"]: int(s["first_id"]) for s in self._slots(reload=True)}
            meta = current["_source"]
            doc = {k: meta.get(k) for k in ("id", "seq", "title", "description", "genre",
                                            "genre_lc")}
            doc.update({"air_dates": sorted(dates), "indexed_episodes": count, "stale": False,
                        "n_frames": max((s.n_frames for s in stats.values()), default=0),
                        **_label_fields(stats, first, self.min_score, self.top_k),
                        "vectors": _vectors(stats)})
            try:
                self._call("write programme", self.es.index, index=self._idx["programmes"],
                           id=programme_id, document=doc, if_seq_no=current["_seq_no"],
                           if_primary_term=current["_primary_term"], refresh=True)
                return
            except ConflictError:
                continue
        raise StoreError(f"programme {programme_id}: kept changing while being recomputed")

    def mark_failed(self, episode_id: str, reason: str) -> None:
        doc = self._episode_doc(episode_id)
        src = doc["_source"]
        marked = self._mark_dirty(episode_id, "-")
        self._flag_programme(src["programme_id"])
        self._commit_episode(episode_id, marked["_seq_no"], marked["_primary_term"], {
            "status": "failed", "error": reason, "fingerprint": None, "config_version": None,
            "n_segments": None, "n_frames": None, "indexed_at": src.get("indexed_at"),
            "duration_s": src.get("duration_s"), "sampling": src.get("sampling"),
            "gen": None, "pending_gen": "-", "dirty": True, **_EMPTY_LABELS})
        self._finish(episode_id, None, src["programme_id"])

    def remove_episode(self, episode_id: str) -> None:
        doc = self._episode_doc(episode_id)
        src = doc["_source"]
        marked = self._mark_dirty(episode_id, "-")
        self._commit_episode(episode_id, marked["_seq_no"], marked["_primary_term"], {
            "status": "removed", "gen": None, "pending_gen": "-", "dirty": True,
            **_EMPTY_LABELS})
        self._drop_other_generations(episode_id, None)
        self._call("delete episode", self.es.delete, index=self._idx["episodes"], id=episode_id,
                   refresh=True)
        self._refresh_programme(src["programme_id"])

    def request_reindex(self, episode_id: str) -> None:
        # The indexer skips an episode only when its stored fingerprint matches the media's;
        # clearing it forces the next run to re-index while the old tags keep serving.
        self._episode_doc(episode_id)
        self._call("request re-index", self.es.update, index=self._idx["episodes"],
                   id=episode_id, doc={"fingerprint": None}, refresh=True)

    # --- reading -------------------------------------------------------------------------
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

    def programmes(self) -> list[dict[str, Any]]:
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
        return [{"id": p["id"], "title": p["title"], "description": p.get("description", ""),
                 "genre": p.get("genre", ""), "episodes": agg[p["id"]][0],
                 "indexed_episodes": agg[p["id"]][1], "first_air_date": agg[p["id"]][2],
                 "last_air_date": agg[p["id"]][3]} for p in progs]

    def programme_titles(self) -> list[tuple[str, str]]:
        return [(h["_source"]["id"], h["_source"]["title"]) for h in self._scan(
            "programmes", {"match_all": {}}, [{"seq": "asc"}, {"id": "asc"}], ["id", "title"])]

    def _top_labels(self, src: dict[str, Any], k: int = 10) -> dict[str, list[dict[str, Any]]]:
        """Kept labels per label set, by score (ties by label id), with coverage."""
        first = self._first_ids()
        out: dict[str, list[dict[str, Any]]] = {}
        rows = []
        for name, vec in (src.get("vectors") or {}).items():
            st = _stats_of(vec)
            for i in np.flatnonzero(keep_mask(st, self.min_score, self.top_k)):
                rows.append((-float(st.score[i]), first[name] + int(i), name, int(i),
                             float(st.coverage[i])))
        by_set = {s["name"]: s["labels"] for s in self._slots()}
        for neg, _lid, name, i, cov in sorted(rows):
            bucket = out.setdefault(name, [])
            if len(bucket) < k:
                bucket.append({"label": by_set[name][i], "score": round(-neg, 4),
                               "coverage": round(cov, 4)})
        return out

    def programme(self, programme_id: str) -> dict[str, Any]:
        doc = self._get("programmes", programme_id)
        if doc is None:
            raise NotFound(f"unknown programme {programme_id!r}")
        src = doc["_source"]
        eps = [h["_source"] for h in self._scan(
            "episodes", {"term": {"programme_id": programme_id}}, [{"id": "asc"}],
            ["id", "title", "air_date", "status", "n_segments", "duration_s"])]
        eps.sort(key=lambda e: (e.get("air_date") is not None, e.get("air_date") or "", e["id"]))
        return {"id": src["id"], "title": src["title"], "description": src.get("description", ""),
                "genre": src.get("genre", ""),
                "episodes": [{"id": e["id"], "title": e["title"], "air_date": e.get("air_date"),
                              "status": e["status"], "segments": e.get("n_segments"),
                              "duration_s": e.get("duration_s")} for e in eps],
                "top_labels": self._top_labels(src)}

    def episode(self, episode_id: str) -> dict[str, Any]:
        src = self._episode_doc(episode_id)["_source"]
        prog = self._get("programmes", src["programme_id"], source=["title"])
        keys = ("id", "title", "air_date", "description", "media_path", "start_s", "end_s",
                "status", "error", "duration_s", "n_frames", "n_segments", "sampling")
        out = {k: src.get(k) for k in keys}
        out["programme_id"] = src["programme_id"]
        out["programme_title"] = prog["_source"]["title"] if prog else None
        out["reindex_requested"] = src.get("status") == "indexed" and src.get("fingerprint") is None
        out["top_labels"] = self._top_labels(src)
        return out

    def segments(self, episode_id: str) -> list[dict[str, Any]]:
        src = self._episode_doc(episode_id)["_source"]
        if not src.get("gen") or src.get("status") != "indexed":
            return []
        by_set = {s["name"]: s["labels"] for s in self._slots()}
        out = []
        for hit in self._scan("shots", {"bool": {"filter": [
                {"term": {"episode_id": episode_id}}, {"term": {"gen": src["gen"]}}]}},
                [{"index": "asc"}], ["index", "start_s", "end_s", "time_s", "n_frames", "top"]):
            s = hit["_source"]
            labels = {name: [{"label": by_set[name][i], "score": sc} for i, sc in pairs]
                      for name, pairs in (s.get("top") or {}).items() if name in by_set}
            out.append({"id": shot_id(episode_id, s["index"]), "index": s["index"],
                        "start_s": s["start_s"], "end_s": s["end_s"], "time_s": s["time_s"],
                        "n_frames": s["n_frames"], "top_labels": labels})
        return out

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
                rows.append(_unb64(vec["score"]))
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
                    rows.append(_unb64(hit["_source"]["embedding"]))
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
            v = _unb64(src["embedding"])
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
        ids: list[str] = []
        sums: list[np.ndarray] = []
        for hit in self._scan("episodes", {"bool": {"filter": clauses}},
                              [{"programme_id": "asc"}, {"id": "asc"}],
                              ["programme_id", "embedding", "embedding_frames"]):
            src = hit["_source"]
            v = _unb64(src["embedding"]).astype(np.float64)
            if sums and v.size != sums[0].size:
                raise StoreError("episode embeddings of one model have different dimensions")
            if not ids or ids[-1] != src["programme_id"]:
                ids.append(src["programme_id"])
                sums.append(np.zeros(v.size, np.float64))
            sums[-1] += int(src.get("embedding_frames") or 1) * v
        if not ids:
            return no_embeddings()
        return ids, unit_rows(np.stack(sums).astype(np.float32), in_place=True)

    @staticmethod
    def _matrix(rows: list[np.ndarray], model: str) -> np.ndarray:
        if not rows:
            return np.zeros((0, 0), np.float32)
        if len({r.size for r in rows}) > 1:
            raise StoreError(f"embeddings of model {model!r} have different dimensions")
        return unit_rows(np.stack(rows), in_place=True)
