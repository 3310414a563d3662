"""The Ray engine: the same run as the local engine over a Ray cluster, with Ray Data.

The driver (this process) does what needs the store and the data dir: the catalogue, the
episode states, fingerprints and claims (as the local engine: resumable, runs share the
work), then builds a dataset with one row per episode to tag:

1. **decode** (``map_batches`` of CPU tasks, one episode per call): probe the file, sample it
   and emit its frames in chunks of ``batch_size`` (the local engine's tagging batches),
   then one final row saying ``done`` or the MediaError's reason;
2. **tag** (``map_batches`` on an actor pool, ``ActorPoolStrategy``, ``num_gpus=1`` per actor
   when the cluster has GPUs): each actor builds the taggers once and tags one chunk per
   call; the frames come back downscaled to the thumbnail width (all the aggregate needs of
   them, and the same thumbnail bytes);
3. the driver aggregates each episode's chunks in order (``EpisodeAggregate``) and writes it
   through the store: Elasticsearch for a cluster of several machines; a single-machine
   store (SQLite) is refused there.

Nothing raised inside a task ends the job: a decode or tagging error becomes that episode's
failure with the reason, and an episode whose rows never came back (its task gave up after
Ray's retries; ``max_errored_blocks`` lets the job go on) is marked failed at the end.
Every worker must see the media files and the models at the same paths as the driver.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from indexer.catalogue import Catalogue
from indexer.claims import EpisodeClaims
from indexer.fingerprints import FingerprintCache
from indexer.indexing import IndexReport
from indexer.media import Frame, MediaError, Sampler
from indexer.pipeline.engine import LocalRun, _Job
from indexer.pipeline.models import Models
from tvindex.core.store import CatalogueWriter
from tvindex.errors import UserError
from tvindex.settings import AggregationSettings, SamplingSettings

log = logging.getLogger(__name__)


class RayUnavailable(UserError):
    """Ray is not installed, or the cluster cannot be used with this store."""


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'tvindex[ray]'") from None
    return ray


# -- the tasks (run on the cluster) --------------------------------------------------------

def decode_episodes(batch: dict[str, np.ndarray], sampler: Sampler, chunk: int,
                    threads: int = 0) -> Iterator[dict[str, list]]:
    """One episode row in, its chunks out (``kind`` frames), then a ``done``/``error`` row;
    ``threads``: per video decoder (0: FFmpeg's choice)."""
    from indexer.media import probe, set_decode_threads
    from indexer.pipeline.decode import decode_task

    set_decode_threads(threads)

    for job, path, start_s, end_s in zip(batch["job"], batch["path"], batch["start_s"],
                                         batch["end_s"]):
        job = int(job)
        end = None if np.isnan(end_s) else float(end_s)
        seq = -1

        def row(kind: str, payload: bytes, job: int = job) -> dict[str, list]:
            nonlocal seq
            seq += 1
            return _row(job, seq, kind, payload)

        try:
            info = probe(path)
            yield row("info", pickle.dumps(info))
            for frames in decode_task(path, info, float(start_s), end, sampler, chunk):
                yield row("frames", pickle.dumps(frames))
        except MediaError as exc:
            yield row("error", exc.reason.encode())
            continue
        except Exception as exc:  # noqa: BLE001 - the episode's failure, never the job's
            yield row("error", f"{type(exc).__name__}: {exc}".encode())
            continue
        yield row("done", b"")


def _row(job: int, seq: int, kind: str, payload: bytes) -> dict[str, list]:
    return {"job": [job], "seq": [seq], "kind": [kind], "payload": [payload]}


class TagActor:
    """Builds the taggers once (``build``: a ``Models`` recipe) and tags one chunk per row;
    other rows pass through."""

    def __init__(self, models: Models, batch_size: int, thumbnail_width: int) -> None:
        self.taggers, self.embedder = models.get()
        self.batch_size = batch_size
        self.width = thumbnail_width

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from indexer.frame_tagging import tag_frames

        out: dict[str, list] = {"job": [], "seq": [], "kind": [], "payload": []}
        for job, seq, kind, payload in zip(batch["job"], batch["seq"], batch["kind"],
                                           batch["payload"]):
            if kind == "frames":
                frames: list[Frame] = pickle.loads(payload)
                try:
                    tagged = list(tag_frames(frames, self.taggers, self.batch_size,
                                             embedder=self.embedder))
                    for t in tagged:
                        t.frame.image = _thumbnail_size(t.frame.image, self.width)
                    kind, payload = "tagged", pickle.dumps(tagged)
                except Exception as exc:  # noqa: BLE001 - the episode's failure
                    kind = "error"
                    payload = f"tagging failed: {type(exc).__name__}: {exc}".encode()
            for k, v in (("job", int(job)), ("seq", int(seq)), ("kind", str(kind)),
                         ("payload", payload)):
                out[k].append(v)
        return out


def _thumbnail_size(image: np.ndarray, width: int) -> np.ndarray:
    """What :func:`indexer.indexing.thumbnail_jpeg` resizes to, done here (the JPEG made
    from it is the same; the driver receives a small picture)."""
    import cv2

    h, w = image.shape[:2]
    if w > width:
        return cv2.resize(image, (width, max(1, round(h * width / w))),
                          interpolation=cv2.INTER_AREA)
    return image


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
        from indexer.pipeline.engine import _Feed

        self._connect()
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
        # Decoding stays a task pool of its own (a ray_remote_args_fn keeps Ray Data from
        # fusing it into the tagging actors, where it would run one episode at a time).
        ds = ds.map_batches(decode_episodes, batch_size=1,
                            ray_remote_args_fn=lambda: {"num_cpus": 1},
                            fn_kwargs={"sampler": self.sampler, "chunk": self.batch_size,
                                       "threads": self.decode_threads},
                            compute=ray.data.TaskPoolStrategy(size=self.decoders)
                            if self.decoders else None)
        actors = self._gpus or self._nodes
        ds = ds.map_batches(TagActor, batch_size=1,
                            fn_constructor_args=(self.models.recipe(), self.batch_size,
                                                 self.aggregation.thumbnail_width),
                            compute=ray.data.ActorPoolStrategy(size=max(1, actors)),
                            num_gpus=1 if self._gpus else 0, num_cpus=0 if self._gpus else 1)
        pending: dict[int, dict[int, tuple[str, bytes]]] = {j: {} for j in by_id}
        next_seq = dict.fromkeys(by_id, 0)
        ended: set[int] = set()
        try:
            for row in ds.iter_rows():
                job_id = int(row["job"])
                if job_id in ended:  # failed already: the rest of it is dropped
                    continue
                pending[job_id][int(row["seq"])] = (row["kind"], row["payload"])
                while next_seq[job_id] in pending[job_id]:  # in order per episode
                    kind, payload = pending[job_id].pop(next_seq[job_id])
                    next_seq[job_id] += 1
                    if job_id not in ended and self._row(by_id[job_id], kind, payload):
                        ended.add(job_id)
                        pending[job_id].clear()
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
