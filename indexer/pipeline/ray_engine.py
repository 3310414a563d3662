"""The Ray engine: the same run as the local engine over a Ray cluster, with Ray Data.

The driver (this process) does what needs the store and the data dir: the catalogue, the
episode states, fingerprints and claims (as the local engine: resumable, runs share the
work), then builds a dataset with one row per episode to tag. It builds no taggers (they
take seconds to build, and the actors build them anyway): it selects with the configuration
version remembered for these settings, and where none is (a new data dir) with none at all
when the store holds no indexed episode (every episode is then selected whatever the
version); only a store with indexed episodes and no remembered version makes it build them
to select. Each actor's first row describes its taggers (``TaggerSpec``s): the driver
aggregates with that, stamps the real version, and selects again when it differs from the
one it selected with. Actors whose versions differ (machines with other model files) stop
the job with a clear error. The stages:

1. **decode** (``map_batches`` of CPU tasks, one episode per call): probe the file, sample it
   and emit its frames in chunks of ``batch_size`` (the local engine's tagging batches),
   then one final row saying ``done`` or the MediaError's reason;
2. **tag** (``map_batches`` on an actor pool, ``ActorPoolStrategy``: one actor per GPU,
   else one per machine that reserves no CPU and tags with the machine's threads, as the
   local engine's tagger shares the cores with its decode workers): each actor builds the
   taggers once and tags one chunk per call; the frames come back downscaled to the
   thumbnail width (all the aggregate needs of them, and the same thumbnail bytes);
3. the driver aggregates each episode's chunks in order (``EpisodeAggregate``) and writes it
   through the store: Elasticsearch for a cluster of several machines; a single-machine
   store (SQLite) is refused there.

Nothing raised inside a task ends the job: a decode or tagging error becomes that episode's
failure with the reason, and an episode whose rows never came back (its task gave up after
Ray's retries; ``max_errored_blocks`` lets the job go on) is marked failed at the end.
Every worker must see the media files and the models at the same paths as the driver. The
decode task and the tagging actor are in ``ray_tasks`` (light to import on each worker).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any

from indexer.catalogue import Catalogue
from indexer.claims import EpisodeClaims
from indexer.fingerprints import FingerprintCache
from indexer.indexing import IndexReport, config_version
from indexer.media import MediaError
from indexer.pipeline.engine import LocalRun, _Job
from indexer.pipeline.models import Models
from indexer.pipeline.ray_tasks import SPEC_JOB, TagActor, decode_episodes
from tvindex.core.store import CatalogueWriter
from tvindex.errors import UserError
from tvindex.settings import AggregationSettings, SamplingSettings

log = logging.getLogger(__name__)


class RayUnavailable(UserError):
    """Ray is not installed, or the cluster cannot be used (with this store, or its machines
    have different models)."""


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'tvindex[ray]'") from None
    return ray


# -- the driver ----------------------------------------------------------------------------

class RayRun(LocalRun):
    """The local run's selection, claims, aggregation and writing, with the decoding and
    tagging on the cluster."""

    def __init__(self, *args: Any, address: str | None, decoders: int | None,
                 decode_threads: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, workers=0, **kwargs)
        self.address = address
        self.decoders = decoders
        self.decode_threads = decode_threads

    def run(self) -> IndexReport:
        _ray()  # a clear error at once when Ray is missing
        return super().run()

    def _selection_version(self, hint: str | None) -> str:
        if hint is None and any(s.status == "indexed" for s in self.states.values()):
            return super()._selection_version(hint)  # the version decides: built here
        return hint if hint is not None else ""  # the actors tell the real one (_spec)

    def _prepare(self, todo: list, hint: str | None) -> list:
        return todo  # built on the cluster; the version is checked when the actors tell it

    def _connect(self) -> None:
        """Join (or start) the cluster: only when some episode needs tagging."""
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1 and self.store.single_machine:
            raise RayUnavailable(
                f"the Ray cluster has {len(nodes)} machines but the {self.store.backend} "
                "catalogue can be written from one machine only: use the elasticsearch "
                "backend (catalogue.backend: elasticsearch) for a cluster, or a one-machine "
                "Ray cluster")
        self._gpus = int(ray.cluster_resources().get("GPU", 0))
        self._nodes = len(nodes)

    def _inline(self, todo) -> None:  # the local engine's decode loop, replaced
        self._connect()
        while todo:
            selected_with = self.version
            self._tag(todo)
            # Selected without a version (nothing was indexed): every episode was selected,
            # so selecting again could find none.
            if not selected_with or self.version == selected_with:
                return
            todo = self._select_again(selected_with)

    def _select_again(self, selected_with: str) -> list:
        """The episodes to tag now that the actors told the real version, which differs from
        the one they were selected with: those this run has not handled yet."""
        log.info("configuration version %s (cached %s): selecting again", self.version,
                 selected_with)
        report = self.report
        handled = {*report.indexed, *report.failed, *report.by_other_run}
        self.states = {s.id: s for s in self.store.episode_states()}
        todo = [(ep, fp) for ep, fp in self._todo() if ep.id not in handled]
        report.skipped = [i for i in report.skipped if i not in handled]
        if todo:
            self.bar.total += len(todo)
            self.bar.refresh()
        return todo

    def _spec(self, payload: bytes) -> None:
        """An actor's taggers described: the first one makes the aggregation and the real
        version; any other must agree."""
        taggers, embedder = pickle.loads(payload)
        real = config_version(taggers, embedder, self.sampling, self.aggregation)
        if self.builder is None:
            self._use(taggers, embedder)
            self.version = real
            self.models.remember(real)
        elif real != self.version:
            raise RayUnavailable(
                f"the cluster's tagging actors built different models (configuration "
                f"versions {self.version} and {real}): every machine must see the same "
                "model files at the same paths")

    def _tag(self, todo) -> None:
        from indexer.pipeline.engine import _Feed

        feed = _Feed(self, todo)
        while not feed.empty:
            jobs: list[_Job] = []
            while True:  # every episode claimable now (the others: next round, waiting)
                job = feed.next(can_block=not jobs)
                if job is None:
                    break
                jobs.append(job)
            if jobs:
                try:
                    self._on_cluster(jobs)
                finally:
                    for job in jobs:
                        job.claim.release()

    def _begin(self, ep, fp, claim):
        # The file is probed once, by the decode task on the cluster: no probe here.
        return self._new_job(ep, fp, claim)

    def _on_cluster(self, jobs: list[_Job]) -> None:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.max_errored_blocks = -1  # a task that gives up loses its episode, not the job
        ctx.enable_progress_bars = bool(self.progress)
        by_id = {j.id: j for j in jobs}
        items = [{"job": j.id, "path": str(j.episode.media_path),
                  "start_s": float(j.episode.start_s or 0.0),
                  "end_s": float("nan") if j.episode.end_s is None else float(j.episode.end_s)}
                 for j in jobs]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # Decoding stays a task pool of its own: one CPU per task, where the tagging actors
        # reserve none, so Ray Data never fuses it into them (an actor would then decode
        # one episode at a time).
        ds = ds.map_batches(decode_episodes, batch_size=1, num_cpus=1,
                            fn_kwargs={"sampler": self.sampler, "chunk": self.batch_size,
                                       "threads": self.decode_threads},
                            compute=ray.data.TaskPoolStrategy(size=self.decoders)
                            if self.decoders else None)
        # Tagging: one actor per GPU; on a CPU-only cluster one per machine, reserving no
        # CPU (as the local engine's tagger, it shares its machine's cores with the decode
        # tasks, which may then use them all) and using as many threads as the machine has.
        actors = self._gpus or self._nodes
        ds = ds.map_batches(TagActor, batch_size=1,
                            fn_constructor_args=(self.models.recipe(), self.batch_size,
                                                 self.aggregation.thumbnail_width,
                                                 not self._gpus),
                            compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
                            num_gpus=1 if self._gpus else 0, num_cpus=0)
        pending: dict[int, dict[int, tuple[str, bytes]]] = {j: {} for j in by_id}
        next_seq = dict.fromkeys(by_id, 0)
        ended: set[int] = set()
        try:
            for row in ds.iter_rows():
                job_id = int(row["job"])
                if job_id == SPEC_JOB:
                    self._spec(row["payload"])
                    continue
                if job_id in ended:  # failed already: the rest of it is dropped
                    continue
                pending[job_id][int(row["seq"])] = (row["kind"], row["payload"])
                while next_seq[job_id] in pending[job_id]:  # in order per episode
                    kind, payload = pending[job_id].pop(next_seq[job_id])
                    next_seq[job_id] += 1
                    if job_id not in ended and self._row(by_id[job_id], kind, payload):
                        ended.add(job_id)
                        pending[job_id].clear()
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the cluster gave up: the episodes left fail
            log.warning("the Ray job ended early: %s", exc)
        for job_id in set(by_id) - ended:
            job = by_id[job_id]
            self._failed(job, MediaError(job.episode.media_path,
                                         "its Ray task failed (see the Ray logs)"))

    def _row(self, job: _Job, kind: str, payload: bytes) -> bool:
        """Handle one row of the episode in order; True when the episode is finished."""
        if kind == "info":
            job.info = pickle.loads(payload)
            return False
        if kind == "tagged":
            tagged = pickle.loads(payload)
            aggregate = self._aggregate(job)
            for t in tagged:
                aggregate.add(t)
            self.report.frames += len(tagged)
            return False
        if kind == "error":
            self._failed(job, MediaError(job.episode.media_path, payload.decode()))
            return True
        self._done(job)
        return True


def index_on_ray(catalogue: Catalogue, store: CatalogueWriter, models: Models,
                 sampling: SamplingSettings, aggregation: AggregationSettings, *,
                 address: str | None = None, decoders: int | None = None,
                 decode_threads: int = 0, batch_size: int = 16, force: bool = False,
                 shard: tuple[int, int] | None = None, progress: bool = True,
                 fingerprints: FingerprintCache | None = None,
                 claims: EpisodeClaims | None = None) -> IndexReport:
    """Index every episode of the catalogue that needs it on a Ray cluster (``address``:
    as ``ray.init``'s; None: ``RAY_ADDRESS`` or a new local cluster; a Ray already
    initialised in this process is used as it is). ``decoders``: at most that many decode
    tasks at once (None: as the cluster's CPUs allow); ``decode_threads``: threads per video
    decoder in those tasks (0: FFmpeg's choice). The rest as the local engine's."""
    t0 = time.perf_counter()
    report = RayRun(catalogue, store, models, sampling, aggregation, batch_size=batch_size,
                    force=force, shard=shard, progress=progress, fingerprints=fingerprints,
                    claims=claims, address=address, decoders=decoders,
                    decode_threads=decode_threads).run()
    report.seconds = time.perf_counter() - t0
    return report
