"""Index a catalogue: sample + tag every episode, aggregate, write through the store.

Resumable and idempotent: an episode is skipped when it is indexed with the same content
fingerprint and configuration version; each episode is written in one transaction, so a crash
(even ``kill -9``) mid-episode leaves its old state, and the next run redoes it. A file that
cannot be read is recorded as failed with the reason, and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from indexer.catalogue import Catalogue
from indexer.media import Frame, MediaError, probe, sample_frames
from indexer.pipeline import TaggedFrame, choose_embedder, label_sets_of, tag_frames
from indexer.taggers.base import Tagger
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, SegmentTags
from tvindex.core.stats import EmbeddingAccumulator, StatsAccumulator, threshold_for
from tvindex.core.store import CatalogueStore, StoreUnavailable
from tvindex.settings import Settings

log = logging.getLogger(__name__)
FINGERPRINT_CHUNK = 1 << 22  # 4 MiB from each end of the file


def content_fingerprint(episode: EpisodeRecord) -> str:
    """Hash of the file's size, its first and last 4 MiB, and the episode's time range: cheap
    on multi-GB masters, and it changes when a file is replaced or re-encoded."""
    path = Path(episode.media_path)
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(f"{size}|{episode.start_s}|{episode.end_s}|".encode())
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_CHUNK))
        if size > 2 * FINGERPRINT_CHUNK:
            f.seek(size - FINGERPRINT_CHUNK)
            h.update(f.read(FINGERPRINT_CHUNK))
    return h.hexdigest()[:32]


def config_version(taggers: Sequence[Tagger], settings: Settings) -> str:
    """Changes whenever the tags an episode gets could change: models, sampling, aggregation,
    and which tagger makes the embeddings (``taggers.embedding``, as resolved: ``auto`` and the
    name of the tagger it picks give the same version)."""
    embedder = choose_embedder(taggers, settings)
    payload = {
        "taggers": [t.identity() for t in taggers],
        "embedding": embedder.identity() if embedder is not None else None,
        "sampling": settings.sampling.model_dump(mode="json"),
        "aggregation": settings.aggregation.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def in_shard(episode_id: str, shard: tuple[int, int] | None) -> bool:
    """Deterministic split of a catalogue over N workers (``--shard I/N``, I in 0..N-1)."""
    if shard is None:
        return True
    i, n = shard
    return zlib.crc32(episode_id.encode()) % n == i


def thumbnail_jpeg(image: np.ndarray, width: int) -> bytes:
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes() if ok else b""


@dataclass
class _OpenSegment:
    key: int
    start_s: float
    end_s: float | None
    accumulators: dict[str, StatsAccumulator]
    embedding: EmbeddingAccumulator | None = None
    thumb_time: float = 0.0
    thumb: np.ndarray | None = None


class EpisodeTagger:
    """Turns one episode's tagged frames into ``EpisodeTags``, streaming."""

    def __init__(self, taggers: Sequence[Tagger], settings: Settings) -> None:
        self.taggers = list(taggers)
        self.settings = settings
        self.label_sets: list[LabelSet] = label_sets_of(self.taggers)
        # The tagger whose features become the embeddings (None: no embeddings).
        self.embedder: Tagger | None = choose_embedder(self.taggers, settings)
        self.thresholds = {ls.name: threshold_for(ls, settings.aggregation.coverage_threshold)
                           for ls in self.label_sets}

    def _accumulators(self) -> dict[str, StatsAccumulator]:
        return {ls.name: StatsAccumulator(len(ls), self.thresholds[ls.name])
                for ls in self.label_sets}

    def _embedding_accumulator(self) -> EmbeddingAccumulator | None:
        if self.embedder is None:
            return None
        return EmbeddingAccumulator(self.embedder.embedding_dim)

    def frames(self, episode: EpisodeRecord) -> Iterator[Frame]:
        s = self.settings.sampling
        return sample_frames(
            episode.media_path, s.mode, s.every_s, start_s=episode.start_s or 0.0,
            end_s=episode.end_s, frames_per_shot=s.frames_per_shot,
            shot_threshold=s.shot_threshold, min_shot_s=s.min_shot_s, max_side=s.max_side)

    def tag(self, episode: EpisodeRecord, fingerprint: str, version: str,
            on_frame=None) -> EpisodeTags:
        info = probe(episode.media_path)
        start = episode.start_s or 0.0
        end = min(episode.end_s, info.duration_s) if episode.end_s is not None else info.duration_s
        episode_acc = self._accumulators()
        episode_emb = self._embedding_accumulator()
        segments: list[SegmentTags] = []
        current: _OpenSegment | None = None
        width = self.settings.aggregation.thumbnail_width

        def close(seg: _OpenSegment, end_s: float) -> None:
            segments.append(SegmentTags(
                index=len(segments), start_s=round(seg.start_s, 3), end_s=round(end_s, 3),
                time_s=round(seg.thumb_time, 3),
                stats={k: a.result() for k, a in seg.accumulators.items()},
                thumbnail=thumbnail_jpeg(seg.thumb, width) if seg.thumb is not None else b"",
                embedding=seg.embedding.result() if seg.embedding is not None else None))

        frames = self.frames(episode)
        for tagged in tag_frames(frames, self.taggers, self.settings.taggers.batch_size,
                                 embedder=self.embedder):
            f = tagged.frame
            key = f.shot.index if f.shot is not None else f.index
            if current is None or key != current.key:
                if current is not None:
                    close(current, current.end_s if current.end_s is not None else f.time_s)
                current = _OpenSegment(
                    key, f.shot.start_s if f.shot else f.time_s,
                    f.shot.end_s if f.shot else None, self._accumulators(),
                    self._embedding_accumulator())
            self._add(tagged, current, episode_acc, episode_emb)
            if on_frame is not None:
                on_frame(f)
        if current is not None:
            close(current, current.end_s if current.end_s is not None else end)
        if not segments:
            raise MediaError(episode.media_path, "no frames could be sampled in "
                             f"{start:.1f}-{end:.1f} s")
        return EpisodeTags(
            episode_id=episode.id, fingerprint=fingerprint, config_version=version,
            duration_s=round(end - start, 3), segments=segments,
            stats={k: a.result() for k, a in episode_acc.items()},
            sampling=self.settings.sampling.mode,
            embedding=episode_emb.result() if episode_emb is not None else None,
            embedding_model=self.embedder.identity() if self.embedder is not None else "")

    def _add(self, tagged: TaggedFrame, seg: _OpenSegment,
             episode_acc: dict[str, StatsAccumulator],
             episode_emb: EmbeddingAccumulator | None = None) -> None:
        for ls in self.label_sets:
            probs = ls.probabilities(tagged.logits[ls.name])
            seg.accumulators[ls.name].add(probs)
            episode_acc[ls.name].add(probs)
        if seg.embedding is not None and episode_emb is not None:
            seg.embedding.add(tagged.embedding)
            episode_emb.add(tagged.embedding)
        f = tagged.frame
        # Thumbnail: the frame nearest the middle of the shot (the first frame otherwise).
        mid = (f.shot.start_s + f.shot.end_s) / 2 if f.shot else f.time_s
        if seg.thumb is None or abs(f.time_s - mid) < abs(seg.thumb_time - mid):
            seg.thumb, seg.thumb_time = f.image, f.time_s


@dataclass
class IndexReport:
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"indexed": len(self.indexed), "skipped": len(self.skipped),
                "failed": self.failed, "frames": self.frames,
                "seconds": round(self.seconds, 2),
                "frames_per_s": round(self.frames / self.seconds, 2) if self.seconds else None}


def run_index(catalogue: Catalogue, store: CatalogueStore, taggers: Sequence[Tagger],
              settings: Settings, *, force: bool = False, shard: tuple[int, int] | None = None,
              progress: bool = True) -> IndexReport:
    """Index every episode of the catalogue that needs it. Returns what happened."""
    from tqdm import tqdm

    started = time.perf_counter()
    engine = EpisodeTagger(taggers, settings)
    version = config_version(taggers, settings)
    store.upsert_catalogue(catalogue.programmes, catalogue.episodes)
    store.register_label_sets(engine.label_sets)
    states = {s.id: s for s in store.episode_states()}
    report = IndexReport()

    todo: list[tuple[EpisodeRecord, str]] = []
    for ep in catalogue.episodes:
        if not in_shard(ep.id, shard):
            continue
        try:
            fp = content_fingerprint(ep)
        except OSError as exc:
            _mark_failed(store, ep.id, f"cannot read {ep.media_path}: {exc.strerror or exc}")
            report.failed[ep.id] = str(exc)
            continue
        st = states.get(ep.id)
        if (not force and st is not None and st.status == "indexed"
                and st.fingerprint == fp and st.config_version == version):
            report.skipped.append(ep.id)
            continue
        todo.append((ep, fp))

    bar = tqdm(total=len(todo), unit="ep", file=sys.stderr, disable=not progress or None,
               desc="indexing", dynamic_ncols=True)
    with bar:
        for ep, fp in todo:
            bar.set_description(f"indexing {ep.id}")

            def on_frame(_f: Frame) -> None:
                report.frames += 1
                elapsed = time.perf_counter() - started
                bar.set_postfix(frames=report.frames,
                                fps=f"{report.frames / elapsed:.1f}" if elapsed else "-",
                                refresh=False)

            try:
                tags = engine.tag(ep, fp, version, on_frame=on_frame)
            except MediaError as exc:
                _mark_failed(store, ep.id, exc.reason if hasattr(exc, "reason") else str(exc))
                report.failed[ep.id] = str(exc)
                log.warning("failed: %s", exc)
                bar.update(1)
                continue
            try:
                store.write_episode(tags)
            except StoreUnavailable as exc:
                # The store's own bounded retries are spent and the write left nothing
                # half-done: record why and go on; the next run redoes the episode.
                reason = f"store unavailable: {exc}"
                _mark_failed(store, ep.id, reason)
                report.failed[ep.id] = reason
                log.warning("failed: %s: %s", ep.id, reason)
                bar.update(1)
                continue
            report.indexed.append(ep.id)
            bar.update(1)
    report.seconds = time.perf_counter() - started
    return report


def _mark_failed(store: CatalogueStore, episode_id: str, reason: str) -> None:
    """Record a failure; when the store itself cannot be reached, the episode simply stays
    as it was (pending, or indexed with its older tags) and the next run retries it."""
    try:
        store.mark_failed(episode_id, reason)
    except StoreUnavailable as exc:
        log.warning("could not mark %s failed (%s); it stays pending", episode_id, exc)
