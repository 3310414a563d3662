"""The words pass of ``tvindex index``: every enabled word source over every episode, after
the pictures, each result written through ``CatalogueWriter.write_words``.

Resumable per source: the version stored for ``(episode, source)`` is the source's version
(model and settings; for subtitles also the subtitle files' names, sizes and times) plus the
episode's media fingerprint, so a source re-runs for an episode only when one of them changed
(or with ``force``). A source that fails for an episode records its reason
(``EpisodeWords.error``) and the pass goes on; the episode's pictures are never touched.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from indexer.catalogue import Catalogue
from indexer.fingerprints import FingerprintCache
from indexer.words.base import WordExtractor, WordsError
from tvindex.core.records import EpisodeRecord
from tvindex.core.store import CatalogueWriter, StoreError
from tvindex.core.words import EpisodeWords


@dataclass
class WordsReport:
    """What a words pass did: per source, episodes written, unchanged and failed (with the
    reason), segments written, and each source's cost."""

    written: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)
    segments: Counter = field(default_factory=Counter)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    not_indexed: int = 0  # episodes left out: their pictures are not indexed
    error: str | None = None  # the pass could not run at all (e.g. the store keeps no words)

    def to_dict(self) -> dict:
        return {"written": dict(self.written), "unchanged": dict(self.unchanged),
                "segments": dict(self.segments), "failed": self.failed, "cost": self.cost,
                "seconds": round(self.seconds, 2), "not_indexed": self.not_indexed,
                "error": self.error}


def episode_version(extractor: WordExtractor, episode: EpisodeRecord, fingerprint: str) -> str:
    return f"{extractor.episode_version(episode)}|media:{fingerprint}"


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"words: {text}", file=sys.stderr, flush=True)


def _cost_text(cost: dict[str, float]) -> str:
    if "audio_s" in cost:
        return (f"{cost['audio_s']} s of audio in {cost['seconds']} s "
                f"({cost['x_real_time']}x real time)")
    if "frames" in cost:
        return (f"{cost['frames']} frames, {cost['ocr_frames']} read, skip rate "
                f"{cost['skip_rate']}, {cost['ms_per_frame']} ms a frame")
    return ""


def index_words(catalogue: Catalogue, store: CatalogueWriter,
                extractors: Sequence[WordExtractor], force: bool = False,
                progress: bool = True, fingerprints: FingerprintCache | None = None,
                select: Callable[[str], bool] | None = None) -> WordsReport:
    """Run ``extractors`` over the catalogue's episodes (those ``select`` accepts, e.g. this
    worker's shard) and write what changed. ``fingerprints``: the data dir's cache (None: the
    files are hashed)."""
    report = WordsReport()
    if not extractors:
        return report
    t_start = time.perf_counter()
    if type(store).write_words is CatalogueWriter.write_words:  # the contract's refusal
        report.error = f"the {store.backend or 'this'} backend does not store words yet"
        _say(progress, f"not indexed: {report.error}")
        return report
    try:
        stored = store.word_versions()
    except StoreError as exc:
        report.error = str(exc)
        _say(progress, f"not indexed: {exc}")
        return report
    cache = fingerprints if fingerprints is not None else FingerprintCache(None)
    # Words belong to indexed episodes: one whose pictures failed (or are not in the store)
    # is left for the run that indexes it (the store drops a failed episode's words).
    indexed = {st.id for st in store.episode_states() if st.status == "indexed"}
    episodes = [e for e in catalogue.episodes
                if (select is None or select(e.id)) and e.id in indexed]
    report.not_indexed = sum(1 for e in catalogue.episodes
                             if (select is None or select(e.id)) and e.id not in indexed)
    for n, ep in enumerate(episodes, 1):
        try:
            fp = cache.fingerprint(ep)
        except OSError as exc:
            for ex in extractors:
                report.failed.setdefault(ex.name, {})[ep.id] = f"media: {exc}"
            continue
        for ex in extractors:
            version = episode_version(ex, ep, fp)
            if not force and stored.get((ep.id, ex.name)) == version:
                report.unchanged[ex.name] += 1
                continue
            words = EpisodeWords(ep.id, ex.name, version)
            try:
                words.segments = ex.extract(ep)
            except WordsError as exc:
                words.error = str(exc)
            try:
                store.write_words(words)
            except StoreError as exc:
                report.failed.setdefault(ex.name, {})[ep.id] = f"not stored: {exc}"
                continue
            if words.error:
                report.failed.setdefault(ex.name, {})[ep.id] = words.error
                _say(progress, f"[{n}/{len(episodes)}] {ep.id} {ex.name}: {words.error}")
                continue
            report.written[ex.name] += 1
            report.segments[ex.name] += len(words.segments)
            cost = _cost_text(ex.cost())
            _say(progress, f"[{n}/{len(episodes)}] {ep.id} {ex.name}: "
                           f"{len(words.segments)} segments" + (f"; so far {cost}" if cost else ""))
    cache.save()
    report.cost = {ex.name: ex.cost() for ex in extractors if ex.cost()}
    report.seconds = time.perf_counter() - t_start
    return report
