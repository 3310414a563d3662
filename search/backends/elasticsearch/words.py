"""Words in the Elasticsearch catalogue (issue 17): a ``{prefix}words`` index beside the four
of ``mappings.KINDS`` holding text segments and, per (episode, source), the source's record;
and the word terms of a search.

**Why an index of its own** (not a nested field of episodes or shots): a segment's times do
not follow the shots (a subtitle cue spans several, a shot holds several lines), a source is
replaced alone (the episode's pictures and other sources untouched), and an hour of speech is
hundreds of segments that would make every episode update rewrite them. It is created on
first use and is not part of ``rebuilding()`` (a re-index of the pictures keeps the words;
episode ids are the join key).

**Fields** (``mappings.WORDS_PROPERTIES``): ``surface`` (the folded words) and ``stems`` (the
Snowball stems in the segment's language), both computed by ``search.words`` exactly as the
SQLite backend's FTS5 columns and indexed with the ``whitespace`` analyzer; ``text`` keeps the
original, analysed by ``folded`` (lowercase + asciifolding: any language) with
``catalan``/``spanish``/``english`` sub-fields (``text.ca`` ...) for ad-hoc queries in the
cluster. Matching uses ``surface`` and ``stems`` (``match_phrase``), so both backends find
the same segments: the built-in english and spanish analyzers stem with other algorithms
(Porter, light Spanish) and drop stop words, which would change the hits of the same query.

**Atomic replacement**: a write adds the new segments under a new generation, then commits it
in the source record (``gen``), then deletes the old generation. While ``dirty``, readers hide
the segments of any other generation, so a search sees the old segments or the new, never both.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import numpy as np

from search.backends.elasticsearch import query as es_query
from search.backends.elasticsearch.mappings import (
    WORDS_PROPERTIES,
    WORDS_SETTINGS,
    alias,
    concrete,
)
from search.ranking import rank
from search.words import (
    SegmentHit,
    WordMatch,
    check_words,
    folded_tokens,
    normalise_score,
    overlapping,
    stems,
    word_evidence,
)
from tvindex.core.records import LEVELS, Level, SearchPage
from tvindex.core.store import NotFound, StoreError
from tvindex.core.words import WORD_SOURCES, EpisodeWords, TextSegment, Word

WORDS_KIND = "words"
MAX_SEGMENT_HITS = 200_000  # segments one word term may match (as in the SQLite backend)
MAX_CANDIDATES = 100_000  # items a word query may rank (else: narrow it)
SHOT_BITS = 24


def has_words(query: Any) -> bool:
    return bool(getattr(query, "word_groups", ()) or getattr(query, "word_excluded", ()))


def _source_id(episode_id: str, source: str) -> str:
    return f"src:{source}:{episode_id}"


class EsWords:
    """Words of ``EsStore`` (its ``indices`` part gives ``_call``, ``_get``, ``_scan``...)."""

    cfg: Any
    client: Any
    es: Any
    _idx: dict[str, str]

    # --- the index ------------------------------------------------------------------------
    def _words_index(self) -> str:
        name = alias(self.cfg.index_prefix, WORDS_KIND)
        if self._idx.get(WORDS_KIND) == name:
            return name
        from elasticsearch import BadRequestError

        if not self._call("check alias", self.es.indices.exists_alias, name=name):
            settings = {**WORDS_SETTINGS, "number_of_shards": 1,
                        "number_of_replicas": self.cfg.replicas}
            index = concrete(self.cfg.index_prefix, WORDS_KIND)
            try:
                self._call("create index", self.es.indices.create, index=index,
                           aliases={name: {}}, settings=settings,
                           mappings={"dynamic": "strict", "properties": WORDS_PROPERTIES})
            except BadRequestError as exc:
                if "already_exists" not in str(exc):
                    raise StoreError(f"cannot create index {index}: {exc}") from exc
        self._idx[WORDS_KIND] = name
        return name

    def _hidden_words(self) -> list[dict[str, Any]]:
        """``must_not`` clauses hiding segments of uncommitted generations (sources being
        written are ``dirty``)."""
        resp = self._call("read dirty word sources", self.es.search, index=self._words_index(),
                          query={"bool": {"filter": [{"term": {"kind": "source"}},
                                                     {"term": {"dirty": True}}]}},
                          size=10_000, source=["episode_id", "source", "gen"])
        out = []
        for hit in resp["hits"]["hits"]:
            s = hit["_source"]
            clause: dict[str, Any] = {"bool": {"filter": [
                {"term": {"episode_id": s["episode_id"]}}, {"term": {"source": s["source"]}}]}}
            if s.get("gen"):
                clause["bool"]["must_not"] = [{"term": {"gen": s["gen"]}}]
            out.append(clause)
        return out

    # --- writing --------------------------------------------------------------------------
    def write_words(self, words: EpisodeWords) -> None:
        problem = check_words(words, WORD_SOURCES)
        if problem:
            raise StoreError(f"episode {words.episode_id}: {problem}")
        episode = self._get("episodes", words.episode_id)
        if episode is None or episode["_source"].get("status") == "removed":
            raise NotFound(f"unknown episode {words.episode_id!r}")
        index = self._words_index()
        eid, source = words.episode_id, words.source
        sid = _source_id(eid, source)
        old = self._get(WORDS_KIND, sid)
        gen = uuid.uuid4().hex
        segments = [] if words.error else list(words.segments)
        base = {"kind": "source", "episode_id": eid, "source": source}
        record = (old or {}).get("_source") or {**base, "gen": None, "version": None}
        self._call("mark word source", self.es.index, index=index, id=sid, refresh=True,
                   document={**record, "pending_gen": gen, "dirty": True})
        pid = episode["_source"]["programme_id"]
        self.client.bulk(((
            {"index": {"_index": index, "_id": f"seg:{source}:{eid}:{gen}:{i}"}},
            {"kind": "segment", "episode_id": eid, "programme_id": pid, "source": source,
             "gen": gen, "key": f"{i:09d}", "start_s": float(seg.start_s),
             "end_s": float(seg.end_s), "language": seg.language, "confidence": seg.confidence,
             "text": seg.text,
             "surface": " ".join(folded_tokens(seg.text)),
             "stems": " ".join(stems(seg.text, seg.language)),
             "words": [[w.start_s, w.end_s, w.text, w.confidence] for w in seg.words]})
            for i, seg in enumerate(segments)), what=f"write {source} words of {eid}",
            refresh=True)
        committed = {**base, "gen": gen, "pending_gen": None, "dirty": True,
                     "version": words.version, "error": words.error,
                     "n_segments": len(segments)}
        self._call("commit word source", self.es.index, index=index, id=sid, refresh=True,
                   document=committed)
        self._delete_by_query(WORDS_KIND, {"bool": {
            "filter": [{"term": {"kind": "segment"}}, {"term": {"episode_id": eid}},
                       {"term": {"source": source}}],
            "must_not": [{"term": {"gen": gen}}]}}, f"drop old {source} words of {eid}")
        self._call("finish word source", self.es.index, index=index, id=sid, refresh=True,
                   document={**committed, "dirty": False})

    def _delete_words(self, episode_id: str) -> None:
        """Drop every word of an episode (it failed or was removed)."""
        self._words_index()
        self._delete_by_query(WORDS_KIND, {"term": {"episode_id": episode_id}},
                              f"drop the words of {episode_id}")

    def word_versions(self) -> dict[tuple[str, str], str]:
        self._words_index()
        return {(h["_source"]["episode_id"], h["_source"]["source"]): h["_source"]["version"]
                for h in self._scan(WORDS_KIND, {"term": {"kind": "source"}},
                                    [{"episode_id": "asc"}, {"source": "asc"}],
                                    ["episode_id", "source", "version"])
                if h["_source"].get("version") is not None}

    # --- reading --------------------------------------------------------------------------
    def _known_episode(self, episode_id: str) -> None:
        doc = self._get("episodes", episode_id)
        if doc is None or doc["_source"].get("status") == "removed":
            raise NotFound(f"unknown episode {episode_id!r}")

    def transcript(self, episode_id: str, source: str | None = None) -> list[TextSegment]:
        self._known_episode(episode_id)
        self._words_index()
        clauses: list[dict[str, Any]] = [{"term": {"kind": "segment"}},
                                         {"term": {"episode_id": episode_id}}]
        if source is not None:
            clauses.append({"term": {"source": source}})
        out = []
        for h in self._scan(WORDS_KIND, {"bool": {"filter": clauses,
                                                  "must_not": self._hidden_words()}},
                            [{"start_s": "asc"}, {"end_s": "asc"}, {"source": "asc"},
                             {"key": "asc"}],
                            ["start_s", "end_s", "source", "text", "language", "confidence",
                             "words"]):
            s = h["_source"]
            out.append(TextSegment(s["start_s"], s["end_s"], s["source"], s["text"],
                                   s.get("language"), s.get("confidence"),
                                   tuple(Word(float(a), float(b), t, c)
                                         for a, b, t, c in s.get("words") or ())))
        return out

    def word_sources(self, episode_id: str) -> list[dict[str, Any]]:
        self._known_episode(episode_id)
        self._words_index()
        order = {s: i for i, s in enumerate(WORD_SOURCES)}
        rows = [h["_source"] for h in self._scan(
            WORDS_KIND, {"bool": {"filter": [{"term": {"kind": "source"}},
                                             {"term": {"episode_id": episode_id}}]}},
            [{"source": "asc"}], ["source", "version", "error", "n_segments"])]
        return [{"source": r["source"], "version": r.get("version"), "error": r.get("error"),
                 "segments": r.get("n_segments") or 0}
                for r in sorted(rows, key=lambda r: order.get(r["source"], 99))]

    # --- searching ------------------------------------------------------------------------
    def _segment_hits(self, ref: Any, hidden: list[dict[str, Any]]
                      ) -> list[tuple[str, str, SegmentHit]]:
        """(episode id, programme id, hit) of every segment a word term matches."""
        match = WordMatch.of(ref.value)
        if not match.tokens:
            return []
        should = [{"match_phrase": {"surface": " ".join(match.tokens)}}]
        should += [{"match_phrase": {"stems": " ".join(seq)}}
                   for seq in match.stem_alternatives()]
        clauses: list[dict[str, Any]] = [{"term": {"kind": "segment"}}]
        if ref.source is not None:
            clauses.append({"term": {"source": ref.source}})
        self._words_index()
        out = []
        for h in self._scan(WORDS_KIND, {"bool": {"filter": clauses, "should": should,
                                                  "minimum_should_match": 1,
                                                  "must_not": hidden}},
                            [{"_score": "desc"}, {"episode_id": "asc"}, {"source": "asc"},
                             {"gen": "asc"}, {"key": "asc"}],
                            ["episode_id", "programme_id", "start_s", "end_s", "source",
                             "language", "text"]):
            if len(out) >= MAX_SEGMENT_HITS:
                raise StoreError(f"'{ref.field}:{ref.value}' matches more than "
                                 f"{MAX_SEGMENT_HITS} text segments; add a word or search "
                                 "a phrase")
            s = h["_source"]
            out.append((s["episode_id"], s["programme_id"], SegmentHit(
                0, 0, s["start_s"], s["end_s"], s["source"], s.get("language"), s["text"],
                normalise_score(h["_score"] or 0.0))))
        return out

    def _candidates(self, query: Any, level: Level, word_hits: list[list[list[Any]]]
                    ) -> list[dict[str, Any]]:
        """The documents at ``level`` that pass the query's filters, label groups and label
        exclusions and (with word groups) are in an episode every word group matched."""
        from search.backends.elasticsearch import query as es_query

        clauses = es_query.filters(query, level) + es_query.group_filters(query)
        must_not = es_query.exclusions(query)
        if word_hits:
            field = 1 if level == "programme" else 0
            keep = None
            for group in word_hits:
                ids = {t[field] for alt in group for t in alt}
                keep = ids if keep is None else keep & ids
            key = "id" if level == "programme" else "episode_id" if level == "shot" else "id"
            clauses.append({"terms": {key: sorted(keep or ())}})
        if level == "shot":
            kind, sort = "shots", [{"ep_seq": "asc"}, {"index": "asc"}, {"episode_id": "asc"}]
            must_not += self._hidden_shots()
            source = ["episode_id", "index", "ep_seq", "gen", "start_s", "end_s", "time_s",
                      "air_date"]
        elif level == "episode":
            kind, sort = "episodes", [{"seq": "asc"}, {"id": "asc"}]
            clauses.append({"term": {"status": "indexed"}})
            source = ["id", "seq", "programme_id", "title", "air_date", "duration_s"]
        else:
            kind, sort = "programmes", [{"seq": "asc"}, {"id": "asc"}]
            clauses.append({"range": {"indexed_episodes": {"gt": 0}}})
            source = ["id", "seq", "title"]
        source += ["present"] + [f"s.{i}" for i in es_query.label_ids(query)]
        docs = []
        for h in self._scan(kind, {"bool": {"filter": clauses, "must_not": must_not}},
                            sort, source):
            docs.append(h)
            if len(docs) > MAX_CANDIDATES:
                raise StoreError(f"a word query may rank at most {MAX_CANDIDATES} items at "
                                 f"the {level} level; add a term or a filter")
        return docs

    def _search_words(self, query: Any, level: Level, limit: int, offset: int, *,
                      min_score: float = 0.0, sort: str = "score", descending: bool = True
                      ) -> SearchPage:
        """A query with word terms: its candidates fetched whole and ranked here with the
        documented rule (a word group is one more term of the geometric mean; excluded word
        terms remove what they match), as the SQLite backend does."""
        if level not in LEVELS:
            raise StoreError(f"unknown level {level!r}")
        for _attempt in range(3):
            page, consistent = self._search_words_once(query, level, limit, offset,
                                                       min_score, sort, descending)
            if consistent:
                break
        return page

    def _search_words_once(self, query: Any, level: Level, limit: int, offset: int,
                           min_score: float, sort: str, descending: bool
                           ) -> tuple[SearchPage, bool]:
        hidden = self._hidden_words()
        groups_hits = [[self._segment_hits(ref, hidden) for ref in g]
                       for g in getattr(query, "word_groups", ())]
        excluded_hits = [self._segment_hits(ref, hidden)
                         for ref in getattr(query, "word_excluded", ())]
        docs = self._candidates(query, level, groups_hits)
        by_key = {self._key(level, h["_source"]): h for h in docs}
        keys = np.asarray(sorted(by_key), np.int64)
        item_of = _ItemMatcher(level, by_key)
        label_postings = self._label_postings(query, by_key, keys)
        word_groups, chosen = [], []
        for g in groups_hits:
            alts = [item_of.postings(hits) for hits in g]
            word_groups.append([p for p, _ in alts])
            chosen.append([b for _, b in alts])
        excluded = label_postings["excluded"] + [item_of.postings(h)[0] for h in excluded_hits]
        opts: dict[str, Any] = {"min_score": min_score, "descending": descending,
                                "sort_key": self._sort_key(level, sort, docs)}
        groups = label_postings["groups"] + word_groups
        need = offset + limit
        ranked, total = rank(groups, excluded, None if groups else keys, top=need,
                             soft=label_postings["soft"], **opts)
        picked = [by_key[int(k)] for k in ranked.ids[offset:need]]
        hits, consistent = self._hits(level, picked, ranked, offset, query)
        n_labels = len(query.groups)
        for j, hit in enumerate(hits, start=offset):
            item = int(ranked.ids[j])
            for w, g in enumerate(getattr(query, "word_groups", ())):
                choice = int(ranked.group_choice[n_labels + w][j])
                seg = chosen[w][choice].get(item)
                if seg is not None:
                    hit.words.append(word_evidence(g[choice], seg, seg.score))
        return SearchPage(hits, total, offset, limit, level, query.to_dict()), consistent

    def _label_postings(self, query: Any, by_key: dict[int, dict], keys: np.ndarray
                        ) -> dict[str, list]:
        def postings(label_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return es_query.fetched_postings(by_key, keys, label_id)

        return {"groups": [[postings(r.label_id) for r in g] for g in query.groups],
                "excluded": [postings(r.label_id) for r in query.excluded],
                "soft": [postings(r.label_id) for r in getattr(query, "soft_excluded", ())]}


class _ItemMatcher:
    """Word hits onto the fetched items of a level: a shot by overlap with its episode's
    segments, an episode by its id, a programme by its id."""

    def __init__(self, level: Level, by_key: dict[int, dict]) -> None:
        self.level = level
        self.items: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
        for key, h in by_key.items():
            s = h["_source"]
            if level == "shot":
                self.items[s["episode_id"]].append((key, s["start_s"], s["end_s"]))
            else:
                self.items[s["id"]].append((key, 0.0, 0.0))

    def postings(self, hits: list[tuple[str, str, SegmentHit]]
                 ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[int, SegmentHit]]:
        best: dict[int, SegmentHit] = {}
        for eid, pid, h in hits:
            items = self.items.get(pid if self.level == "programme" else eid, ())
            if not items:
                continue
            if self.level == "shot":
                keys = np.asarray([k for k, _, _ in items], np.int64)
                starts = np.asarray([a for _, a, _ in items], np.float64)
                ends = np.asarray([b for _, _, b in items], np.float64)
                matched = keys[overlapping(starts, ends, h.start_s, h.end_s)].tolist()
            else:
                matched = [k for k, _, _ in items]
            for k in matched:
                old = best.get(k)
                if old is None or (h.score, -h.start_s) > (old.score, -old.start_s):
                    best[k] = h
        ids = np.asarray(sorted(best), np.int64)
        scores = np.asarray([best[i].score for i in ids.tolist()], np.float32)
        return (ids, scores, np.ones(len(ids), bool)), best
