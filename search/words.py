"""Words, backend-neutral: folding, tokens and stems (the same in the SQLite full-text index,
in the query and in the highlights), the normalised text score, and turning matched text
segments into shot, episode and programme postings.

**Tokens.** A token is a run of letters and digits (Unicode); everything else separates
(``l'alcaldessa`` is ``l`` + ``alcaldessa``, ``col·legi`` is ``col`` + ``legi``), as SQLite's
``unicode61`` tokenizer splits. **Folding**: NFKD, combining marks dropped, case-folded
(``Pavelló`` -> ``pavello``), as ``remove_diacritics 2``. **Stems**: Snowball (PyPI
``snowballstemmer``) for Catalan, Spanish and English, chosen by the segment's language and
applied to the lower-cased word with its accents, then folded; a segment of another or no
language keeps its folded words as its "stems".

**Matching a word term** (both backends): a bare word matches a segment whose folded words
contain it, or whose stems contain the word's Catalan, Spanish or English stem (the query's
language is not known, so it is stemmed all three ways). A quoted phrase matches the folded
words in order, or the stems in order in one of the three languages (``"obrim el pavelló"``
also finds ``obrim els pavellons``).

**Text score.** The engine's BM25 ``s >= 0`` (SQLite: ``-bm25()`` of FTS5; Elasticsearch:
``_score``) becomes ``s / (s + K)`` with ``K = 1``, in [0, 1); an item's word score is the best
of its matching segments'. It enters the ranking as one more term of the geometric mean of
``search.ranking`` (a word group's probability), beside the labels' scores.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

# The query field for each word source (``None``: any source), and the languages stemmed.
WORD_FIELDS: dict[str, str | None] = {"said": "speech", "screen": "screen",
                                      "subtitle": "subtitles", "text": None}
STEM_LANGUAGES: dict[str, str] = {"ca": "catalan", "es": "spanish", "en": "english"}
_LANGUAGE_ALIASES = {"cat": "ca", "spa": "es", "eng": "en", "catalan": "ca", "spanish": "es",
                     "english": "en", "castellano": "es", "català": "ca", "va": "ca"}
BM25_K = 1.0
_TOKEN_RE = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Accents removed and case folded (``Núria`` -> ``nuria``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def words_of(text: str) -> list[str]:
    """The tokens of ``text``, lower-cased, accents kept (what the stemmers want)."""
    return [t.casefold() for t in _TOKEN_RE.findall(unicodedata.normalize("NFC", text))]


def folded_tokens(text: str) -> list[str]:
    """The tokens of ``text`` folded (what the full-text indexes hold)."""
    return [t for w in words_of(text) for t in _TOKEN_RE.findall(fold(w))]


def language_code(language: str | None) -> str | None:
    """``ca``/``es``/``en`` for a language name or tag we stem (``ca-ES``, ``cat``), else None."""
    if not language:
        return None
    code = language.strip().lower().replace("_", "-").split("-")[0]
    code = _LANGUAGE_ALIASES.get(code, code)
    return code if code in STEM_LANGUAGES else None


@lru_cache(maxsize=8)
def _stemmer(language: str):
    import snowballstemmer

    return snowballstemmer.stemmer(STEM_LANGUAGES[language])


@lru_cache(maxsize=200_000)
def _stem_word(word: str, lang: str) -> tuple[str, ...]:
    """One lower-cased word's folded stem tokens (cached: speech repeats its words, and the
    pure-Python Snowball stemmer costs ~0.1 ms a word)."""
    return tuple(_TOKEN_RE.findall(fold(_stemmer(lang).stemWord(word))))


def stems(text: str, language: str | None) -> list[str]:
    """The folded stems of ``text`` in ``language`` (its folded tokens when not stemmed)."""
    lang = language_code(language)
    words = words_of(text)
    if lang is None:
        return [t for w in words for t in _TOKEN_RE.findall(fold(w))]
    return [t for w in words for t in _stem_word(w, lang)]


def check_words(words: Any, sources: Sequence[str]) -> str | None:
    """Why ``words`` (an ``EpisodeWords``) cannot be stored, or None: a known source, and
    segments of that source with text and finite times (``end_s >= start_s >= 0``)."""
    if words.source not in sources:
        return f"unknown word source {words.source!r} (one of {', '.join(sources)})"
    for i, seg in enumerate(words.segments):
        if not isinstance(seg.text, str):
            return f"{words.source} segment {i}: no text"
        try:
            start, end = float(seg.start_s), float(seg.end_s)
        except (TypeError, ValueError):
            return f"{words.source} segment {i}: times are not numbers"
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            return f"{words.source} segment {i}: bad times {seg.start_s!r}..{seg.end_s!r}"
        if seg.source != words.source:
            return f"{words.source} segment {i}: of source {seg.source!r}"
    return None


@dataclass(frozen=True)
class WordMatch:
    """What a word term looks for: its folded tokens, and their stems per language."""

    tokens: tuple[str, ...]
    stems: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, text: str) -> WordMatch:
        """Several tokens (a quoted phrase, or ``l'alcaldessa``) match in order."""
        return _word_match(text)

    def stem_alternatives(self) -> list[tuple[str, ...]]:
        """The distinct stem sequences of the three languages (for phrases: in order)."""
        seen: dict[tuple[str, ...], None] = {}
        for seq in self.stems.values():
            if seq:
                seen.setdefault(seq, None)
        return list(seen)


@lru_cache(maxsize=1024)
def _word_match(text: str) -> WordMatch:
    tokens = tuple(folded_tokens(text))
    return WordMatch(tokens, {lang: tuple(stems(text, lang)) for lang in STEM_LANGUAGES})


def normalise_score(bm25: float) -> float:
    """A BM25 score (>= 0) as a probability-like value in [0, 1): ``s / (s + K)``."""
    s = max(float(bm25), 0.0)
    return s / (s + BM25_K)


def highlight(text: str, match: WordMatch, language: str | None, limit: int = 240) -> str:
    """``text`` HTML-escaped, with ``<mark>`` around each word the term matched (by its folded
    form or its stem in the segment's language); cut to about ``limit`` characters around the
    first mark."""
    wanted = set(match.tokens)
    lang = language_code(language)
    wanted_stems = set(match.stems.get(lang, ())) if lang else set()
    spans = []
    for m in _TOKEN_RE.finditer(text):
        word = m.group(0)
        folded = fold(word)
        hit = folded in wanted
        if not hit and wanted_stems:
            hit = bool(set(stems(word, lang)) & wanted_stems)
        if hit:
            spans.append((m.start(), m.end()))
    start, end = 0, len(text)
    if len(text) > limit:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - limit // 3, len(text) - limit))
        end = start + limit
    out, pos = [], start
    for a, b in spans:
        if a < start or b > end:
            continue
        out.append(html.escape(text[pos:a]))
        out.append("<mark>" + html.escape(text[a:b]) + "</mark>")
        pos = b
    out.append(html.escape(text[pos:end]))
    body = "".join(out)
    return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


@dataclass(frozen=True)
class SegmentHit:
    """One text segment a word term matched: its episode (and programme) key in the store,
    times, source, language, text and its normalised score."""

    episode_key: int
    programme_key: int
    start_s: float
    end_s: float
    source: str
    language: str | None
    text: str
    score: float


def episode_postings(hits: Iterable[SegmentHit], programme: bool = False
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Postings (sorted keys, best score) of the episodes (or programmes) with a hit."""
    best: dict[int, float] = {}
    for h in hits:
        key = h.programme_key if programme else h.episode_key
        best[key] = max(best.get(key, 0.0), h.score)
    keys = np.asarray(sorted(best), np.int64)
    return keys, np.asarray([best[k] for k in keys.tolist()], np.float32)


def overlapping(shot_starts: np.ndarray, shot_ends: np.ndarray, start_s: float,
                end_s: float) -> np.ndarray:
    """Which shots a segment ``[start_s, end_s]`` overlaps (an instant segment: the shot
    holding it)."""
    if end_s <= start_s:
        return (shot_starts <= start_s) & (shot_ends > start_s)
    return (shot_starts < end_s) & (shot_ends > start_s)


def best_segment(hits: Sequence[SegmentHit], start_s: float | None = None,
                 end_s: float | None = None) -> SegmentHit | None:
    """The best-scoring hit (overlapping ``[start_s, end_s]`` when given), earliest on ties."""
    chosen = None
    for h in hits:
        if start_s is not None and end_s is not None:
            inside = (h.start_s < end_s and h.end_s > start_s) if h.end_s > h.start_s else (
                start_s <= h.start_s < end_s)
            if not inside:
                continue
        if chosen is None or (h.score, -h.start_s) > (chosen.score, -chosen.start_s):
            chosen = h
    return chosen


def word_evidence(ref: Any, seg: SegmentHit, score: float) -> dict[str, Any]:
    """What a word term matched in a hit: the term, the segment's source, times and language,
    the snippet (HTML: escaped, ``<mark>`` around matched words) and the term's score."""
    return {"field": ref.field, "term": ref.value, "source": seg.source,
            "start_s": round(seg.start_s, 3), "end_s": round(seg.end_s, 3),
            "language": seg.language,
            "snippet": highlight(seg.text, WordMatch.of(ref.value), seg.language),
            "score": round(score, 4)}
