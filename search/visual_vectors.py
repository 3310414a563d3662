"""CLIP image embeddings (the openclip tagger) kept beside the store, and their FAISS index.

They live in a space of their own, shared with CLIP's text tower, and are searched only by
``visual:`` terms (``search/visual_search.py``); the store's embeddings (similar items,
picture search) are untouched by them. So they are kept apart, in ``<vectors>/visual/``:

- ``episodes/<sha256 of the episode id>.npz``: one file per episode, replaced atomically
  when the episode is written (:class:`VisualWriter`, wrapped around the store by the
  composition root): its shots' mean unit embeddings [N, D] float32 with their segment
  indices, the episode's mean [D], and a JSON header (episode id, the *stamp* = the media
  fingerprint and configuration version the episode was tagged with, the model's identity,
  the frames embedded). The file is written before the store commits the episode: after a
  crash in between, its stamp is not the store's and it is ignored until the next run
  rewrites it. Nothing here reads a file whose stamp differs from the store's episode.
- the shot, episode and programme FAISS indexes, ``state.json``, checksums and the sync lock:
  a ``search.vector_catalogue.VectorCatalogue`` over :class:`VisualSource`, which presents
  the files as the store's embeddings (the same ids, order and means, of the visual model),
  so the index is synced after each ``tvindex index`` run, repaired and reloaded by exactly
  the machinery of the main vector folder.

Both backends (SQLite, Elasticsearch) get this for free: only ``episode_states`` is read from
the store. A change of CLIP model (arch, config or weights) changes the tagger's identity and
so the configuration version: the episodes are tagged again, and the index is rebuilt when the
newest episode's model differs from the one it holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.backends.derive import no_embeddings, programme_embeddings
from search.vector_catalogue import VectorCatalogue
from tvindex.core.files import write_atomic
from tvindex.core.records import EpisodeState, EpisodeTags, Level, shot_id
from tvindex.core.store import CatalogueStore, StoreError
from tvindex.core.vectors import unit_rows

VISUAL_DIR = "visual"  # inside the main vector folder
FILE_FORMAT = "tvindex-visual-episode"
FILE_VERSION = 1


def stamp(fingerprint: str | None, config_version: str | None) -> str:
    """What ties an episode's file to the store's episode: its media and configuration."""
    return f"{fingerprint}|{config_version}"


@dataclass(frozen=True)
class VisualRecord:
    """One episode's file, read back."""

    episode_id: str
    stamp: str
    model: str
    frames: int
    index: np.ndarray  # [N] int64 segment indices, ascending
    shots: np.ndarray  # [N, D] float32 means of unit embeddings (not renormalised)
    episode: np.ndarray  # [D] float32


class VisualFiles:
    """The per-episode files of one catalogue (``<visual dir>/episodes``)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory) / "episodes"
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int], VisualRecord]] = {}

    def path(self, episode_id: str) -> Path:
        return self.dir / f"{hashlib.sha256(episode_id.encode()).hexdigest()[:32]}.npz"

    def write(self, tags: EpisodeTags) -> None:
        """Keep ``tags``' visual embeddings (the episode's file is replaced); an episode
        without them loses its file."""
        if tags.visual_embedding is None or not tags.visual_model:
            self.remove(tags.episode_id)
            return
        rows = [(s.index, s.visual) for s in sorted(tags.segments, key=lambda s: s.index)
                if s.visual is not None]
        dim = int(np.asarray(tags.visual_embedding).size)
        header = {"format": FILE_FORMAT, "version": FILE_VERSION, "episode_id": tags.episode_id,
                  "stamp": stamp(tags.fingerprint, tags.config_version),
                  "model": tags.visual_model, "frames": int(tags.visual_frames)}
        buf = io.BytesIO()
        np.savez(buf, header=np.array(json.dumps(header)),
                 index=np.asarray([i for i, _ in rows], np.int64),
                 shots=(np.stack([np.asarray(v, np.float32) for _, v in rows]) if rows
                        else np.zeros((0, dim), np.float32)),
                 episode=np.asarray(tags.visual_embedding, np.float32))
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path(tags.episode_id), buf.getvalue())

    def remove(self, episode_id: str) -> None:
        self.path(episode_id).unlink(missing_ok=True)

    def read(self, episode_id: str) -> VisualRecord | None:
        """The episode's file (None when it has none); StoreError when it is damaged. Kept in
        memory while the file's size and modification time are unchanged."""
        path = self.path(episode_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache.get(episode_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        record = _load(path, episode_id)
        with self._lock:
            self._cache[episode_id] = (key, record)
        return record


def _load(path: Path, episode_id: str) -> VisualRecord:
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            index, shots, episode = z["index"], z["shots"], z["episode"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StoreError(f"{path}: not a visual embeddings file ({exc}); run tvindex index "
                         "--force to rewrite it") from exc
    if (not isinstance(header, dict) or header.get("format") != FILE_FORMAT
            or header.get("episode_id") != episode_id or shots.ndim != 2
            or len(index) != len(shots) or episode.shape != (shots.shape[1],)):
        raise StoreError(f"{path}: not the visual embeddings of episode {episode_id!r}")
    return VisualRecord(episode_id, str(header.get("stamp")), str(header.get("model")),
                        int(header.get("frames") or 0), index.astype(np.int64),
                        shots.astype(np.float32), episode.astype(np.float32))


class VisualSource:
    """The files as ``VectorCatalogue`` reads a store: ``episode_states`` (the store's),
    ``embedding_model`` and ``embeddings`` (of the visual model, by the rules of
    ``CatalogueReader.embeddings``). Only files whose stamp is the store's are read."""

    def __init__(self, store: CatalogueStore, files: VisualFiles) -> None:
        self.store = store
        self.files = files

    def episode_states(self) -> list[EpisodeState]:
        return self.store.episode_states()

    def data_subdir(self) -> str | None:
        return None  # the folder is already the catalogue's own

    def _current(self) -> list[tuple[EpisodeState, VisualRecord]]:
        """Indexed episodes (by id) whose file matches their stamp in the store."""
        out = []
        for st in sorted(self.store.episode_states(), key=lambda s: s.id):
            if st.status != "indexed":
                continue
            record = self.files.read(st.id)
            if record is not None and record.stamp == stamp(st.fingerprint, st.config_version):
                out.append((st, record))
        return out

    def embedding_model(self) -> str | None:
        """The model of the most recently indexed episode that has visual embeddings."""
        return _newest_model(self._current())

    def embeddings(self, level: Level, episode_ids: Sequence[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
        current = self._current()
        model = _newest_model(current)
        current = [(st, r) for st, r in current if r.model == model]
        if episode_ids is not None:
            wanted = set(episode_ids)
            if level == "programme":
                programmes = {st.programme_id for st, _ in current if st.id in wanted}
                current = [(st, r) for st, r in current if st.programme_id in programmes]
            else:
                current = [(st, r) for st, r in current if st.id in wanted]
        if len({r.episode.size for _, r in current}) > 1:
            raise StoreError(f"visual embeddings of model {model!r} have different sizes")
        if level == "programme":
            rows = sorted(((st.programme_id, max(r.frames, 1), r.episode) for st, r in current),
                          key=lambda row: row[0])
            return programme_embeddings(rows)
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for st, r in current:
            if level == "episode":
                ids.append(st.id)
                parts.append(r.episode[None, :])
            elif len(r.index):
                ids += [shot_id(st.id, int(i)) for i in r.index]
                parts.append(r.shots)
        if not ids:
            return no_embeddings()
        return ids, unit_rows(np.concatenate(parts))


def _newest_model(current: list[tuple[EpisodeState, VisualRecord]]) -> str | None:
    if not current:
        return None
    return max(current, key=lambda p: (p[0].indexed_at or "", p[0].id))[1].model


class VisualWriter:
    """The store as the indexer writes it, keeping each written episode's visual embeddings
    in its file first (see the module docstring); everything else goes to the store as is."""

    def __init__(self, store: Any, files: VisualFiles) -> None:
        self._store = store
        self.files = files

    def write_episode(self, tags: EpisodeTags) -> None:
        self.files.write(tags)
        self._store.write_episode(tags)

    def remove_episode(self, episode_id: str) -> None:
        self._store.remove_episode(episode_id)
        self.files.remove(episode_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def visual_catalogue(store: CatalogueStore, vectors: VectorCatalogue) -> VectorCatalogue:
    """The CLIP indexes of ``store``, in ``<vectors.dir>/visual`` with ``vectors``' index
    settings (``vectors``: the store's main vector catalogue)."""
    directory = vectors.dir / VISUAL_DIR
    return VectorCatalogue(VisualSource(store, VisualFiles(directory)),  # type: ignore[arg-type]
                           directory, exact_threshold=vectors.exact_threshold,
                           nprobe=vectors.nprobe, use_gpu=vectors.use_gpu)


def visual_writer(store: CatalogueStore, vectors: VectorCatalogue) -> VisualWriter:
    """What ``tvindex index`` writes through: ``store``, plus the visual files."""
    return VisualWriter(store, VisualFiles(vectors.dir / VISUAL_DIR))
