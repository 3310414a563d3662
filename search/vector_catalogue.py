"""The FAISS indexes of a catalogue's embeddings, kept beside the store and in step with it.

One ``search.vectors.VectorIndex`` per level (shot, episode, programme), keyed like the store
(shot ids "EPISODE@INDEX", episode ids, programme ids), in ``<vectors.dir>/<level>/``, plus
``state.json``: the embedding model, and for every episode the version of its vectors in the
store (its ``indexed_at``, fingerprint and configuration version) and how many shots it has.

``sync`` brings the indexes up to date with the store: episodes that were re-indexed since the
last sync have their shot and episode vectors replaced, episodes that were removed, failed or
lost their embeddings have theirs removed, and the programme index is rebuilt whenever any
episode changed (a programme's embedding is the mean over its episodes; there are few
programmes). A change of embedding model, or of the index settings' kind, rebuilds everything.
``rebuild`` always starts from scratch; both give the same contents (tested).

Crash safety: each level's index is saved atomically (``VectorIndex.save``) and ``state.json``
is replaced last, so after a crash the state is older than (or equal to) the indexes; the next
sync redoes the episodes it does not know to be current, and re-adding an id replaces it.
Concurrent syncs (the indexer and a web server) are serialised with an exclusive lock file.

Readers (``index``) reload a level's index when another process has synced since they loaded
it (``state.json`` was replaced), so a running server never answers from stale ids.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search.vectors import VectorIndex, VectorIndexError
from tvindex.core.files import write_atomic
from tvindex.core.records import LEVELS, Level, parse_shot_id, shot_id
from tvindex.core.store import CatalogueStore

log = logging.getLogger(__name__)
STATE_FILE = "state.json"
STATE_FORMAT = "tvindex-vector-catalogue"
STATE_VERSION = 1


@dataclass
class SyncReport:
    rebuilt: bool = False
    model: str | None = None
    added_episodes: list[str] = field(default_factory=list)
    removed_episodes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"rebuilt": self.rebuilt, "model": self.model,
                "updated_episodes": len(self.added_episodes),
                "removed_episodes": len(self.removed_episodes),
                "counts": self.counts, "seconds": round(self.seconds, 3)}


def episode_versions(store: CatalogueStore) -> dict[str, str]:
    """Every indexed episode's current version: it changes whenever its vectors may have."""
    return {s.id: f"{s.indexed_at}|{s.fingerprint}|{s.config_version}"
            for s in store.episode_states() if s.status == "indexed"}


def shots_per_episode(shot_ids: list[str]) -> Counter[str]:
    """How many of ``shot_ids`` ("EPISODE@INDEX") each episode has."""
    return Counter(parse_shot_id(sid)[0] for sid in shot_ids)


class VectorCatalogue:
    """The shot, episode and programme vector indexes of one store. Thread-safe."""

    def __init__(self, store: CatalogueStore, directory: str | os.PathLike, *,
                 exact_threshold: int = 50_000, nprobe: int | None = None,
                 use_gpu: bool | None = None, check_interval_s: float = 1.0) -> None:
        self.store = store
        self.dir = Path(directory)
        self.exact_threshold = exact_threshold
        self.nprobe = nprobe
        self.use_gpu = use_gpu
        self.check_interval_s = check_interval_s
        self._lock = threading.RLock()
        self._loaded: dict[str, VectorIndex] = {}
        self._loaded_token: str | None = None
        self._last_check = 0.0

    @classmethod
    def from_settings(cls, store: CatalogueStore, settings: Any) -> VectorCatalogue:
        v = settings.vectors
        directory = v.dir or Path(settings.paths.data_dir) / "vectors"
        subdir = store.data_subdir()
        if subdir:
            # Several catalogues (e.g. index prefixes of a cluster) may share a data dir.
            directory = Path(directory) / subdir
        return cls(store, directory, exact_threshold=v.exact_threshold, nprobe=v.nprobe,
                   use_gpu=None if v.use_gpu else False)

    # --- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The saved state ({} when nothing was ever synced, or it is unreadable/foreign)."""
        try:
            s = json.loads((self.dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(s, dict) or s.get("format") != STATE_FORMAT \
                or s.get("version") != STATE_VERSION:
            return {}
        return s

    def _save_state(self, model: str | None, dim: int, episodes: dict[str, list]) -> str | None:
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "sync_id": uuid.uuid4().hex,
                 "model": model, "dim": dim, "exact_threshold": self.exact_threshold,
                 "synced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "episodes": episodes}
        write_atomic(self.dir / STATE_FILE, json.dumps(state).encode())
        return self._state_token()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def is_current(self) -> bool:
        """True when the indexes hold exactly the store's current embeddings."""
        state = self.state()
        if not state:
            return self.store.embedding_model() is None
        if state.get("model") != self.store.embedding_model():
            return False
        saved = {ep: v[0] for ep, v in state.get("episodes", {}).items()}
        return saved == self._embedded_versions(state.get("model"))

    def _embedded_versions(self, model: str | None) -> dict[str, str]:
        # Indexed episodes count whether or not they have embeddings: a version we recorded
        # with zero shots still tells that the episode was seen at that version.
        return episode_versions(self.store) if model is not None else {}

    # --- building ------------------------------------------------------------------------
    def _new_index(self, dim: int) -> VectorIndex:
        return VectorIndex(dim, exact_threshold=self.exact_threshold, nprobe=self.nprobe,
                           use_gpu=self.use_gpu)

    def _load_level(self, level: Level, dim: int) -> VectorIndex:
        try:
            index = VectorIndex.load(self.dir / level, use_gpu=self.use_gpu,
                                     exact_threshold=self.exact_threshold, nprobe=self.nprobe)
        except VectorIndexError:
            return self._new_index(dim)
        return index if index.dim == dim else self._new_index(dim)

    def rebuild(self) -> SyncReport:
        """Remake every level's index from the store's embeddings."""
        with self._exclusive():
            return self._rebuild()

    def _rebuild(self) -> SyncReport:
        started = time.perf_counter()
        model = self.store.embedding_model()
        versions = self._embedded_versions(model)
        report = SyncReport(rebuilt=True, model=model)
        indexes: dict[str, VectorIndex] = {}
        shots: Counter[str] = Counter()
        dim = 0
        for level in LEVELS:
            ids, x = self.store.embeddings(level) if model is not None else ([], None)
            dim = dim or (x.shape[1] if x is not None and x.size else 0)
            index = self._new_index(max(dim, 1))
            index.rebuild(zip(ids, x) if ids else [])
            indexes[level] = index
            if level == "shot":
                shots = shots_per_episode(ids)
        episodes = {ep: [v, shots[ep]] for ep, v in versions.items()}
        report.added_episodes = sorted(versions)
        return self._commit(indexes, model, dim, episodes, report, started)

    def _commit(self, indexes: dict[str, VectorIndex], model: str | None, dim: int,
                episodes: dict[str, list], report: SyncReport, started: float) -> SyncReport:
        """Save every level's index, then the state (last: see the module docstring)."""
        for level, index in indexes.items():
            index.save(self.dir / level)
            report.counts[level] = len(index)
        self._loaded_token = self._save_state(model, dim, episodes)
        self._loaded = indexes
        report.seconds = time.perf_counter() - started
        return report

    def sync(self) -> SyncReport:
        """Bring the indexes up to date with the store (incrementally when possible)."""
        with self._exclusive():
            started = time.perf_counter()
            state = self.state()
            model = self.store.embedding_model()
            if not state or state.get("model") != model \
                    or state.get("exact_threshold") != self.exact_threshold:
                return self._rebuild()
            dim = int(state.get("dim") or 0)
            saved: dict[str, list] = state.get("episodes", {})
            current = self._embedded_versions(model)
            changed = sorted(ep for ep, v in current.items()
                             if ep not in saved or saved[ep][0] != v)
            gone = sorted(ep for ep in saved if ep not in current)
            report = SyncReport(model=model, added_episodes=changed, removed_episodes=gone)
            if not changed and not gone:
                report.counts = {level: len(self.index(level)) for level in LEVELS}
                report.seconds = time.perf_counter() - started
                return report
            shot_ids, shot_x = self.store.embeddings("shot", changed) if changed else ([], None)
            ep_ids, ep_x = self.store.embeddings("episode", changed) if changed else ([], None)
            for x in (shot_x, ep_x):
                if x is not None and x.size and dim and x.shape[1] != dim:
                    return self._rebuild()  # same model name, other size: start over
            if not dim:
                return self._rebuild()  # nothing was embedded at the last sync
            shots = self._load_level("shot", dim)
            episodes_index = self._load_level("episode", dim)
            stale_shots = [shot_id(ep, i) for ep in changed + gone
                           for i in range(saved.get(ep, [None, 0])[1])]
            shots.remove(stale_shots)
            episodes_index.remove(changed + gone)
            if shot_ids:
                shots.add(shot_ids, shot_x)
            if ep_ids:
                episodes_index.add(ep_ids, ep_x)
            if shots.needs_rebuild or episodes_index.needs_rebuild:
                return self._rebuild()
            prog_ids, prog_x = self.store.embeddings("programme")
            programmes = self._new_index(dim)
            programmes.rebuild(zip(prog_ids, prog_x) if prog_ids else [])
            new_saved = {ep: v for ep, v in saved.items() if ep not in gone}
            count = shots_per_episode(shot_ids)
            for ep in changed:
                new_saved[ep] = [current[ep], count[ep]]
            return self._commit({"shot": shots, "episode": episodes_index,
                                 "programme": programmes}, model, dim, new_saved, report,
                                started)

    # --- reading -------------------------------------------------------------------------
    def ensure_current(self) -> None:
        """Sync when the store changed since the indexes were last synced (checked at most
        every ``check_interval_s``): readers never see ids the store no longer has, and never
        miss ones it has."""
        now = time.monotonic()
        if now - self._last_check < self.check_interval_s:
            return
        self._last_check = now
        if not self.is_current():
            self.sync()

    def _state_token(self) -> str | None:
        # state.json is only ever replaced (a new inode), so its inode and mtime tell a
        # reader cheaply that another process synced, without reading the whole file.
        try:
            st = os.stat(self.dir / STATE_FILE)
        except OSError:
            return None
        return f"{st.st_ino}:{st.st_mtime_ns}"

    def index(self, level: Level) -> VectorIndex:
        """The level's index as last synced (by this or another process)."""
        with self._lock:
            token = self._state_token()
            if token != self._loaded_token:
                self._loaded = {}
                self._loaded_token = token
            if level not in self._loaded:
                dim = int(self.state().get("dim") or 1)
                self._loaded[level] = self._load_level(level, max(dim, 1))
            return self._loaded[level]

    def search(self, level: Level, queries: np.ndarray, k: int,
               exclude: set[str] | None = None, nprobe: int | None = None
               ) -> list[list[tuple[str, float]]]:
        index = self.index(level)
        if not len(index):
            return [[] for _ in range(len(np.atleast_2d(queries)))]
        return index.search(np.atleast_2d(queries).astype(np.float32), k, exclude,
                            nprobe=nprobe)

    def status(self) -> dict[str, Any]:
        state = self.state()
        return {"dir": str(self.dir), "model": state.get("model"), "dim": state.get("dim"),
                "synced_at": state.get("synced_at"),
                "episodes": len(state.get("episodes", {})),
                "current": self.is_current(),
                "levels": {level: {"count": len(self.index(level)),
                                   "kind": self.index(level).kind} for level in LEVELS}}
