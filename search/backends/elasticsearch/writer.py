"""Writing the Elasticsearch catalogue: programmes and episodes (``upsert_catalogue``, which
also repairs what a crashed writer left), an episode's tags (atomic replacement by
generation: see ``search/backends/elasticsearch/store.py``), failures, removals, re-index
requests, and the programme aggregates recomputed from their episodes."""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from typing import Any

from search.backends.derive import (
    embedding_frames,
    episode_embeddings,
    episode_frames,
    keep_mask,
    programme_stats,
    segment_frames,
    segment_top,
)
from search.backends.elasticsearch.documents import (
    EMPTY_LABELS,
    EPISODE_META,
    b64,
    generation,
    label_fields,
    now,
    stats_of,
    vector_fields,
)
from search.backends.elasticsearch.genres import genre_terms
from search.backends.elasticsearch.indices import EsIndices
from search.backends.elasticsearch.mappings import CLOCK_FIELDS
from tvindex.core.records import EpisodeRecord, EpisodeTags, LabelStats, ProgrammeRecord, shot_id
from tvindex.core.store import NotFound, StoreError
from tvindex.core.timecode import EpisodeClock, format_rate

ABANDONED_WRITE_S = 3600  # an episode write takes seconds to minutes; older ones were abandoned


class EsWriter(EsIndices):
    """The :class:`tvindex.core.store.CatalogueWriter` half of ``EsStore``."""

    min_score: float
    top_k: int

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
                    "genre_lc": genre_terms(p.genre)}  # a ';'-list: elasticsearch/genres.py
            if p.id in old_p:
                if old_p[p.id].get("genre_lc") != meta["genre_lc"]:
                    regenred.append(p.id)
                actions.append(({"update": {"_index": self._idx["programmes"], "_id": p.id}},
                                {"doc": meta}))
            else:
                doc = {"id": p.id, "seq": seq, **meta, "air_dates": [], "indexed_episodes": 0,
                       "stale": False, "n_frames": 0, **EMPTY_LABELS}
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
                       **EMPTY_LABELS}
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
                                              "dirty_since": now()}, refresh=True)
        return resp.body

    def write_episode(self, tags: EpisodeTags) -> None:
        doc = self._episode_doc(tags.episode_id)
        src = doc["_source"]
        first = self._first_ids(tags.stats)
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
                "ep_seq": src["seq"], "gen": gen,
                **({"genres_predicted": src["genres_predicted"]}  # elasticsearch/genres.py
                   if src.get("genres_predicted") else {})}

        def shot_docs() -> Iterator[tuple[dict, dict]]:
            for seg in tags.segments:
                body = {**base, "index": seg.index, "start_s": seg.start_s,
                        "end_s": seg.end_s, "time_s": seg.time_s,
                        "n_frames": segment_frames(seg), "top": segment_top(seg),
                        "thumbnail": base64.b64encode(seg.thumbnail).decode("ascii")
                        if seg.thumbnail else None,
                        **label_fields(seg.stats, first, self.min_score, self.top_k, ep_keep)}
                if seg.index in seg_emb:
                    body["embedding"] = b64(seg_emb[seg.index])
                    body["embedding_model"] = tags.embedding_model
                yield ({"index": {"_index": self._idx["shots"],
                                  "_id": f"{shot_id(eid, seg.index)}#{gen}"}}, body)

        self.client.bulk(shot_docs(), f"write shots of {eid}", refresh=True)
        # 3. commit: one document write
        emb_fields: dict[str, Any] = {}
        if embedded is not None:
            emb_fields = {"embedding": b64(embedded[0]),
                          "embedding_model": tags.embedding_model,
                          "embedding_frames": embedding_frames(tags),
                          "embedding_at": time.time_ns()}
        self._flag_programme(src["programme_id"])
        self._commit_episode(eid, marked["_seq_no"], marked["_primary_term"], {
            "status": "indexed", "fingerprint": tags.fingerprint,
            "config_version": tags.config_version, "error": None,
            "indexed_at": now(),
            "duration_s": tags.duration_s, "n_frames": episode_frames(tags.stats),
            "n_segments": len(tags.segments), "sampling": tags.sampling,
            "gen": gen, "pending_gen": gen, "dirty": True,
            **label_fields(tags.stats, first, self.min_score, self.top_k),
            "vectors": vector_fields(tags.stats), **emb_fields,
            **self._clock_fields(tags.clock)})
        # 4. clean up and recompute the programme
        self._finish(eid, gen, src["programme_id"])

    _clock_mapping_ok = False

    def _clock_fields(self, clock: EpisodeClock | None) -> dict[str, Any]:
        """The episode document's clock fields (added to an older index's mapping first)."""
        if clock is None:
            return {}
        if not self._clock_mapping_ok:
            self._call("add clock fields to episodes", self.es.indices.put_mapping,
                       index=self._idx["episodes"], properties=CLOCK_FIELDS)
            self._clock_mapping_ok = True
        return {"frame_rate": format_rate(clock.frame_rate), "start_tc": clock.start_tc,
                "drop_frame": clock.drop_frame, "vfr": clock.vfr}

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
            parts: list[tuple[str, LabelStats]] = []
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
                    parts.append((name, stats_of(vec)))
            stats = programme_stats(parts)
            first = self._first_ids(stats)
            meta = current["_source"]
            doc = {k: meta.get(k) for k in ("id", "seq", "title", "description", "genre",
                                            "genre_lc")}
            doc.update({"air_dates": sorted(dates), "indexed_episodes": count, "stale": False,
                        "n_frames": episode_frames(stats),
                        **label_fields(stats, first, self.min_score, self.top_k),
                        "vectors": vector_fields(stats)})
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
            "gen": None, "pending_gen": "-", "dirty": True, **EMPTY_LABELS})
        self._delete_words(episode_id)  # type: ignore[attr-defined]  # elasticsearch/words.py
        self._finish(episode_id, None, src["programme_id"])

    def remove_episode(self, episode_id: str) -> None:
        doc = self._episode_doc(episode_id)
        src = doc["_source"]
        marked = self._mark_dirty(episode_id, "-")
        self._commit_episode(episode_id, marked["_seq_no"], marked["_primary_term"], {
            "status": "removed", "gen": None, "pending_gen": "-", "dirty": True,
            **EMPTY_LABELS})
        self._drop_other_generations(episode_id, None)
        self._delete_words(episode_id)  # type: ignore[attr-defined]  # elasticsearch/words.py
        self._call("delete episode", self.es.delete, index=self._idx["episodes"], id=episode_id,
                   refresh=True)
        self._refresh_programme(src["programme_id"])

    def request_reindex(self, episode_id: str) -> None:
        # The indexer skips an episode only when its stored fingerprint matches the media's;
        # clearing it forces the next run to re-index while the old tags keep serving.
        self._episode_doc(episode_id)
        self._call("request re-index", self.es.update, index=self._idx["episodes"],
                   id=episode_id, doc={"fingerprint": None}, refresh=True)

