"""How a ``search.vectors.VectorIndex`` is kept on disk (``save``/``load``), and what the
index and its files share: the index kinds, the error type, FAISS imported on first use.

Files (``save``/``load``): ``manifest.json`` (format, version, kind, dim, count, settings, and
the names of the two data files), ``index-<gen>.faiss`` and ``ids-<gen>.json`` (the labels and
their string ids). Data files are written under a new generation name, flushed, then the
manifest is replaced atomically (temporary file + ``os.replace``); old generations are deleted
afterwards. A crash at any point leaves either the old index or the new one, never a mix.

Checksums: ``save_files`` returns the size and sha256 of each file it wrote (the FAISS file is
hashed while FAISS writes it, through a callback writer, so it is never read back);
``load(..., checksums=)`` refuses a file that is missing, of another size (checked first, from
``stat``) or of another sha256, before FAISS reads a byte of it. A file whose (path, size,
modification time, inode) this process already hashed is not hashed again, unless it was
modified less than ``_RACY_NS`` before it was hashed (a change within the same timestamp tick
would keep its modification time: the "racy git" rule). sha256 runs at about 1.6 GB/s on one
core with SHA extensions (0.6 s per GB, about 0.8 s for a 1M x 1 280 IVF-SQ8 shot index), at
most once per file generation per process.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tvindex.core.files import fsync_dir, write_atomic

FORMAT = "tvindex-vectors"
VERSION = 1
EXACT = "exact"
IVF_SQ8 = "ivf-sq8"
KINDS = (EXACT, IVF_SQ8)
_MANIFEST = "manifest.json"
MANIFEST = _MANIFEST
_BLOCK = 16 << 20  # bytes per callback while FAISS writes or reads a file, and per hash step
# (absolute path, size, mtime_ns, inode) -> (sha256, when hashed) of files this process
# verified; an entry is used only when the file was modified _RACY_NS before it was hashed
_VERIFIED: dict[tuple[str, int, int, int], tuple[str, int]] = {}
_VERIFIED_MAX = 4096
_RACY_NS = 2_000_000_000


class VectorIndexError(ValueError):
    """Bad input (shape, dimension, non-finite or non-unit vectors, duplicate ids) or an index
    directory that cannot be read; the message says what and where."""


def _key(path: Path, st: os.stat_result) -> tuple[str, int, int, int]:
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def _remember(path: Path, st: os.stat_result, sha256: str) -> None:
    """Note that ``path``, as ``st`` describes it, has this sha256."""
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[_key(path, st)] = (sha256, time.time_ns())


def _known(path: Path, st: os.stat_result) -> str | None:
    """The sha256 this process found for ``path`` as ``st`` describes it (None: hash it)."""
    entry = _VERIFIED.get(_key(path, st))
    if entry is None or entry[1] - st.st_mtime_ns < _RACY_NS:
        return None
    return entry[0]


def checksum(data: bytes) -> dict[str, Any]:
    """The record ``load(checksums=)`` compares a file with: its size and sha256."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _expected(path: Path, checksums: Mapping[str, Any]) -> tuple[int, str]:
    want = checksums.get(path.name)
    if not isinstance(want, Mapping) or not isinstance(want.get("size"), int) \
            or not isinstance(want.get("sha256"), str):
        raise VectorIndexError(f"{path}: not the file whose checksum was recorded "
                               f"(recorded: {', '.join(sorted(checksums)) or 'none'})")
    return want["size"], want["sha256"]


def _size_mismatch(path: Path, size: int, want: int) -> VectorIndexError:
    return VectorIndexError(f"{path}: {size} bytes, {want} recorded (truncated or overwritten)")


def _hash_mismatch(path: Path) -> VectorIndexError:
    return VectorIndexError(f"{path}: its content differs from the recorded sha256 "
                            "(overwritten or corrupted)")


def _verify_bytes(path: Path, data: bytes, checksums: Mapping[str, Any] | None) -> None:
    if checksums is None:
        return
    size, sha = _expected(path, checksums)
    if len(data) != size:
        raise _size_mismatch(path, len(data), size)
    if hashlib.sha256(data).hexdigest() != sha:
        raise _hash_mismatch(path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VectorIndexError(f"{path}: missing") from None
    except OSError as exc:
        raise VectorIndexError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _write_index(faiss: Any, index: Any, path: Path) -> dict[str, Any]:
    """``faiss.write_index`` to ``path``, hashing the bytes on their way to the file;
    flushed to the disk. Returns its ``checksum``."""
    h = hashlib.sha256()
    size = 0
    with open(path, "wb") as f:
        def put(data: bytes) -> int:
            nonlocal size
            f.write(data)
            h.update(data)
            size += len(data)
            return len(data)

        writer = faiss.PyCallbackIOWriter(put, _BLOCK)
        try:
            faiss.write_index(index, writer)
        finally:
            del writer  # its destructor writes what it still buffers
        f.flush()
        os.fsync(f.fileno())
    if os.path.getsize(path) != size:
        raise OSError(f"{path}: {os.path.getsize(path)} bytes written of {size}")
    return {"size": size, "sha256": h.hexdigest()}


def _read_index(faiss: Any, path: Path, checksums: Mapping[str, Any] | None) -> Any:
    """``faiss.read_index`` of ``path``; with ``checksums``, its size and then its sha256
    are checked first (from the same open file, so it cannot be swapped in between)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below; a missing file is damage)
    except FileNotFoundError:
        raise VectorIndexError(f"{path}: missing") from None
    with f:
        if checksums is not None:
            size, sha = _expected(path, checksums)
            st = os.fstat(f.fileno())
            if st.st_size != size:
                raise _size_mismatch(path, st.st_size, size)
            if _known(path, st) != sha:
                if hashlib.file_digest(f, "sha256").hexdigest() != sha:
                    raise _hash_mismatch(path)
                _remember(path, st, sha)
                f.seek(0)
        reader = faiss.PyCallbackIOReader(f.read, _BLOCK)
        try:
            return faiss.read_index(reader)
        finally:
            del reader


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
        self.save_files(directory)
        return Path(directory)

    def save_files(self, directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
        """``save``, returning the ``checksum`` of each file written, by file name (what
        ``load(checksums=)`` takes)."""
        faiss = faiss_module()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        gen = uuid.uuid4().hex[:12]
        index_name, ids_name = f"index-{gen}.faiss", f"ids-{gen}.json"
        with self._lock:
            manifest = self.manifest() | {"index_file": index_name, "ids_file": ids_name}
            labels = sorted(self._id_of)
            id_map = {"labels": labels, "ids": [self._id_of[label] for label in labels]}
            ids_data = json.dumps(id_map, ensure_ascii=False).encode()
            write_atomic(d / ids_name, ids_data)
            tmp = d / f".{index_name}.tmp"
            sums = {index_name: _write_index(faiss, self._index, tmp), ids_name: checksum(ids_data)}
            os.replace(tmp, d / index_name)
        manifest_data = json.dumps(manifest, indent=1).encode() + b"\n"
        write_atomic(d / _MANIFEST, manifest_data)
        fsync_dir(d)
        sums[_MANIFEST] = checksum(manifest_data)
        for old in list(d.glob("index-*.faiss")) + list(d.glob("ids-*.json")) + list(
                d.glob(".index-*.tmp")) + list(d.glob(".ids-*.tmp")):
            if old.name not in (index_name, ids_name):
                old.unlink(missing_ok=True)
        return sums

    @classmethod
    def load(cls, directory: str | os.PathLike, *, use_gpu: bool | None = None,
             checksums: Mapping[str, Any] | None = None, **settings: int | None) -> Any:
        """Read an index written by ``save``. Settings come from its manifest unless given
        here (``exact_threshold``, ``nlist``, ``nprobe``, ``train_size``, ``seed``; None keeps
        the saved value); ``nlist`` and ``exact_threshold`` apply from the next build. A
        missing, foreign or inconsistent directory raises VectorIndexError naming the file;
        so does, with ``checksums`` (what ``save_files`` returned), a file that is missing or
        differs from its record in size or sha256."""
        faiss = faiss_module()
        d = Path(directory)
        path = d / _MANIFEST
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise VectorIndexError(f"{path}: no vector index here") from None
        except OSError as exc:
            raise VectorIndexError(f"{path}: unreadable manifest ({exc})") from None
        _verify_bytes(path, raw, checksums)
        try:
            m = json.loads(raw)
        except ValueError as exc:
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
            ids_data = _read_bytes(ids_path)
            _verify_bytes(ids_path, ids_data, checksums)
            index = _read_index(faiss, index_path, checksums)
            id_map = json.loads(ids_data)
            labels, ids = id_map["labels"], id_map["ids"]
        except VectorIndexError:
            raise
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
