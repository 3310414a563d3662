"""What the Ray engine runs on the cluster: the decode task and the tagging actor.

Kept apart from the driver (``ray_engine``) and light to import: every fresh Ray worker
imports this module before its first call, so it needs only numpy and ``indexer.media``
(the driver's catalogue, claims, store and aggregation code stay on the driver). The
tagging actor builds the taggers from a ``Models`` recipe, which imports what they need.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np

from indexer.media import Frame, MediaError, Sampler


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
                yield row("frames", pickle.dumps(frames, protocol=pickle.HIGHEST_PROTOCOL))
        except MediaError as exc:
            yield row("error", exc.reason.encode())
            continue
        except Exception as exc:  # noqa: BLE001 - the episode's failure, never the job's
            yield row("error", f"{type(exc).__name__}: {exc}".encode())
            continue
        yield row("done", b"")


SPEC_JOB = -1  # the job id of an actor's first row: its taggers described (``spec``)


def _row(job: int, seq: int, kind: str, payload: bytes) -> dict[str, list]:
    return {"job": [job], "seq": [seq], "kind": [kind], "payload": [payload]}


class TagActor:
    """Builds the taggers once (``models``: a ``Models`` recipe) and tags one chunk per row;
    other rows pass through. Its first output row (job ``SPEC_JOB``, kind ``spec``) is the
    taggers described (``specs_of``), all the driver needs of them: the driver builds none.
    ``machine_threads``: tag with as many threads as this machine has cores (False: leave
    them as Ray set them, one per CPU the actor reserved)."""

    def __init__(self, models, batch_size: int, thumbnail_width: int,
                 machine_threads: bool = False) -> None:
        import sys

        from indexer.pipeline.models import specs_of
        from indexer.pipeline.workers import usable_cpus

        self.taggers, self.embedder = models.get()
        self.spec: bytes | None = pickle.dumps(specs_of(self.taggers, self.embedder))
        # Ray starts an actor with OMP_NUM_THREADS set to the CPUs it reserved (1 when it
        # reserved none), which torch follows. On a CPU-only node the actor shares the
        # node with the decode tasks, as the local engine's tagger shares the machine with
        # its decode workers: it gets the same threads as the local engine's.
        if machine_threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(usable_cpus())
        self.batch_size = batch_size
        self.width = thumbnail_width

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from indexer.frame_tagging import tag_frames

        out: dict[str, list] = {"job": [], "seq": [], "kind": [], "payload": []}
        if self.spec is not None:  # before anything it tagged reaches the driver
            for k, v in zip(out, (SPEC_JOB, 0, "spec", self.spec)):
                out[k].append(v)
            self.spec = None
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
