"""Writing a transfer set: :func:`extract` runs the teachers over the sources' frames and writes
shards and the index, resuming where an earlier run stopped."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.frame_tagging import label_sets_of
from indexer.media import MediaError
from indexer.taggers.base import Tagger
from training.distill.transfer.frames import encode_jpeg, random_view, source_frames
from training.distill.transfer.layout import FORMAT, INDEX_FILE, VERSION, TransferError
from training.distill.transfer.reading import TransferSet
from training.distill.transfer.sources import Source, split_of
from tvindex.core.labels import LabelSet

# The package's logger, as before the split.
log = logging.getLogger("training.distill.transfer")


@dataclass
class _Item:
    id: str
    source: Source
    split: str
    time_s: float
    view: int
    image: np.ndarray  # what the teachers see: [H, W, 3] uint8 RGB


@dataclass
class ExtractParams:
    """What decides the content of a transfer set; a resumed run must use the same."""

    every_s: float = 1.0
    max_side: int | None = 720
    store_side: int = 256
    jpeg_quality: int = 90
    shard_size: int = 256
    seed: int = 0
    val: float = 0.15
    test: float = 0.2
    # Frames of the train split get views - 1 extra random crops, each tagged by the teachers.
    views: int = 1
    view_scale: tuple[float, float] = (0.35, 0.9)

    def check(self) -> None:
        if not (0 <= self.val and 0 <= self.test and self.val + self.test < 1):
            raise TransferError("split fractions: need val >= 0, test >= 0, val + test < 1")
        if self.every_s <= 0 or self.shard_size < 1 or self.views < 1:
            raise TransferError("need every_s > 0, shard_size >= 1, views >= 1")
        if not 1 <= self.jpeg_quality <= 100 or self.store_side < 16:
            raise TransferError("need 1 <= jpeg_quality <= 100 and store_side >= 16")

    def content_key(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("every_s", "max_side", "store_side", "jpeg_quality",
                                            "seed", "val", "test", "views")}
        d["view_scale"] = list(self.view_scale)
        return d


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _write_shard(path: Path, rows: list[tuple[_Item, bytes, dict[str, np.ndarray]]],
                 label_sets: Sequence[LabelSet]) -> None:
    blobs = [b for _, b, _ in rows]
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays: dict[str, np.ndarray] = {
        "ids": np.array([it.id for it, _, _ in rows]),
        "sources": np.array([it.source.id for it, _, _ in rows]),
        "groups": np.array([it.source.group for it, _, _ in rows]),
        "splits": np.array([it.split for it, _, _ in rows]),
        "kinds": np.array([it.source.kind for it, _, _ in rows]),
        "time_s": np.array([it.time_s for it, _, _ in rows], np.float64),
        "view": np.array([it.view for it, _, _ in rows], np.int16),
        "jpeg": np.frombuffer(b"".join(blobs), np.uint8),
        "offsets": offsets,
    }
    for ls in label_sets:
        arrays[f"logits__{ls.name}"] = np.stack([lg[ls.name] for _, _, lg in rows]).astype(
            np.float32)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


def _new_index(label_sets: Sequence[LabelSet], teachers: Sequence[Tagger],
               params: ExtractParams) -> dict[str, Any]:
    owner = {ls.name: t for t in teachers for ls in t.label_sets}
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "label_sets": [{"name": ls.name, "activation": ls.activation, "labels": list(ls.labels),
                        "fingerprint": ls.fingerprint(),
                        "teacher": {"name": owner[ls.name].name,
                                    "identity": owner[ls.name].identity()}}
                       for ls in label_sets],
        "params": params.content_key(),
        "split": {"by": "hash of the source group", "seed": params.seed, "val": params.val,
                  "test": params.test},
        "shards": [],
        "sources": {},
        "failed": {},
    }


def _incompatible(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    if old.get("params") != new["params"]:
        problems.append(f"parameters {old.get('params')} != {new['params']}")
    old_sets = [(s["name"], s["fingerprint"], s["teacher"]["identity"])
                for s in old.get("label_sets", [])]
    new_sets = [(s["name"], s["fingerprint"], s["teacher"]["identity"])
                for s in new["label_sets"]]
    if old_sets != new_sets:
        problems.append("teachers or label sets differ")
    return problems


@dataclass
class ExtractReport:
    sources: int = 0
    new_frames: int = 0
    skipped_frames: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    frames: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        fps = self.new_frames / self.seconds if self.seconds else None
        return {"sources": self.sources, "new_frames": self.new_frames,
                "skipped_frames": self.skipped_frames, "failed": self.failed,
                "seconds": round(self.seconds, 1),
                "frames_per_s": None if fps is None else round(fps, 2),
                "frames_by_split": self.frames}


def extract(sources: Sequence[Source], teachers: Sequence[Tagger], out: str | Path,
            params: ExtractParams | None = None, *, batch_size: int = 16, force: bool = False,
            progress: bool = True) -> ExtractReport:
    """Run the teachers once over every frame of ``sources`` and cache frames + logits.

    Resumes: a compatible set in ``out`` keeps its frames and only new ones are tagged; an
    incompatible one (other teachers or parameters) is an error unless ``force`` (which
    deletes it). A source that cannot be read is recorded in ``failed`` and the rest goes on.
    """
    from tqdm import tqdm

    params = params or ExtractParams()
    params.check()
    if not teachers:
        raise TransferError("no teachers to extract logits from")
    out = Path(out)
    label_sets = label_sets_of(teachers)
    index = _new_index(label_sets, teachers, params)
    index_path = out / INDEX_FILE
    if index_path.exists():
        if force:
            shutil.rmtree(out)
        else:
            old = json.loads(index_path.read_text(encoding="utf-8"))
            problems = _incompatible(old, index)
            if problems:
                raise TransferError(f"{out} holds a different transfer set ({'; '.join(problems)})"
                                    "; use another folder or --force to replace it")
            index = old
    out.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    for shard in index["shards"]:
        with np.load(out / shard["file"]) as z:
            done.update(z["ids"].tolist())

    report = ExtractReport(sources=len(sources))
    pending_rows: list[tuple[_Item, bytes, dict[str, np.ndarray]]] = []
    batch: list[_Item] = []
    queued = 0  # frames handed to the teachers so far (this run)
    written = 0  # of those, frames in shards on disk
    ended: list[tuple[str, int, int]] = []  # (source id, queue position at its end, frames)
    t0 = time.perf_counter()

    def flush_shard(limit: int | None = None) -> None:
        """Write the first ``limit`` pending rows (all when None) as the next shard."""
        nonlocal written
        rows = pending_rows[:limit] if limit else list(pending_rows)
        if not rows:
            return
        name = f"shard-{len(index['shards']):05d}.npz"
        _write_shard(out / name, rows, label_sets)
        counts: dict[str, int] = {}
        views: dict[str, int] = {}
        for it, _, _ in rows:
            target = views if it.view else counts
            target[it.split] = target.get(it.split, 0) + 1
        index["shards"].append({"file": name, "count": len(rows), "frames": counts,
                                "views": views})
        written += len(rows)
        del pending_rows[:len(rows)]
        for sid, _, _ in [e for e in ended if e[1] <= written]:
            index["sources"][sid]["complete"] = True
        ended[:] = [e for e in ended if e[1] > written]
        _write_json(index_path, index)

    def run_batch() -> None:
        if not batch:
            return
        images = [it.image for it in batch]
        logits: list[dict[str, np.ndarray]] = [{} for _ in batch]
        for teacher in teachers:
            for name, values in teacher.predict(images).items():
                for row, v in zip(logits, values):
                    row[name] = v
        for it, lg in zip(batch, logits):
            pending_rows.append((it, encode_jpeg(it.image, params.store_side,
                                                 params.jpeg_quality), lg))
        batch.clear()
        while len(pending_rows) >= params.shard_size:
            flush_shard(params.shard_size)

    bar = tqdm(sources, unit="source", file=sys.stderr, disable=not progress or None)
    for source in bar:
        split = split_of(source.group, params.seed, params.val, params.test)
        entry = index["sources"].setdefault(source.id, {})
        entry.update({"group": source.group, "split": split, "kind": source.kind})
        if entry.get("complete"):
            report.skipped_frames += entry.get("frames", 0)
            continue
        n = 0
        try:
            for frame_id, time_s, image in source_frames(source, params.every_s, params.max_side):
                n += 1
                views = params.views if split == "train" else 1
                rng = np.random.default_rng(
                    int.from_bytes(hashlib.sha256(frame_id.encode()).digest()[:8], "big"))
                for v in range(views):
                    item_id = frame_id if v == 0 else f"{frame_id}#v{v}"
                    if item_id in done:
                        report.skipped_frames += 1
                        continue
                    view_image = image if v == 0 else random_view(image, rng, params.view_scale)
                    batch.append(_Item(item_id, source, split, time_s, v, view_image))
                    queued += 1
                    report.new_frames += 1
                    if len(batch) >= batch_size:
                        run_batch()
        except MediaError as exc:
            report.failed[source.id] = exc.reason
            index["failed"][source.id] = exc.reason
            log.warning("%s", exc)
            continue
        index["failed"].pop(source.id, None)
        entry["frames"] = n * (params.views if split == "train" else 1)
        ended.append((source.id, queued, n))
        elapsed = time.perf_counter() - t0
        bar.set_postfix_str(f"{report.new_frames} frames, {report.new_frames / elapsed:.1f}/s")
    run_batch()
    while pending_rows:
        flush_shard(params.shard_size)
    for sid, _, _ in ended:  # everything queued is on disk now
        index["sources"][sid]["complete"] = True
    _write_json(index_path, index)
    report.seconds = time.perf_counter() - t0
    report.frames = TransferSet(out).counts()
    return report
