"""Words in the SQLite catalogue (schema 4): an episode's text segments per source, the
source's version and error, and the FTS5 index that finds them (searched in
``word_search.py``).

- ``word_sources``: per (episode, source) the version (model and settings) and the error;
- ``text_segments``: the timed segments (times, language, confidence, text, words as JSON);
- ``text_fts`` (FTS5, ``unicode61 remove_diacritics 2``, rowid = the segment's id): the
  segment's folded words (``surface``) and their Snowball stems in its language (``stems``),
  both computed in Python (``search.words``), so the query is folded and stemmed the same way.
  FTS5 has no Snowball tokenizer: the stems are a shadow column; a phrase is an FTS5 phrase
  (the tokens in order) over ``surface``, or over ``stems`` in each of the three languages.

Writing a source replaces its segments in one transaction (the episode's pictures and other
sources untouched); failing or removing an episode drops its words (``_delete_words``).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from search.backends.sqlite.schema import SqliteBase
from search.words import check_words, folded_tokens, stems
from tvindex.core.store import StoreError
from tvindex.core.words import WORD_SOURCES, EpisodeWords, TextSegment, Word


class SqliteWords(SqliteBase):
    """Words of ``SqliteStore``: ``write_words``, ``word_versions``, ``transcript`` and
    ``word_sources`` (the word terms of ``search``: ``word_search.py``)."""

    # --- writing --------------------------------------------------------------------------
    def _delete_words(self, db: sqlite3.Connection, key: int, source: str | None = None) -> None:
        where, params = "episode_key=?", [key]
        if source is not None:
            where, params = where + " AND source=?", params + [source]
        db.execute(f"DELETE FROM text_fts WHERE rowid IN (SELECT id FROM text_segments "
                   f"WHERE {where})", params)
        db.execute(f"DELETE FROM text_segments WHERE {where}", params)
        db.execute(f"DELETE FROM word_sources WHERE {where}", params)

    def write_words(self, words: EpisodeWords) -> None:
        problem = check_words(words, WORD_SOURCES)
        if problem:
            raise StoreError(f"episode {words.episode_id}: {problem}")
        with self._tx() as db:
            key, _ = self._episode_key(db, words.episode_id)
            self._delete_words(db, key, words.source)
            segments = [] if words.error else list(words.segments)
            db.execute("INSERT INTO word_sources VALUES (?,?,?,?,?)",
                       (key, words.source, words.version, words.error, len(segments)))
            for seg in segments:
                spoken = json.dumps([[w.start_s, w.end_s, w.text, w.confidence]
                                     for w in seg.words], separators=(",", ":"),
                                    ensure_ascii=False) if seg.words else None
                cur = db.execute(
                    "INSERT INTO text_segments (episode_key, source, start_s, end_s, language, "
                    "confidence, text, words) VALUES (?,?,?,?,?,?,?,?)",
                    (key, words.source, float(seg.start_s), float(seg.end_s), seg.language,
                     seg.confidence, seg.text, spoken))
                db.execute("INSERT INTO text_fts (rowid, surface, stems) VALUES (?,?,?)",
                           (cur.lastrowid, " ".join(folded_tokens(seg.text)),
                            " ".join(stems(seg.text, seg.language))))

    def word_versions(self) -> dict[tuple[str, str], str]:
        return {(eid, source): version for eid, source, version in self.db.execute(
            "SELECT e.id, w.source, w.version FROM word_sources w "
            "JOIN episodes e ON e.key = w.episode_key")}

    # --- reading --------------------------------------------------------------------------
    def transcript(self, episode_id: str, source: str | None = None) -> list[TextSegment]:
        key, _ = self._episode_key(self.db, episode_id)
        sql = ("SELECT start_s, end_s, source, text, language, confidence, words "
               "FROM text_segments WHERE episode_key=?")
        params: list[Any] = [key]
        if source is not None:
            sql += " AND source=?"
            params.append(source)
        rows = self.db.execute(sql + " ORDER BY start_s, end_s, source, id", params).fetchall()
        return [TextSegment(start, end, src, text, lang, conf, tuple(
            Word(float(a), float(b), t, c) for a, b, t, c in json.loads(words))) if words else
            TextSegment(start, end, src, text, lang, conf)
            for start, end, src, text, lang, conf, words in rows]

    def word_sources(self, episode_id: str) -> list[dict[str, Any]]:
        """Per word source written for the episode: its version, error and segment count."""
        key, _ = self._episode_key(self.db, episode_id)
        rows = self.db.execute("SELECT source, version, error, n_segments FROM word_sources "
                               "WHERE episode_key=?", (key,)).fetchall()
        order = {s: i for i, s in enumerate(WORD_SOURCES)}
        return [{"source": s, "version": v, "error": e, "segments": n}
                for s, v, e, n in sorted(rows, key=lambda r: order.get(r[0], 99))]
