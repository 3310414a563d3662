"""Facets on the Elasticsearch catalogue (the rules: ``search/facets.py``), by aggregations
over every matched document in one ``size: 0`` search:

* the query's filters, required groups (``terms`` on ``present``) and hard exclusions as the
  bool query of ``search`` (shots also hide uncommitted generations);
* ``min_score`` > 0: the ranking query's ``must`` clauses score every document with
  n ln C + the log-sum of the documented score (``query.py``), so the floor is the request's
  ``min_score`` n (ln C + ln floor) (float32 scores: a hit within ~1e-6 of the floor may fall
  either side, where SQLite compares exact doubles);
* ``terms`` aggregations on ``programme_id`` (programmes: ``id``), ``genre_lc`` (the split,
  normalised catalogue genres) and ``present`` (labels present), and a yearly
  ``date_histogram`` on ``air_date`` (programmes: ``air_dates``, one bucket per year in which an
  indexed episode aired; a document counts once per bucket).

Buckets come back by count then key; label keys are label ids, so more buckets than asked are
fetched and the lists re-sorted by count then *name* (``search.facets.top_counts``), the order
SQLite gives.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from search.backends.elasticsearch import query as es_query
from search.facets import FACETS, FacetCounts, own_labels, top_counts
from tvindex.core.records import LEVELS, Level
from tvindex.core.store import StoreError

EXTRA_BUCKETS = 50  # label ties at the cut are decided by name, not by id: fetch beyond it


def _year(bucket: dict[str, Any]) -> str:
    text = bucket.get("key_as_string")
    if isinstance(text, str) and text[:4].isdigit():
        return text[:4]
    return str(dt.datetime.fromtimestamp(int(bucket["key"]) / 1000, dt.UTC).year)


class EsFacets:
    """``facets`` of ``EsStore``."""

    _idx: dict[str, str]
    es: Any

    def facets(self, query: Any, level: Level = "shot", size: int = 10, *,
               min_score: float = 0.0, names: tuple[str, ...] = FACETS) -> FacetCounts:
        """Facet counts of every item ``query`` matches at ``level`` (``search/facets.py``)."""
        if level not in LEVELS:
            raise StoreError(f"unknown level {level!r}")
        clauses = es_query.filters(query, level) + es_query.group_filters(query)
        must_not: list[dict[str, Any]] = es_query.exclusions(query)
        if level == "shot":
            kind, programme_field, date_field = "shots", "programme_id", "air_date"
            must_not += self._hidden_shots()  # type: ignore[attr-defined]
        elif level == "episode":
            kind, programme_field, date_field = "episodes", "programme_id", "air_date"
            clauses.append({"term": {"status": "indexed"}})
        else:
            kind, programme_field, date_field = "programmes", "id", "air_dates"
            clauses.append({"range": {"indexed_episodes": {"gt": 0}}})
        own = own_labels(query)
        wide = size + len(own) + EXTRA_BUCKETS
        aggs: dict[str, Any] = {}
        if "programme" in names:
            aggs["programme"] = {"terms": {"field": programme_field, "size": wide}}
        if "genre" in names:
            aggs["genre"] = {"terms": {"field": "genre_lc", "size": wide}}
        if "label" in names:
            aggs["label"] = {"terms": {"field": "present", "size": wide}}
        if "year" in names:
            aggs["year"] = {"date_histogram": {"field": date_field, "calendar_interval": "year",
                                               "min_doc_count": 1}}
        bool_query: dict[str, Any] = {"filter": clauses, "must_not": must_not}
        extra: dict[str, Any] = {}
        n = es_query.n_terms(query)
        if min_score > 0 and n:
            bool_query["must"] = es_query.scoring(query)
            extra["min_score"] = n * (es_query.LN_C + math.log(min_score))
        resp = self._call(f"facets of {kind}", self.es.search,  # type: ignore[attr-defined]
                          index=self._idx[kind], size=0, query={"bool": bool_query},
                          aggs=aggs, **extra)
        got = resp.get("aggregations") or {}
        out: FacetCounts = {}
        for name in ("programme", "genre"):
            if name in names:
                out[name] = top_counts(((b["key"], b["doc_count"])
                                        for b in got[name]["buckets"]), size)
        if "year" in names:
            out["year"] = top_counts(((_year(b), b["doc_count"])
                                      for b in got["year"]["buckets"]), size)
        if "label" in names:
            by_id = self._labels_by_id()  # type: ignore[attr-defined]
            out["label"] = top_counts(
                ((f"{by_id[int(b['key'])][0]}:{by_id[int(b['key'])][2]}", b["doc_count"])
                 for b in got["label"]["buckets"]
                 if int(b["key"]) in by_id and int(b["key"]) not in own), size)
        return out
