"""The local indexing engine: which episodes need tagging, claims, decoding (in this process
or in a pool of decode workers), tagging in this process, aggregation, one writer.

``workers == 0`` decodes in this process, one episode after the other (what
:func:`indexer.indexing.run_index` does); ``workers >= 1`` hands each episode to a decode
worker (``indexer.pipeline.workers``) and tags whichever chunk of frames arrives first, so
decoding runs on ``workers`` cores while this process tags and writes. Chunks are the
tagging batches themselves (``batch_size`` frames of one episode, from its first frame), so
every tagger sees exactly the batches the sequential run gives it and the catalogue is the
same byte for byte.

A decode worker that dies (killed, out of memory) is replaced; its episode is decoded again
from the start by another worker, once; a second death marks it failed with the reason.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from dataclasses import dataclass

from indexer.catalogue import Catalogue
from indexer.claims import Claim, EpisodeClaims, NoClaims
from indexer.fingerprints import FingerprintCache
from indexer.frame_tagging import tag_frames
from indexer.indexing import (
    EpisodeAggregate,
    EpisodeBuilder,
    IndexReport,
    _FailureGuard,
    _mark_failed,
    select_todo,
)
from indexer.media import Frame, MediaError, MediaInfo, Sampler, probe
from indexer.pipeline.decode import CRASH, DONE, ERROR, FRAMES, decode_task
from indexer.pipeline.models import Models
from indexer.pipeline.workers import DIED, WorkerPool
from tvindex.core.records import EpisodeRecord, EpisodeTags
from tvindex.core.store import CatalogueWriter, StoreUnavailable
from tvindex.settings import AggregationSettings, SamplingSettings

log = logging.getLogger(__name__)
ATTEMPTS = 2  # decodes of one episode before a dying worker marks it failed


@dataclass(eq=False)
class _Job:
    id: int
    episode: EpisodeRecord
    fingerprint: str
    claim: Claim
    info: MediaInfo
    unchanged_indexed: bool
    aggregate: EpisodeAggregate | None = None
    attempts: int = 0


class LocalRun:
    """One run of the local engine (see the module docstring); :meth:`run` returns the
    report. Arguments as :func:`index_catalogue`'s."""

    def __init__(self, catalogue: Catalogue, store: CatalogueWriter, models: Models,
                 sampling: SamplingSettings, aggregation: AggregationSettings, *,
                 batch_size: int, force: bool, shard: tuple[int, int] | None,
                 progress: bool, fingerprints: FingerprintCache | None,
                 claims: EpisodeClaims | None, workers: int) -> None:
        self.catalogue, self.store, self.models = catalogue, store, models
        self.sampling, self.aggregation = sampling, aggregation
        self.sampler = Sampler.from_section(sampling)
        self.batch_size, self.force, self.shard = batch_size, force, shard
        self.progress, self.workers = progress, workers
        self.cache = fingerprints if fingerprints is not None else FingerprintCache(None)
        self.holder: EpisodeClaims | NoClaims = claims if claims is not None else NoClaims()
        self.report = IndexReport()
        self.builder: EpisodeBuilder | None = None
        self.version = ""
        self.states: dict = {}
        self._next_id = 0

    # -- set-up ---------------------------------------------------------------------------

    def _todo(self) -> list[tuple[EpisodeRecord, str]]:
        report = self.report
        report.skipped.clear()
        hashed_before = self.cache.computed
        todo = select_todo(self.catalogue, self.states, self.version, self.cache, self.shard,
                           self.force, self.store, report)
        self.cache.save()
        report.hashed += self.cache.computed - hashed_before
        return todo

    def _load(self) -> None:
        """Build the taggers (once) and everything that needs them."""
        if self.builder is not None:
            return
        self._use(*self.models.get())

    def _use(self, taggers, embedder) -> None:
        """Aggregate with these taggers (built here, or described: ``TaggerSpec``s)."""
        self.builder = EpisodeBuilder(taggers, self.sampler, self.aggregation,
                                      embedder=embedder, batch_size=self.batch_size)
        self.store.register_label_sets(self.builder.label_sets)

    def _selection_version(self, hint: str | None) -> str:
        """The configuration version the episodes are selected with: the one remembered for
        these settings, else the real one (which builds the taggers)."""
        return hint if hint is not None else self.models.version(self.sampling,
                                                                 self.aggregation)

    def _prepare(self, todo: list, hint: str | None) -> list:
        """Before tagging ``todo``: the real version checked against the remembered one
        (a mismatch selects again: the shortcut is never trusted over the real one), and the
        taggers built. Returns what to tag."""
        if todo and hint is not None:
            real = self.models.version(self.sampling, self.aggregation)
            if real != hint:
                log.info("configuration version %s (cached %s): selecting again", real, hint)
                self.version = real
                todo = self._todo()
        if todo:
            self._load()
        return todo

    def run(self) -> IndexReport:
        started = time.perf_counter()
        self.started_wall = time.time()
        self.store.upsert_catalogue(self.catalogue.programmes, self.catalogue.episodes)
        self.states = {s.id: s for s in self.store.episode_states()}
        hint = self.models.version_hint()
        self.version = self._selection_version(hint)
        todo = self._todo()
        pool = None
        if todo and self.workers > 0 and not self.models.loaded:
            # Forked before any model is loaded: the workers carry no tagger state.
            pool = WorkerPool(min(self.workers, len(todo)))
        try:
            todo = self._prepare(todo, hint)
            self.guard = _FailureGuard(self.store, self.report)
            from tqdm import tqdm

            self.bar = tqdm(total=len(todo), unit="ep", file=sys.stderr,
                            disable=not self.progress or None, desc="indexing",
                            dynamic_ncols=True)
            self._t0 = started
            with self.bar:
                if todo and self.workers > 0:
                    if pool is None:
                        pool = WorkerPool(min(self.workers, len(todo)))
                    self._pooled(todo, pool)
                elif todo:
                    self._inline(todo)
        finally:
            if pool is not None:
                pool.close()
        self.guard.finish()
        self.report.seconds = time.perf_counter() - started
        return self.report

    # -- one episode ----------------------------------------------------------------------

    def _new_job(self, ep: EpisodeRecord, fp: str, claim: Claim) -> _Job | None:
        """A job for the claimed episode, not yet probed; None when another run finished it
        meanwhile (recorded, claim released)."""
        if claim.finished_elsewhere(fp, self.version, self.started_wall):
            self.report.by_other_run.append(ep.id)
            claim.release()
            self.bar.update(1)
            return None
        st = self.states.get(ep.id)
        unchanged = st is not None and st.status == "indexed" and st.fingerprint == fp
        self._next_id += 1
        return _Job(self._next_id, ep, fp, claim, None, unchanged)  # type: ignore[arg-type]

    def _begin(self, ep: EpisodeRecord, fp: str, claim: Claim) -> _Job | None:
        """Probe the claimed episode's file (the one probe); None when there is nothing to
        decode (done by another run meanwhile, or unreadable: recorded)."""
        job = self._new_job(ep, fp, claim)
        if job is None:
            return None
        self.bar.set_description(f"indexing {ep.id}")
        try:
            job.info = probe(ep.media_path)
        except MediaError as exc:
            self._failed(job, exc)
            return None
        return job

    def _aggregate(self, job: _Job) -> EpisodeAggregate:
        if job.aggregate is None:
            assert self.builder is not None
            job.aggregate = self.builder.start(job.episode, job.info, job.fingerprint,
                                               self.version)
        return job.aggregate

    def _frames(self, job: _Job, frames: list[Frame]) -> None:
        assert self.builder is not None
        aggregate = self._aggregate(job)
        b = self.builder
        for tagged in tag_frames(frames, b.taggers, self.batch_size, embedder=b.embedder):
            aggregate.add(tagged)
        self.report.frames += len(frames)
        elapsed = time.perf_counter() - self._t0
        self.bar.set_postfix(frames=self.report.frames,
                             fps=f"{self.report.frames / elapsed:.1f}" if elapsed else "-",
                             refresh=False)

    def _done(self, job: _Job) -> None:
        try:
            tags = self._aggregate(job).finish()
        except MediaError as exc:
            self._failed(job, exc)
            return
        self._write(job, tags)

    def _write(self, job: _Job, tags: EpisodeTags) -> None:
        ep, claim = job.episode, job.claim
        try:
            self.store.write_episode(tags)
        except StoreUnavailable as exc:
            # The store's own bounded retries are spent and the write left nothing
            # half-done: record why and go on; the next run redoes the episode.
            reason = f"store unavailable: {exc}"
            self.guard.settle()
            _mark_failed(self.store, ep.id, reason)
            self.report.failed[ep.id] = reason
            log.warning("failed: %s: %s", ep.id, reason)
        else:
            claim.note("done", fingerprint=job.fingerprint, config_version=self.version)
            self.guard.settle()
            self.report.indexed.append(ep.id)
        claim.release()
        self.bar.update(1)

    def _failed(self, job: _Job, exc: MediaError) -> None:
        job.claim.note("failed", fingerprint=job.fingerprint, config_version=self.version)
        job.claim.release()
        log.warning("failed: %s", exc)
        self.bar.update(1)
        self.guard.failed(job.episode.id, getattr(exc, "reason", str(exc)), str(exc),
                          job.unchanged_indexed)

    # -- drivers --------------------------------------------------------------------------

    def _inline(self, todo: list[tuple[EpisodeRecord, str]]) -> None:
        feed = _Feed(self, todo)
        while not feed.empty:
            job = feed.next(can_block=True)
            if job is None:
                continue
            ep = job.episode
            try:
                try:
                    for frames in decode_task(ep.media_path, job.info, ep.start_s or 0.0,
                                              ep.end_s, self.sampler, self.batch_size):
                        self._frames(job, frames)
                except MediaError as exc:
                    self._failed(job, exc)
                    continue
                self._done(job)
            finally:
                job.claim.release()

    def _pooled(self, todo: list[tuple[EpisodeRecord, str]], pool: WorkerPool) -> None:
        feed = _Feed(self, todo)
        active: dict[int, _Job] = {}
        retry: deque[_Job] = deque()
        try:
            while True:
                for worker in pool.idle():
                    job = retry.popleft() if retry else feed.next(can_block=not active)
                    if job is None:
                        break
                    ep = job.episode
                    active[job.id] = job
                    pool.submit(worker, job.id, (ep.media_path, job.info, ep.start_s or 0.0,
                                                 ep.end_s, self.sampler, self.batch_size))
                if not active:
                    if feed.empty and not retry:
                        return
                    continue
                for worker, (kind, job_id, payload) in pool.wait():
                    job = active[job_id]
                    if kind == FRAMES:
                        self._frames(job, payload)
                        continue
                    worker.job = None
                    if kind == DONE:
                        self._done(job)
                    elif kind == ERROR:
                        self._failed(job, payload)
                    elif kind == CRASH:
                        raise payload
                    elif kind == DIED:
                        pool.replace(worker)
                        self._died(job, payload, retry)
                    del active[job_id]
        finally:
            for job in list(active.values()) + list(retry):
                job.claim.release()

    def _died(self, job: _Job, reason: str, retry: deque[_Job]) -> None:
        """Its worker ended mid-episode: decode it again from the start, or give up."""
        job.attempts += 1
        job.aggregate = None  # what was aggregated of it is dropped
        if job.attempts < ATTEMPTS:
            log.warning("%s: %s; decoding it again", job.episode.id, reason)
            retry.append(job)
            return
        self._failed(job, MediaError(job.episode.media_path,
                                     f"{reason} while decoding it ({job.attempts} times)"))


class _Feed:
    """The episodes to hand out, claimed one at a time: those another run holds are put
    aside and tried again later; waiting for one (``can_block``) only when this run holds
    no other claim, so two runs never wait for each other."""

    def __init__(self, run: LocalRun, todo: list[tuple[EpisodeRecord, str]]) -> None:
        self.run = run
        self.pending = deque(todo)
        self.deferred: deque[tuple[EpisodeRecord, str]] = deque()

    @property
    def empty(self) -> bool:
        return not self.pending and not self.deferred

    def next(self, *, can_block: bool) -> _Job | None:
        run = self.run
        while self.pending:
            ep, fp = self.pending.popleft()
            claim = run.holder.claim(ep.id)
            if claim is None:  # another run is on it: look again later
                self.deferred.append((ep, fp))
                continue
            job = run._begin(ep, fp, claim)
            if job is not None:
                return job
        for _ in range(len(self.deferred)):
            ep, fp = self.deferred.popleft()
            claim = run.holder.claim(ep.id)
            if claim is None:
                self.deferred.append((ep, fp))
                continue
            job = run._begin(ep, fp, claim)
            if job is not None:
                return job
        if can_block and self.deferred:
            ep, fp = self.deferred.popleft()
            run.bar.set_description(f"waiting for {ep.id}")
            return run._begin(ep, fp, run.holder.claim(ep.id, wait=True))  # type: ignore[arg-type]
        return None


def index_catalogue(catalogue: Catalogue, store: CatalogueWriter, models: Models,
                    sampling: SamplingSettings, aggregation: AggregationSettings, *,
                    batch_size: int = 16, force: bool = False,
                    shard: tuple[int, int] | None = None, progress: bool = True,
                    fingerprints: FingerprintCache | None = None,
                    claims: EpisodeClaims | None = None, workers: int = 0) -> IndexReport:
    """Index every episode of the catalogue that needs it, with the local engine.

    ``models``: the taggers, built when first needed (:class:`Models`); ``workers``: decode
    processes (0: decode in this process). The rest as :func:`indexer.indexing.run_index`.
    """
    return LocalRun(catalogue, store, models, sampling, aggregation, batch_size=batch_size,
                    force=force, shard=shard, progress=progress, fingerprints=fingerprints,
                    claims=claims, workers=workers).run()
