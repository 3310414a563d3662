"""Running a ``ResolvedQuery`` on the Elasticsearch catalogue: the query (``query``), the
fetch in score order with ``search_after``, the exact re-scoring (``search.ranking``), the hits
with their evidence. A part of ``EsStore`` (``store``), whose ``indices`` part
provides the connection (``_call``, ``_idx``, ``_mget``) and the label registry.

Shots are only visible in their episode's committed generation: the few episodes being
written (``dirty``) are read first and their other shots excluded; every shot hit is then
checked against its episode, and the search repeated when a write raced it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np

from search.backends.elasticsearch import query as es_query
from search.backends.elasticsearch.words import has_words
from search.ranking import SortKey, evidence, rank
from tvindex.core.records import LEVELS, Hit, Level, SearchPage, shot_id
from tvindex.core.store import StoreError

log = logging.getLogger(__name__)
SHOT_BITS = 24  # shot sort key = episode seq << SHOT_BITS | index, like SQLite's shot ids
FETCH_MAX = 1000
MAX_DIRTY = 10_000


class EsSearch:
    """Search and ranking over the indices of an ``EsStore`` (facets: ``facets``)."""

    _idx: dict[str, str]
    es: Any

    def _hidden_shots(self) -> list[dict[str, Any]]:
        """``must_not`` clauses hiding shots that are not their episode's committed generation
        (only episodes being written, failed or removed can have any: they are ``dirty``)."""
        resp = self._call("read dirty episodes", self.es.search, index=self._idx["episodes"],
                          query={"term": {"dirty": True}}, size=MAX_DIRTY,
                          source=["id", "gen", "status"], track_total_hits=True)
        if resp["hits"]["total"]["value"] > MAX_DIRTY:
            raise StoreError(f"more than {MAX_DIRTY} episodes are being written at once")
        out: list[dict[str, Any]] = []
        for hit in resp["hits"]["hits"]:
            s = hit["_source"]
            if s.get("gen") and s.get("status") == "indexed":
                out.append({"bool": {"filter": [{"term": {"episode_id": s["id"]}}],
                                     "must_not": [{"term": {"gen": s["gen"]}}]}})
            else:
                out.append({"term": {"episode_id": s["id"]}})
        return out

    def search(self, query: Any, level: Level = "shot", limit: int = 20,
               offset: int = 0, *, min_score: float = 0.0, sort: str = "score",
               descending: bool = True) -> SearchPage:
        if level not in LEVELS:
            raise StoreError(f"unknown level {level!r}")
        opts = {"min_score": min_score, "sort": sort, "descending": descending}
        if has_words(query):  # word terms (issue 17): elasticsearch/words.py
            return self._search_words(query, level, limit, offset, **opts)  # type: ignore[attr-defined]
        for _attempt in range(3):
            page, consistent = self._search_once(query, level, limit, offset, **opts)
            if consistent:
                break
            log.info("a shot hit changed generation while searching; searching again")
        return page

    def _search_once(self, query: Any, level: Level, limit: int, offset: int, *,
                     min_score: float = 0.0, sort: str = "score", descending: bool = True
                     ) -> tuple[SearchPage, bool]:
        # A score floor or another order needs every match, ranked exactly here: the
        # cluster's float32 score decides neither the total nor the order then.
        full = min_score > 0 or sort != "score"
        as_dict = query.to_dict() if hasattr(query, "to_dict") else {}
        clauses = es_query.filters(query, level)
        must_not: list[dict[str, Any]] = []
        if level == "shot":
            if not query.groups and not es_query.has_filters(query):
                # As in the SQLite backend: a shot search needs a label or a filter.
                return SearchPage([], 0, offset, limit, level, as_dict), True
            kind = "shots"
            must_not = self._hidden_shots()
            sort_keys = [{"ep_seq": "asc"}, {"index": "asc"}, {"episode_id": "asc"}]
            source = ["episode_id", "index", "ep_seq", "gen", "start_s", "end_s", "time_s",
                      "air_date"]
        elif level == "episode":
            kind = "episodes"
            clauses.append({"term": {"status": "indexed"}})
            sort_keys = [{"seq": "asc"}, {"id": "asc"}]
            source = ["id", "seq", "programme_id", "title", "air_date", "duration_s"]
        else:
            kind = "programmes"
            clauses.append({"range": {"indexed_episodes": {"gt": 0}}})
            sort_keys = [{"seq": "asc"}, {"id": "asc"}]
            source = ["id", "seq", "title"]
        clauses += es_query.group_filters(query)
        must_not += es_query.exclusions(query)
        must = es_query.scoring(query)
        n = es_query.n_terms(query)
        source += ["present"] + [f"s.{i}" for i in es_query.label_ids(query)]
        es_q = {"bool": {"filter": clauses, "must": must, "must_not": must_not}}
        es_sort = (["_score"] if n else []) + sort_keys
        need = offset + limit
        batch = min(max(2 * need, 100), FETCH_MAX)

        hits: list[dict[str, Any]] = []
        total = 0
        after = None
        while True:
            kwargs: dict[str, Any] = {"index": self._idx[kind], "query": es_q, "sort": es_sort,
                                      "size": batch, "source": source,
                                      "track_total_hits": after is None}
            if after is not None:
                kwargs["search_after"] = after
            resp = self._call(f"search {kind}", self.es.search, **kwargs)
            if after is None:
                total = int(resp["hits"]["total"]["value"])
            page = resp["hits"]["hits"]
            hits += page
            if len(page) < batch:
                break
            after = page[-1]["sort"]
            if full or len(hits) < need:
                continue
            if n == 0:
                break
            ranked, _ = self._rank(query, level, hits, need)
            kth = float(np.log(ranked.scores[need - 1])) * n
            last = float(page[-1]["_score"]) - n * es_query.LN_C
            if kth > last + 1e-4 * (n + 1):  # float32 rounding cannot reorder across this
                break
        opts: dict[str, Any] = {}
        if full:
            opts = {"min_score": min_score, "descending": descending,
                    "sort_key": self._sort_key(level, sort, hits)}
        ranked, by_key = self._rank(query, level, hits, need, **opts)
        if full:
            total = len(ranked.matched)
        chosen = [by_key[int(k)] for k in ranked.ids[offset:need]]
        out, consistent = self._hits(level, chosen, ranked, offset, query)
        return SearchPage(out, total, offset, limit, level, as_dict), consistent

    def _sort_key(self, level: Level, sort: str, hits: list[dict[str, Any]]
                  ) -> SortKey | None:
        """The SQLite backend's sort keys (see its ``_sort_key``) from the fetched sources
        (programmes: from their indexed episodes)."""
        if sort == "score":
            return None

        def day(text: str | None) -> float:
            return float(dt.date.fromisoformat(text).toordinal()) if text else np.nan

        values: dict[int, float] = {}
        if level == "programme":
            by_id = {h["_source"]["id"]: self._key(level, h["_source"]) for h in hits}
            agg: dict[str, list[Any]] = {}
            for i in range(0, len(by_id), 1000):
                part = list(by_id)[i:i + 1000]
                for e in self._scan("episodes", {"bool": {"filter": [
                        {"terms": {"programme_id": part}}, {"term": {"status": "indexed"}}]}},
                        [{"id": "asc"}], ["programme_id", "air_date", "duration_s"]):
                    src = e["_source"]
                    a = agg.setdefault(src["programme_id"], [np.nan, None])
                    if src.get("air_date"):
                        a[0] = np.nanmax([a[0], day(src["air_date"])])
                    if src.get("duration_s") is not None:
                        a[1] = (a[1] or 0.0) + float(src["duration_s"])
            for pid, key in by_id.items():
                a = agg.get(pid, [np.nan, None])
                values[key] = a[0] if sort == "air_date" else (
                    np.nan if a[1] is None else a[1])
        else:
            for h in hits:
                src = h["_source"]
                if sort == "air_date":
                    v = day(src.get("air_date"))
                elif level == "shot":
                    v = float(src["end_s"]) - float(src["start_s"])
                else:
                    v = np.nan if src.get("duration_s") is None else float(src["duration_s"])
                values[self._key(level, src)] = v
        return lambda ids: np.asarray([values.get(int(i), np.nan) for i in ids], np.float64)

    @staticmethod
    def _key(level: Level, src: dict[str, Any]) -> int:
        if level == "shot":
            return (int(src["ep_seq"]) << SHOT_BITS) | int(src["index"])
        return int(src["seq"])

    def _rank(self, query: Any, level: Level, hits: list[dict[str, Any]], need: int | None,
              **opts: Any):
        """Exact scores of the fetched hits with the documented ranking (search.ranking)."""
        by_key = {self._key(level, h["_source"]): h for h in hits}
        keys = np.asarray(sorted(by_key), np.int64)

        def postings(label_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return es_query.fetched_postings(by_key, keys, label_id)

        groups = [[postings(ref.label_id) for ref in g] for g in query.groups]
        excluded = [postings(ref.label_id) for ref in query.excluded]
        soft = [postings(ref.label_id) for ref in getattr(query, "soft_excluded", ())]
        ranked, _ = rank(groups, excluded, None if query.groups else keys, top=need,
                         soft=soft, **opts)
        return ranked, by_key

    def _hits(self, level: Level, chosen: list[dict[str, Any]], ranked: Any, offset: int,
              query: Any) -> tuple[list[Hit], bool]:
        srcs = [h["_source"] for h in chosen]
        if level == "programme":
            progs = self._mget("programmes", [s["id"] for s in srcs], ["title"])
            base = [Hit(level, s["id"], 0.0, s["id"], progs.get(s["id"], {}).get("title", ""))
                    for s in srcs]
            consistent = True
        else:
            eids = [s["episode_id"] if level == "shot" else s["id"] for s in srcs]
            eps = self._mget("episodes", eids,
                             ["title", "air_date", "programme_id", "gen", "status"])
            progs = self._mget("programmes", [e["programme_id"] for e in eps.values()],
                               ["title"])
            base, consistent = [], True
            for s, eid in zip(srcs, eids, strict=True):
                e = eps.get(eid)
                if e is None or e.get("status") != "indexed" or (
                        level == "shot" and e.get("gen") != s["gen"]):
                    consistent = False
                    e = e or {"title": None, "air_date": None, "programme_id": ""}
                pid = e["programme_id"]
                hit = Hit(level, eid, 0.0, pid, progs.get(pid, {}).get("title", ""), eid,
                          e["title"], e.get("air_date"))
                if level == "shot":
                    hit.id = shot_id(eid, s["index"])
                    hit.start_s, hit.end_s, hit.time_s = s["start_s"], s["end_s"], s["time_s"]
                base.append(hit)
        for j, hit in enumerate(base, start=offset):
            hit.score = round(float(ranked.scores[j]), 6)
            hit.evidence = evidence(query, ranked, j)
        return base, consistent
