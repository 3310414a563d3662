"""The transfer set: frames with every teacher's logits, cached once, streamed for training.

Layout of a transfer-set folder (copy it as is to a GPU machine)::

    index.json          what the set holds: label sets, teachers, parameters, shards, sources
    shard-00000.npz     up to ``shard_size`` frames: JPEG bytes + logits + per-frame metadata
    shard-00001.npz     ...

A shard is a plain ``.npz`` (no pickles): ``ids``, ``sources``, ``groups``, ``splits``,
``kinds`` (strings), ``time_s``, ``view``, ``jpeg`` (all JPEGs concatenated, uint8) with
``offsets`` [n + 1], and ``logits__<label set>`` [n, labels] float32. Readers go shard by
shard, so the set can grow beyond memory.

Splits are by source, never by frame: every frame of a video (or catalogue programme, or
group of near-duplicate photos) lands in the split that a hash of its group id picks, so test
frames come from footage the student never saw. Extraction resumes: frames already stored
(by id) are skipped, so re-running after a crash continues where it stopped.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from indexer.catalogue import VIDEO_EXTENSIONS, load_catalogue
from indexer.frame_tagging import label_sets_of
from indexer.media import MediaError, sample_frames
from indexer.taggers.base import Tagger
from tvindex.core.labels import LabelSet

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
FORMAT = "tvindex-transfer"
VERSION = 1
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
PROVENANCE_FILE = "provenance.csv"


class TransferError(RuntimeError):
    """The transfer set cannot be built or read (bad source, incompatible cache)."""


# --------------------------------------------------------------------------------------------
# Sources and the split


@dataclass(frozen=True)
class Source:
    """Where frames come from. ``id`` is unique; ``group`` decides the split (sources of one
    group, e.g. the episodes of a programme or crops of one photo, share a split)."""

    id: str
    group: str
    kind: str  # "video" | "image"
    path: Path
    start_s: float = 0.0
    end_s: float | None = None


def _variant_stem(path: str) -> str:
    """Photo variants share a group: 'tools/screwDriver3.webp' -> 'tools/screwDriver'."""
    folder, name = os.path.split(path)
    stem = re.sub(r"[\W_]*\d+$", "", os.path.splitext(name)[0]) or os.path.splitext(name)[0]
    return f"{folder}/{stem}"


def _provenance_groups(root: Path) -> dict[str, str]:
    """file name -> group, from ``provenance.csv`` (columns file, package, original_path):
    crops and numbered variants of one original stay together."""
    path = root / PROVENANCE_FILE
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"file", "original_path"} <= set(rows[0]):
        raise TransferError(f"{path}: needs the columns file and original_path")
    return {r["file"]: f"{r.get('package', '')}:{_variant_stem(r['original_path'])}"
            for r in rows}


def sources_in_folder(root: Path) -> list[Source]:
    """Every video and image under ``root`` (recursively), grouped by file, or by original
    photo when a ``provenance.csv`` lies in ``root``."""
    groups = _provenance_groups(root)
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        kind = ("video" if suffix in VIDEO_EXTENSIONS else
                "image" if suffix in IMAGE_EXTENSIONS else None)
        if kind is None:
            continue
        rel = f"{root.name}/{path.relative_to(root).as_posix()}"
        out.append(Source(f"{kind}:{rel}", groups.get(path.name, rel), kind, path))
    return out


def sources_in_catalogue(manifest: Path) -> list[Source]:
    """The episodes of a catalogue manifest (or folder tree of programmes), grouped by
    programme: the thesis's advice (5.3.3) for splitting TV footage."""
    cat = load_catalogue(manifest)
    return [Source(f"episode:{ep.id}", f"programme:{ep.programme_id}", "video",
                   Path(ep.media_path), ep.start_s or 0.0, ep.end_s) for ep in cat.episodes]


def discover_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Sources from manifests (.csv/.jsonl/.json), folders of videos and images, single files.
    A folder whose sub-folders hold only videos is still read as plain folders here (a
    ``ROOT/<programme>/`` tree is a catalogue only when passed with ``--catalogue``)."""
    out: list[Source] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sources_in_folder(p)
        elif p.suffix.lower() in (".csv", ".jsonl", ".json"):
            found = sources_in_catalogue(p)
        elif p.is_file():
            kind = "video" if p.suffix.lower() in VIDEO_EXTENSIONS else "image"
            found = [Source(f"{kind}:{p.name}", p.name, kind, p)]
        else:
            raise TransferError(f"{p}: no such file or folder")
        if not found:
            raise TransferError(f"{p}: no videos or images found")
        out += found
    ids = [s.id for s in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise TransferError(f"source ids repeat: {dupes[:5]} (the same file given twice?)")
    return out


def split_of(group: str, seed: int, val: float, test: float) -> str:
    """Deterministic split of a group: a uniform number from a hash of (seed, group), cut at
    ``test`` and ``test + val``. Stable as the set grows (adding sources moves no others)."""
    digest = hashlib.sha256(f"{seed}|{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if u < test else "val" if u < test + val else "train"


# --------------------------------------------------------------------------------------------
# Frames of a source


@dataclass
class _Item:
    id: str
    source: Source
    split: str
    time_s: float
    view: int
    image: np.ndarray  # what the teachers see: [H, W, 3] uint8 RGB


def _fit_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


def read_image(path: Path) -> np.ndarray:
    """An image file -> [H, W, 3] uint8 RGB; MediaError when unreadable."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(path, "not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def source_frames(source: Source, every_s: float, max_side: int | None
                  ) -> Iterator[tuple[str, float, np.ndarray]]:
    """(frame id, time in seconds, image) for each frame of a source."""
    if source.kind == "image":
        yield source.id, 0.0, _fit_side(read_image(source.path), max_side)
        return
    for f in sample_frames(source.path, "interval", every_s, start_s=source.start_s,
                           end_s=source.end_s, max_side=max_side):
        yield f"{source.id}@{f.time_s:.3f}", f.time_s, f.image


def random_view(image: np.ndarray, rng: np.random.Generator, scale: tuple[float, float]
                ) -> np.ndarray:
    """A random crop (area fraction in ``scale``, the frame's aspect), flipped half the time:
    an extra view that the teachers tag on its own (consistent teaching)."""
    from training.distill.augment import random_resized_crop

    crop = random_resized_crop(image, rng, scale, (0.8, 1.25))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def encode_jpeg(image: np.ndarray, short_side: int, quality: int) -> bytes:
    """RGB -> JPEG bytes, downscaled so the short side is at most ``short_side``."""
    h, w = image.shape[:2]
    if min(h, w) > short_side:
        s = short_side / min(h, w)
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise TransferError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """JPEG bytes -> [H, W, 3] uint8 RGB."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise TransferError("corrupt JPEG in the transfer set")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------------------------
# Writing


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


# --------------------------------------------------------------------------------------------
# Reading


@dataclass
class Row:
    """One cached frame: its JPEG, the teachers' logits {label set: [n]}, and where it came
    from. ``view`` 0 is the whole frame; > 0 an extra crop (train split only)."""

    id: str
    source: str
    group: str
    split: str
    kind: str
    time_s: float
    view: int
    jpeg: bytes
    logits: dict[str, np.ndarray]

    def image(self) -> np.ndarray:
        return decode_jpeg(self.jpeg)


class TransferSet:
    """Read access to a transfer-set folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / INDEX_FILE
        if not path.is_file():
            raise TransferError(f"{self.root}: no transfer set here (no {INDEX_FILE}); make one "
                                "with `tvindex train extract`")
        self.index: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if self.index.get("format") != FORMAT:
            raise TransferError(f"{path}: not a tvindex transfer-set index")
        self.label_sets = tuple(LabelSet(s["name"], s["activation"], tuple(s["labels"]))
                                for s in self.index["label_sets"])

    @property
    def teachers(self) -> dict[str, dict[str, str]]:
        """Per label set, the teacher that made its logits: {name, identity}."""
        return {s["name"]: dict(s["teacher"]) for s in self.index["label_sets"]}

    @property
    def shards(self) -> list[dict[str, Any]]:
        return list(self.index["shards"])

    def counts(self, views: bool = False) -> dict[str, int]:
        """Frames per split (``views``: extra crops included)."""
        out = dict.fromkeys(SPLITS, 0)
        for shard in self.index["shards"]:
            for split, n in shard["frames"].items():
                out[split] = out.get(split, 0) + n
            if views:
                for split, n in shard.get("views", {}).items():
                    out[split] = out.get(split, 0) + n
        return out

    def count(self, split: str, views: bool = False) -> int:
        return self.counts(views).get(split, 0)

    def sources(self, split: str | None = None) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.index["sources"].items()
                if split is None or v.get("split") == split}

    def rows(self, split: str | None = None, *, views: bool = False,
             shard_order: Iterable[int] | None = None) -> Iterator[Row]:
        """Rows of ``split`` (all splits when None), shard by shard; ``views`` includes the
        extra crops. ``shard_order``: which shards, in which order (default: all, in order)."""
        order = range(len(self.index["shards"])) if shard_order is None else shard_order
        names = [ls.name for ls in self.label_sets]
        for i in order:
            shard = self.index["shards"][i]
            if split is not None and not (shard["frames"].get(split) or
                                          (views and shard.get("views", {}).get(split))):
                continue
            with np.load(self.root / shard["file"]) as z:
                splits, view = z["splits"], z["view"]
                keep = np.ones(len(splits), bool) if split is None else splits == split
                if not views:
                    keep &= view == 0
                if not keep.any():
                    continue
                ids, sources, groups = z["ids"], z["sources"], z["groups"]
                kinds, times = z["kinds"], z["time_s"]
                jpeg, offsets = z["jpeg"], z["offsets"]
                logits = {n: z[f"logits__{n}"] for n in names}
            for r in np.flatnonzero(keep):
                yield Row(str(ids[r]), str(sources[r]), str(groups[r]), str(splits[r]),
                          str(kinds[r]), float(times[r]), int(view[r]),
                          jpeg[offsets[r]:offsets[r + 1]].tobytes(),
                          {n: logits[n][r] for n in names})


def describe(ts: TransferSet) -> dict[str, Any]:
    """A summary for humans: frames and sources per split and kind, teachers, parameters."""
    by: dict[str, dict[str, int]] = {}
    for info in ts.sources().values():
        d = by.setdefault(info["split"], {})
        d[f"{info['kind']}_sources"] = d.get(f"{info['kind']}_sources", 0) + 1
    groups: dict[str, set[str]] = {}
    for info in ts.sources().values():
        groups.setdefault(info["split"], set()).add(info["group"])
    return {
        "root": str(ts.root),
        "label_sets": {ls.name: {"activation": ls.activation, "labels": len(ls),
                                 "teacher": ts.teachers[ls.name]["name"]}
                       for ls in ts.label_sets},
        "frames": ts.counts(),
        "frames_with_views": ts.counts(views=True),
        "sources": by,
        "groups": {k: len(v) for k, v in groups.items()},
        "shards": len(ts.shards),
        "bytes": sum((ts.root / s["file"]).stat().st_size for s in ts.shards),
        "params": ts.index["params"],
        "failed": ts.index.get("failed", {}),
    }
