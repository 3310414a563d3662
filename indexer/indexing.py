"""Index a catalogue: sample + tag every episode, aggregate, write through the store.

Resumable and idempotent: an episode is skipped when it is indexed with the same content
fingerprint and configuration version; each episode is written in one transaction, so a crash
(even ``kill -9``) mid-episode leaves its old state, and the next run redoes it. A file that
cannot be read is recorded as failed with the reason, and the run goes on.

Runs sharing a data dir claim each episode before tagging it (``indexer.claims``), so each
episode is tagged once; fingerprints come from the data dir's cache while a file's size,
times, inode and device are unchanged (``indexer.fingerprints``). A run whose first attempts
all fail the same way on episodes indexed before from the same media stops before marking
any of them failed (``IndexAborted``): a broken setting does not wipe good tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from indexer.catalogue import Catalogue
from indexer.claims import Claim, EpisodeClaims, NoClaims
from indexer.fingerprints import FingerprintCache
from indexer.frame_tagging import TaggedFrame, label_sets_of, tag_frames, visual_tagger
from indexer.media import Frame, MediaError, MediaInfo, Sampler, probe
from indexer.taggers.base import Tagger
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, SegmentTags
from tvindex.core.stats import EmbeddingAccumulator, StatsAccumulator, threshold_for
from tvindex.core.store import CatalogueWriter, StoreUnavailable
from tvindex.core.timecode import EpisodeClock
from tvindex.errors import UserError
from tvindex.settings import AggregationSettings, SamplingSettings

log = logging.getLogger(__name__)


def config_version(taggers: Sequence[Tagger], embedder: Tagger | None,
                   sampling: SamplingSettings, aggregation: AggregationSettings) -> str:
    """Changes whenever the tags an episode gets could change: models, sampling, aggregation,
    and which tagger makes the embeddings (``embedder``, as
    :func:`indexer.frame_tagging.choose_embedder` resolved ``taggers.embedding``: ``auto`` and
    the name of the tagger it picks give the same version). ``sampling``/``aggregation``: those
    settings sections, hashed whole."""
    payload = {
        "taggers": [t.identity() for t in taggers],
        "embedding": embedder.identity() if embedder is not None else None,
        "sampling": sampling.model_dump(mode="json", exclude=_default_detector(sampling)),
        "aggregation": aggregation.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _default_detector(sampling: SamplingSettings) -> set[str]:
    """The shot-detector keys at their defaults are left out of the hash, so catalogues made
    before they existed keep their version (the default is what ran then)."""
    if (sampling.shot_detector, sampling.transition_threshold) == ("content", 0.5):
        return {"shot_detector", "transition_threshold"}
    return set()


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
    visual: EmbeddingAccumulator | None = None
    thumb_time: float = 0.0
    thumb: np.ndarray | None = None


class EpisodeBuilder:
    """Builds one episode's ``EpisodeTags``: samples its frames, tags them, and aggregates them
    per segment (shot, or sampled frame) and per episode, streaming.

    ``sampler``: how frames are sampled (from the ``sampling`` section); ``aggregation``: the
    ``aggregation`` section (coverage thresholds, thumbnail width); ``embedder``: the tagger
    whose features become the embeddings, one of ``taggers`` (None: no embeddings), as
    :func:`indexer.frame_tagging.choose_embedder` picks it; ``batch_size``: frames per tagger
    call (``taggers.batch_size``).
    """

    def __init__(self, taggers: Sequence[Tagger], sampler: Sampler,
                 aggregation: AggregationSettings, *, embedder: Tagger | None,
                 batch_size: int = 16) -> None:
        self.taggers = list(taggers)
        self.sampler = sampler
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.label_sets: list[LabelSet] = label_sets_of(self.taggers)
        self.embedder = embedder
        # The openclip tagger's image embeddings, aggregated like the embedder's features
        # but kept apart (their own space; SegmentTags.visual).
        self.visual = visual_tagger(self.taggers)
        self.thresholds = {ls.name: threshold_for(ls, aggregation.coverage_threshold)
                           for ls in self.label_sets}

    def _accumulators(self) -> dict[str, StatsAccumulator]:
        return {ls.name: StatsAccumulator(len(ls), self.thresholds[ls.name])
                for ls in self.label_sets}

    def _embedding_accumulator(self) -> EmbeddingAccumulator | None:
        if self.embedder is None:
            return None
        return EmbeddingAccumulator(self.embedder.embedding_dim)

    def _visual_accumulator(self) -> EmbeddingAccumulator | None:
        return EmbeddingAccumulator(self.visual.visual_dim) if self.visual is not None else None

    def frames(self, episode: EpisodeRecord, info: MediaInfo | None = None) -> Iterator[Frame]:
        """The episode's sampled frames; ``info``: its file's probe when already made (else
        the file is probed first)."""
        start_s, end_s = episode.start_s or 0.0, episode.end_s
        if info is None:
            return self.sampler.sample(episode.media_path, start_s, end_s)
        return self.sampler.frames(episode.media_path, info, start_s, end_s)

    def tag(self, episode: EpisodeRecord, fingerprint: str, version: str,
            on_frame=None) -> EpisodeTags:
        info = probe(episode.media_path)  # the one probe of this episode's file
        aggregate = self.start(episode, info, fingerprint, version)
        frames = self.frames(episode, info)
        for tagged in tag_frames(frames, self.taggers, self.batch_size, embedder=self.embedder):
            aggregate.add(tagged)
            if on_frame is not None:
                on_frame(tagged.frame)
        return aggregate.finish()

    def start(self, episode: EpisodeRecord, info: MediaInfo, fingerprint: str,
              version: str) -> EpisodeAggregate:
        """A streaming aggregate of one episode whose file's probe gave ``info``: feed it the
        episode's tagged frames in time order (:meth:`EpisodeAggregate.add`), from any
        process that decoded them, then :meth:`EpisodeAggregate.finish`."""
        return EpisodeAggregate(self, episode, info, fingerprint, version)

    def _add(self, tagged: TaggedFrame, seg: _OpenSegment,
             episode_acc: dict[str, StatsAccumulator],
             episode_emb: EmbeddingAccumulator | None = None,
             episode_visual: EmbeddingAccumulator | None = None) -> None:
        for ls in self.label_sets:
            probs = ls.probabilities(tagged.logits[ls.name])
            seg.accumulators[ls.name].add(probs)
            episode_acc[ls.name].add(probs)
        if seg.embedding is not None and episode_emb is not None:
            seg.embedding.add(tagged.embedding)
            episode_emb.add(tagged.embedding)
        if seg.visual is not None and episode_visual is not None:
            seg.visual.add(tagged.visual)
            episode_visual.add(tagged.visual)
        f = tagged.frame
        # Thumbnail: the frame nearest the middle of the shot (the first frame otherwise).
        mid = (f.shot.start_s + f.shot.end_s) / 2 if f.shot else f.time_s
        if seg.thumb is None or abs(f.time_s - mid) < abs(seg.thumb_time - mid):
            seg.thumb, seg.thumb_time = f.image, f.time_s


class EpisodeAggregate:
    """One episode's tags as its tagged frames arrive: per segment (shot, or sampled frame)
    and per episode, streaming (made by :meth:`EpisodeBuilder.start`)."""

    def __init__(self, builder: EpisodeBuilder, episode: EpisodeRecord, info: MediaInfo,
                 fingerprint: str, version: str) -> None:
        self.builder = builder
        self.episode = episode
        self.info = info
        self.fingerprint = fingerprint
        self.version = version
        self.episode_acc = builder._accumulators()
        self.episode_emb = builder._embedding_accumulator()
        self.episode_visual = builder._visual_accumulator()
        self.segments: list[SegmentTags] = []
        self.current: _OpenSegment | None = None

    def _close(self, seg: _OpenSegment, end_s: float) -> None:
        width = self.builder.aggregation.thumbnail_width
        self.segments.append(SegmentTags(
            index=len(self.segments), start_s=round(seg.start_s, 3), end_s=round(end_s, 3),
            time_s=round(seg.thumb_time, 3),
            stats={k: a.result() for k, a in seg.accumulators.items()},
            thumbnail=thumbnail_jpeg(seg.thumb, width) if seg.thumb is not None else b"",
            embedding=seg.embedding.result() if seg.embedding is not None else None,
            visual=seg.visual.result() if seg.visual is not None else None))

    def add(self, tagged: TaggedFrame) -> None:
        f = tagged.frame
        key = f.shot.index if f.shot is not None else f.index
        current = self.current
        if current is None or key != current.key:
            if current is not None:
                self._close(current, current.end_s if current.end_s is not None else f.time_s)
            current = self.current = _OpenSegment(
                key, f.shot.start_s if f.shot else f.time_s,
                f.shot.end_s if f.shot else None, self.builder._accumulators(),
                self.builder._embedding_accumulator(), self.builder._visual_accumulator())
        self.builder._add(tagged, current, self.episode_acc, self.episode_emb,
                          self.episode_visual)

    def finish(self) -> EpisodeTags:
        """The episode's tags; MediaError when no frame came."""
        episode, info, builder = self.episode, self.info, self.builder
        start = episode.start_s or 0.0
        end = min(episode.end_s, info.duration_s) if episode.end_s is not None else info.duration_s
        if self.current is not None:
            current, self.current = self.current, None
            self._close(current, current.end_s if current.end_s is not None else end)
        segments, episode_acc, episode_emb = self.segments, self.episode_acc, self.episode_emb
        if not segments:
            raise MediaError(episode.media_path, "no frames could be sampled in "
                             f"{start:.1f}-{end:.1f} s")
        return EpisodeTags(
            episode_id=episode.id, fingerprint=self.fingerprint, config_version=self.version,
            duration_s=round(end - start, 3), segments=segments,
            stats={k: a.result() for k, a in episode_acc.items()},
            sampling=builder.sampler.mode,
            embedding=episode_emb.result() if episode_emb is not None else None,
            embedding_model=builder.embedder.identity() if builder.embedder is not None else "",
            **_visual_fields(builder.visual, self.episode_visual),
            clock=EpisodeClock.for_episode(info.frame_rate, info.timecode, episode.start_s,
                                           info.vfr) if info.frame_rate else None)


def _visual_fields(tagger: Tagger | None, acc: EmbeddingAccumulator | None) -> dict:
    """EpisodeTags' visual_* fields from the visual tagger and the episode's accumulator."""
    if tagger is None or acc is None:
        return {}
    return {"visual_embedding": acc.result(), "visual_model": tagger.identity(),
            "visual_frames": acc.n}


@dataclass
class IndexReport:
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    by_other_run: list[str] = field(default_factory=list)  # done by a run sharing the data dir
    frames: int = 0
    seconds: float = 0.0
    hashed: int = 0  # fingerprints computed (not taken from the cache)

    def to_dict(self) -> dict:
        return {"indexed": len(self.indexed), "skipped": len(self.skipped),
                "failed": self.failed, "frames": self.frames,
                "seconds": round(self.seconds, 2),
                "frames_per_s": round(self.frames / self.seconds, 2) if self.seconds else None,
                "indexed_ids": list(self.indexed), "by_other_run": list(self.by_other_run),
                "hashed": self.hashed}


class IndexAborted(UserError):
    """Every episode the run tried failed the same way, and each was indexed before from the
    same media: a fault of the settings or the environment, not of the media. Nothing was
    marked failed; the previous tags are kept."""


ABORT_AFTER = 3  # same-reason failures of unchanged, indexed episodes that stop a run


def _same_reason(reason: str) -> str:
    """A failure's reason with its numbers blanked (time ranges and sizes differ per episode)."""
    return re.sub(r"\d+(?:\.\d+)?", "#", reason)


class _FailureGuard:
    """Holds back the failures of the run's first attempts while each of them is an episode
    indexed before from the same media (unchanged fingerprint) failing for the same reason.
    The first success, or the first failure that does not fit, writes the held failures and
    ends the watch; ``ABORT_AFTER`` held failures (or a run whose attempts all were held)
    raise :class:`IndexAborted` before any of them is marked failed."""

    def __init__(self, store: CatalogueWriter, report: IndexReport) -> None:
        self.store = store
        self.report = report
        self.watching = True
        self.held: list[tuple[str, str, str]] = []  # episode id, reason, message

    def failed(self, episode_id: str, reason: str, message: str, unchanged_indexed: bool) -> None:
        if (self.watching and unchanged_indexed
                and (not self.held or _same_reason(reason) == _same_reason(self.held[0][1]))):
            self.held.append((episode_id, reason, message))
            if len(self.held) >= ABORT_AFTER:
                self._abort()
            return
        self.settle()
        _mark_failed(self.store, episode_id, reason)
        self.report.failed[episode_id] = message

    def settle(self) -> None:
        self.watching = False
        for episode_id, reason, message in self.held:
            _mark_failed(self.store, episode_id, reason)
            self.report.failed[episode_id] = message
        self.held.clear()

    def finish(self) -> None:
        if self.held:
            self._abort()

    def _abort(self) -> None:
        ids = ", ".join(e for e, _, _ in self.held)
        raise IndexAborted(
            f"every episode fails with: {self.held[0][1]} (tried: {ids}; each was indexed "
            "before from the same media); nothing was marked failed and their previous tags "
            "are kept: check the settings (sampling, taggers) and the environment, then run "
            "again")


def select_todo(catalogue: Catalogue, states: dict, version: str, cache: FingerprintCache,
                shard: tuple[int, int] | None, force: bool, store: CatalogueWriter,
                report: IndexReport) -> list[tuple[EpisodeRecord, str]]:
    """The episodes of this shard that need tagging, with their fingerprints; unchanged ones
    go to ``report.skipped``, unreadable ones are marked failed."""
    todo: list[tuple[EpisodeRecord, str]] = []
    for ep in catalogue.episodes:
        if not in_shard(ep.id, shard):
            continue
        try:
            fp = cache.fingerprint(ep)
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
    return todo


def run_index(catalogue: Catalogue, store: CatalogueWriter, taggers: Sequence[Tagger],
              sampling: SamplingSettings, aggregation: AggregationSettings, *,
              embedder: Tagger | None, batch_size: int = 16, force: bool = False,
              shard: tuple[int, int] | None = None, progress: bool = True,
              fingerprints: FingerprintCache | None = None,
              claims: EpisodeClaims | None = None) -> IndexReport:
    """Index every episode of the catalogue that needs it. Returns what happened.

    ``sampling``/``aggregation``: those settings sections; ``embedder``: one of ``taggers``
    (see :func:`indexer.frame_tagging.choose_embedder`) or None; ``batch_size``: frames per
    tagger call. The sampler is built once for the run and each file is probed once.
    ``fingerprints``: the data dir's fingerprint cache (None: every file is hashed);
    ``claims``: the data dir's episode claims, for runs that share it (None: this run is
    alone). Raises :class:`IndexAborted` when every episode tried fails the same way (see
    :class:`_FailureGuard`). The sequential engine: decodes, tags and writes in this
    process, one episode after the other; ``indexer.pipeline.engine`` runs the same with
    decode workers and taggers built only when needed (``tvindex index``).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    started_wall = time.time()
    builder = EpisodeBuilder(taggers, Sampler.from_section(sampling), aggregation,
                             embedder=embedder, batch_size=batch_size)
    version = config_version(taggers, embedder, sampling, aggregation)
    store.upsert_catalogue(catalogue.programmes, catalogue.episodes)
    store.register_label_sets(builder.label_sets)
    states = {s.id: s for s in store.episode_states()}
    report = IndexReport()
    cache = fingerprints if fingerprints is not None else FingerprintCache(None)
    hashed_before = cache.computed

    todo = select_todo(catalogue, states, version, cache, shard, force, store, report)
    cache.save()
    report.hashed = cache.computed - hashed_before
    guard = _FailureGuard(store, report)
    holder: EpisodeClaims | NoClaims = claims if claims is not None else NoClaims()

    bar = tqdm(total=len(todo), unit="ep", file=sys.stderr, disable=not progress or None,
               desc="indexing", dynamic_ncols=True)

    def on_frame(_f: Frame) -> None:
        report.frames += 1
        elapsed = time.perf_counter() - started
        bar.set_postfix(frames=report.frames,
                        fps=f"{report.frames / elapsed:.1f}" if elapsed else "-", refresh=False)

    def attempt(ep: EpisodeRecord, fp: str, claim: Claim) -> None:
        if claim.finished_elsewhere(fp, version, started_wall):
            report.by_other_run.append(ep.id)  # a run sharing the data dir did it meanwhile
            return
        bar.set_description(f"indexing {ep.id}")
        st = states.get(ep.id)
        unchanged_indexed = st is not None and st.status == "indexed" and st.fingerprint == fp
        try:
            tags = builder.tag(ep, fp, version, on_frame=on_frame)
        except MediaError as exc:
            claim.note("failed", fingerprint=fp, config_version=version)
            log.warning("failed: %s", exc)
            guard.failed(ep.id, exc.reason if hasattr(exc, "reason") else str(exc), str(exc),
                         unchanged_indexed)
            return
        try:
            store.write_episode(tags)
        except StoreUnavailable as exc:
            # The store's own bounded retries are spent and the write left nothing
            # half-done: record why and go on; the next run redoes the episode.
            reason = f"store unavailable: {exc}"
            guard.settle()
            _mark_failed(store, ep.id, reason)
            report.failed[ep.id] = reason
            log.warning("failed: %s: %s", ep.id, reason)
            return
        claim.note("done", fingerprint=fp, config_version=version)
        guard.settle()
        report.indexed.append(ep.id)

    deferred: list[tuple[EpisodeRecord, str]] = []
    with bar:
        for ep, fp in todo:
            claim = holder.claim(ep.id)
            if claim is None:  # another run is on it: look again at the end
                deferred.append((ep, fp))
                continue
            with claim:
                attempt(ep, fp, claim)
            bar.update(1)
        for ep, fp in deferred:
            bar.set_description(f"waiting for {ep.id}")
            with holder.claim(ep.id, wait=True) as claim:  # type: ignore[union-attr]
                attempt(ep, fp, claim)
            bar.update(1)
    guard.finish()
    report.seconds = time.perf_counter() - started
    return report


def _mark_failed(store: CatalogueWriter, episode_id: str, reason: str) -> None:
    """Record a failure; when the store itself cannot be reached, the episode simply stays
    as it was (pending, or indexed with its older tags) and the next run retries it."""
    try:
        store.mark_failed(episode_id, reason)
    except StoreUnavailable as exc:
        log.warning("could not mark %s failed (%s); it stays pending", episode_id, exc)
