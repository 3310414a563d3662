"""Sources and the split: what frames come from (videos, photo folders, a catalogue), grouped so
near-duplicates stay together, and the split a hash of the group picks."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.catalogue import VIDEO_EXTENSIONS, load_catalogue
from training.distill.transfer.layout import IMAGE_EXTENSIONS, PROVENANCE_FILE, TransferError


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
