"""How a ``search.vectors.VectorIndex`` is kept on disk (``save``/``load``), and what the
index and its files share: the index kinds, the error type, FAISS imported on first use.

Files (``save``/``load``): ``manifest.json`` (format, version, kind, dim, count, settings, and
the names of the two data files), ``index-<gen>.faiss`` and ``ids-<gen>.json`` (the labels and
their string ids). Data files are written under a new generation name, flushed, then the
manifest is replaced atomically (temporary file + ``os.replace``); old generations are deleted
afterwards. A crash at any point leaves either the old index or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from tvindex.core.files import fsync, fsync_dir, write_atomic

FORMAT = "tvindex-vectors"
VERSION = 1
EXACT = "exact"
IVF_SQ8 = "ivf-sq8"
KINDS = (EXACT, IVF_SQ8)
_MANIFEST = "manifest.json"


class VectorIndexError(ValueError):
    """Bad input (shape, dimension, non-finite or non-unit vectors, duplicate ids) or an index
    directory that cannot be read; the message says what and where."""


def faiss_module():
    # Imported on first use: importing the package never loads FAISS (or its OpenMP runtime).
    import faiss

    return faiss


class VectorIndexFiles:
    """``save``/``load`` of ``VectorIndex`` (a part of it: the index keeps its state)."""

    _lock: Any
    _index: Any
    _id_of: dict[int, str]
    _label_of: dict[str, int]
    _next_label: int

    def manifest(self) -> dict:
        """What ``save`` writes to manifest.json (less the file names)."""
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "dim": self.dim,
                "count": len(self), "metric": "inner_product",
                "exact_threshold": self.exact_threshold, "nlist": self.nlist,
                "nlist_setting": self.nlist_setting, "nprobe": self.nprobe_setting,
                "train_size": self.train_size,
                "trained_count": self.trained_count, "seed": self.seed,
                "next_label": self._next_label}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index to ``directory`` (created if needed) atomically; returns it."""
        faiss = faiss_module()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        gen = uuid.uuid4().hex[:12]
        index_name, ids_name = f"index-{gen}.faiss", f"ids-{gen}.json"
        with self._lock:
            manifest = self.manifest() | {"index_file": index_name, "ids_file": ids_name}
            labels = sorted(self._id_of)
            id_map = {"labels": labels, "ids": [self._id_of[label] for label in labels]}
            write_atomic(d / ids_name, json.dumps(id_map, ensure_ascii=False).encode())
            tmp = d / f".{index_name}.tmp"
            faiss.write_index(self._index, str(tmp))
            fsync(tmp)
            os.replace(tmp, d / index_name)
        write_atomic(d / _MANIFEST, json.dumps(manifest, indent=1).encode() + b"\n")
        fsync_dir(d)
        for old in list(d.glob("index-*.faiss")) + list(d.glob("ids-*.json")) + list(
                d.glob(".index-*.tmp")) + list(d.glob(".ids-*.tmp")):
            if old.name not in (index_name, ids_name):
                old.unlink(missing_ok=True)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, *, use_gpu: bool | None = None,
             **settings: int | None) -> Any:
        """Read an index written by ``save``. Settings come from its manifest unless given
        here (``exact_threshold``, ``nlist``, ``nprobe``, ``train_size``, ``seed``; None keeps
        the saved value); ``nlist`` and ``exact_threshold`` apply from the next build. A
        missing, foreign or inconsistent directory raises VectorIndexError naming the file."""
        faiss = faiss_module()
        d = Path(directory)
        path = d / _MANIFEST
        try:
            m = json.loads(path.read_text())
        except FileNotFoundError:
            raise VectorIndexError(f"{path}: no vector index here") from None
        except (OSError, ValueError) as exc:
            raise VectorIndexError(f"{path}: unreadable manifest ({exc})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise VectorIndexError(f"{path}: not a {FORMAT} manifest")
        if m.get("version") != VERSION:
            raise VectorIndexError(f"{path}: version {m.get('version')!r}, this code reads "
                                   f"{VERSION}; rebuild the index from the store")
        if m.get("kind") not in KINDS:
            raise VectorIndexError(f"{path}: unknown kind {m.get('kind')!r}")
        unknown = set(settings) - {"exact_threshold", "nlist", "nprobe", "train_size", "seed"}
        if unknown:
            raise TypeError(f"load() got unknown settings {sorted(unknown)}")
        try:
            saved = {"exact_threshold": m["exact_threshold"], "nlist": m["nlist_setting"],
                     "nprobe": m["nprobe"], "train_size": m["train_size"], "seed": m["seed"]}
            saved.update({key: v for key, v in settings.items() if v is not None})
            self = cls(m["dim"], use_gpu=use_gpu, **saved)
            index_path, ids_path = d / m["index_file"], d / m["ids_file"]
        except (KeyError, TypeError) as exc:
            raise VectorIndexError(f"{path}: incomplete manifest ({exc})") from None
        try:
            index = faiss.read_index(str(index_path))
            id_map = json.loads(ids_path.read_text())
            labels, ids = id_map["labels"], id_map["ids"]
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise VectorIndexError(f"{d}: cannot read the index files ({exc})") from None
        count = m["count"]
        if not (index.ntotal == count == len(labels) == len(ids)) or index.d != m["dim"]:
            raise VectorIndexError(f"{d}: inconsistent files (manifest count {count}, index "
                                   f"{index.ntotal} of dim {index.d}, id map {len(ids)})")
        self._reset(m["kind"], index, trained_count=m["trained_count"], nlist=m["nlist"])
        self._id_of = dict(zip(map(int, labels), ids))
        self._label_of = dict(zip(ids, map(int, labels)))
        self._next_label = m["next_label"]
        if len(self._label_of) != count or len(self._id_of) != count:
            raise VectorIndexError(f"{d}: the id map repeats a label or an id")
        return self
