"""Reading a transfer set: :class:`TransferSet` streams its rows (:class:`Row`) shard by shard;
:func:`describe` summarises it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.distill.transfer.frames import decode_jpeg
from training.distill.transfer.layout import FORMAT, INDEX_FILE, SPLITS, TransferError
from tvindex.core.labels import LabelSet


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
