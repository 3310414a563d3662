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

Integrity: ``state.json`` records, per level, the size and sha256 of each file of the level
(``files``; hashed while written). Loading a level checks them (``VectorIndex.load(...,
checksums=)``): a missing file, another size, another sha256, a FAISS read error or a
dimension other than the state's makes the level **damaged**; so does a ``state.json`` that is
not valid JSON or has fields of the wrong type (every level). A damaged level is never
answered from as if empty: readers raise ``VectorsDamaged`` (the command line prints it, the
web server answers 503) and do not repair, while ``sync`` (``tvindex vectors sync``, and
``tvindex index`` after every run) rebuilds the damaged levels from the store, and the others
incrementally. A ``state.json`` written before checksums existed loads as **unverified**; the
next ``sync`` rewrites the levels and records their checksums.
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

from search.vector_files import MANIFEST
from search.vectors import VectorIndex, VectorIndexError
from tvindex.core.files import write_atomic
from tvindex.core.records import LEVELS, Level, parse_shot_id, shot_id
from tvindex.core.store import CatalogueStore, StoreError

log = logging.getLogger(__name__)
STATE_FILE = "state.json"
STATE_FORMAT = "tvindex-vector-catalogue"
STATE_VERSION = 1


class VectorsDamaged(StoreError):
    """A level's index cannot be trusted (see the module docstring); ``reason`` says what is
    wrong with which file. Readers raise it; ``sync`` repairs."""

    def __init__(self, level: str, reason: str) -> None:
        self.level = level
        self.reason = reason
        super().__init__(f"the {level} vector index is damaged ({reason}); "
                         "run tvindex vectors rebuild")

    def public_message(self) -> str:
        """The message without file paths (for web clients)."""
        return f"the {self.level} vector index is damaged; run tvindex vectors rebuild"


@dataclass
class SyncReport:
    rebuilt: bool = False
    model: str | None = None
    added_episodes: list[str] = field(default_factory=list)
    removed_episodes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    repaired: dict[str, str] = field(default_factory=dict)  # damaged level -> why

    def to_dict(self) -> dict[str, Any]:
        return {"rebuilt": self.rebuilt, "model": self.model,
                "updated_episodes": len(self.added_episodes),
                "removed_episodes": len(self.removed_episodes),
                "counts": self.counts, "seconds": round(self.seconds, 3),
                "repaired": dict(self.repaired)}


def _is_int(value: Any, minimum: int = 0) -> bool:
    return type(value) is int and value >= minimum


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict) or not _is_int(record.get("size")) \
            or not isinstance(record.get("sha256"), str) or len(record["sha256"]) != 64:
        return "is not {size, sha256}"
    return None


def state_problem(s: Any) -> str | None:
    """What is wrong with a parsed ``state.json`` (None when it is well-formed)."""
    if not isinstance(s, dict):
        return "not a JSON object"
    if s.get("format") != STATE_FORMAT:
        return f"format {s.get('format')!r}, expected {STATE_FORMAT!r}"
    if s.get("version") != STATE_VERSION:
        return f"version {s.get('version')!r}, this code reads {STATE_VERSION}"
    if s.get("model") is not None and not isinstance(s.get("model"), str):
        return "'model' is not a string"
    if not _is_int(s.get("dim")):
        return "'dim' is not a non-negative integer"
    if not _is_int(s.get("exact_threshold"), 1):
        return "'exact_threshold' is not a positive integer"
    episodes = s.get("episodes")
    if not isinstance(episodes, dict):
        return "'episodes' is not an object"
    for ep, v in episodes.items():
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)
                and _is_int(v[1])):
            return f"'episodes' entry {ep!r} is not [version, shot count]"
    files = s.get("files", {})
    if not isinstance(files, dict) or set(files) - set(LEVELS):
        return "'files' is not an object of levels"
    for level, records in files.items():
        if not isinstance(records, dict) or MANIFEST not in records:
            return f"'files' of {level} does not record {MANIFEST}"
        for name, record in records.items():
            why = _record_problem(record)
            if why:
                return f"'files' of {level}: {name!r} {why}"
    return None


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
        self._damaged: dict[str, str] = {}  # level -> why, for the state of _loaded_token
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
        """The saved state ({} when nothing was ever synced, or it is damaged)."""
        return self.read_state()[0]

    def read_state(self) -> tuple[dict[str, Any], str | None]:
        """(the saved state, None); ({}, None) when nothing was ever synced; ({}, what is
        wrong) when ``state.json`` is unreadable, not JSON, foreign or ill-typed."""
        path = self.dir / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            return {}, f"{path}: cannot read ({exc.strerror or exc})"
        try:
            s = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError too
            return {}, f"{path}: not valid JSON ({exc})"
        problem = state_problem(s)
        return ({}, f"{path}: {problem}") if problem else (s, None)

    def _save_state(self, model: str | None, dim: int, episodes: dict[str, list],
                    files: dict[str, dict]) -> str | None:
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "sync_id": uuid.uuid4().hex,
                 "model": model, "dim": dim, "exact_threshold": self.exact_threshold,
                 "synced_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "episodes": episodes, "files": files}
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

    @contextmanager
    def _shared(self) -> Iterator[None]:
        """Wait for a sync of another process to finish (a read-only folder: no wait)."""
        try:
            fd = os.open(self.dir / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def is_current(self) -> bool:
        """True when the indexes hold exactly the store's current embeddings."""
        state, problem = self.read_state()
        if problem:
            return False
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

    def _load_level(self, level: Level, state: dict[str, Any]) -> VectorIndex:
        """The level as ``state`` (well-formed, not empty) recorded it; VectorIndexError says
        why it is damaged. A level without recorded checksums (an older state) is loaded
        unverified."""
        dim = max(int(state["dim"]), 1)
        index = VectorIndex.load(self.dir / level, use_gpu=self.use_gpu,
                                 exact_threshold=self.exact_threshold, nprobe=self.nprobe,
                                 checksums=state.get("files", {}).get(level))
        if index.dim != dim:
            raise VectorIndexError(f"{self.dir / level}: dimension {index.dim}, "
                                   f"{STATE_FILE} says {dim}")
        return index

    def _rebuild_level(self, level: Level, dim: int) -> tuple[VectorIndex, list[str]] | None:
        """The level remade from the store, and its ids; None when the store's embeddings
        are not of dimension ``dim`` (then everything must be rebuilt)."""
        ids, x = self.store.embeddings(level)
        if ids and x.shape[1] != dim:
            return None
        index = self._new_index(dim)
        index.rebuild(zip(ids, x) if ids else [])
        return index, ids

    def rebuild(self) -> SyncReport:
        """Remake every level's index from the store's embeddings."""
        with self._exclusive():
            return self._rebuild()

    def _rebuild(self, repaired: dict[str, str] | None = None) -> SyncReport:
        started = time.perf_counter()
        model = self.store.embedding_model()
        versions = self._embedded_versions(model)
        report = SyncReport(rebuilt=True, model=model, repaired=repaired or {})
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
        files = {}
        for level, index in indexes.items():
            files[level] = index.save_files(self.dir / level)
            report.counts[level] = len(index)
        self._loaded_token = self._save_state(model, dim, episodes, files)
        self._damaged = {}
        self._loaded = indexes
        report.seconds = time.perf_counter() - started
        return report

    def sync(self) -> SyncReport:
        """Bring the indexes up to date with the store (incrementally when possible), and
        rebuild the damaged levels (see the module docstring)."""
        with self._exclusive():
            started = time.perf_counter()
            state, problem = self.read_state()
            model = self.store.embedding_model()
            if problem:
                self._warn_damaged({level: problem for level in LEVELS})
                return self._rebuild({level: problem for level in LEVELS})
            if not state or state.get("model") != model \
                    or state.get("exact_threshold") != self.exact_threshold:
                return self._rebuild()
            dim = int(state["dim"])
            saved: dict[str, list] = state["episodes"]
            current = self._embedded_versions(model)
            changed = sorted(ep for ep, v in current.items()
                             if ep not in saved or saved[ep][0] != v)
            gone = sorted(ep for ep in saved if ep not in current)
            report = SyncReport(model=model, added_episodes=changed, removed_episodes=gone)
            loaded: dict[str, VectorIndex] = {}
            for level in LEVELS:
                try:
                    loaded[level] = self._load_level(level, state)
                except VectorIndexError as exc:
                    report.repaired[level] = str(exc)
            self._warn_damaged(report.repaired)
            unverified = set(LEVELS) - set(state.get("files", {}))
            if not changed and not gone and not report.repaired and not unverified:
                self._loaded, self._loaded_token = loaded, self._state_token()
                report.counts = {level: len(loaded[level]) for level in LEVELS}
                report.seconds = time.perf_counter() - started
                return report
            if not dim:
                return self._rebuild(report.repaired)  # nothing was embedded at the last sync
            shot_ids, shot_x = self.store.embeddings("shot", changed) if changed else ([], None)
            ep_ids, ep_x = self.store.embeddings("episode", changed) if changed else ([], None)
            for x in (shot_x, ep_x):
                if x is not None and x.size and x.shape[1] != dim:
                    # same model name, other size: start over
                    return self._rebuild(report.repaired)
            new_saved = {ep: v for ep, v in saved.items() if ep not in gone}
            count = shots_per_episode(shot_ids)
            for ep in changed:
                new_saved[ep] = [current[ep], count[ep]]
            indexes: dict[str, VectorIndex] = {}
            for level, ids, x in (("shot", shot_ids, shot_x), ("episode", ep_ids, ep_x)):
                if level in report.repaired:
                    rebuilt = self._rebuild_level(level, dim)
                    if rebuilt is None:
                        return self._rebuild(report.repaired)
                    indexes[level], all_ids = rebuilt
                    if level == "shot":
                        count = shots_per_episode(all_ids)
                        new_saved = {ep: [v, count[ep]] for ep, v in current.items()}
                    continue
                index = loaded[level]
                if level == "shot":
                    index.remove([shot_id(ep, i) for ep in changed + gone
                                  for i in range(saved.get(ep, [None, 0])[1])])
                else:
                    index.remove(changed + gone)
                if ids:
                    index.add(ids, x)
                if index.needs_rebuild:
                    return self._rebuild(report.repaired)
                indexes[level] = index
            programmes = self._rebuild_level("programme", dim)
            if programmes is None:
                return self._rebuild(report.repaired)
            indexes["programme"] = programmes[0]
            return self._commit(indexes, model, dim, new_saved, report, started)

    def _warn_damaged(self, damaged: dict[str, str]) -> None:
        for level, why in damaged.items():
            log.warning("the %s vector index is damaged (%s): rebuilding it from the store",
                        level, why)

    # --- reading -------------------------------------------------------------------------
    def ensure_current(self) -> None:
        """Sync when the store changed since the indexes were last synced (checked at most
        every ``check_interval_s``): readers never see ids the store no longer has, and never
        miss ones it has."""
        now = time.monotonic()
        if now - self._last_check < self.check_interval_s:
            return
        self._last_check = now
        if not self.is_current() and not self.read_state()[1]:
            # A damaged state.json is reported by ``index`` (readers never repair).
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
        """The level's index as last synced (by this or another process); VectorsDamaged
        when it is damaged (remembered until the next sync replaces ``state.json``)."""
        with self._lock:
            token = self._state_token()
            if token != self._loaded_token:
                self._loaded = {}
                self._damaged = {}
                self._loaded_token = token
            if level in self._damaged:
                raise VectorsDamaged(level, self._damaged[level])
            if level not in self._loaded:
                try:
                    self._loaded[level] = self._open_level(level)
                except VectorsDamaged as exc:
                    self._damaged[level] = exc.reason
                    raise
            return self._loaded[level]

    def _open_level(self, level: Level) -> VectorIndex:
        for attempt in range(2):
            state, problem = self.read_state()
            if problem:
                raise VectorsDamaged(level, problem)
            if not state:
                return self._new_index(1)  # never synced
            try:
                return self._load_level(level, state)
            except VectorIndexError as exc:
                if attempt:
                    raise VectorsDamaged(level, str(exc)) from None
            # Another process may have been syncing since state.json was read: wait for it
            # to finish, then read both again.
            with self._shared():
                pass
        raise AssertionError("unreachable")

    def search(self, level: Level, queries: np.ndarray, k: int,
               exclude: set[str] | None = None, nprobe: int | None = None
               ) -> list[list[tuple[str, float]]]:
        index = self.index(level)
        if not len(index):
            return [[] for _ in range(len(np.atleast_2d(queries)))]
        return index.search(np.atleast_2d(queries).astype(np.float32), k, exclude,
                            nprobe=nprobe)

    def status(self) -> dict[str, Any]:
        """What ``tvindex vectors status`` shows. Each level's ``status``: ``ok`` (checksums
        verified), ``unverified`` (a state written before checksums), ``not synced``, or
        ``damaged`` (with its ``reason``; also in ``damaged``, by level)."""
        state, _ = self.read_state()
        levels: dict[str, dict[str, Any]] = {}
        damaged: dict[str, str] = {}
        for level in LEVELS:
            try:
                index = self.index(level)
            except VectorsDamaged as exc:
                damaged[level] = exc.reason
                levels[level] = {"count": None, "kind": None, "status": "damaged",
                                 "reason": exc.reason}
                continue
            status = ("not synced" if not state else
                      "ok" if level in state.get("files", {}) else "unverified")
            levels[level] = {"count": len(index), "kind": index.kind, "status": status}
        return {"dir": str(self.dir), "model": state.get("model"), "dim": state.get("dim"),
                "synced_at": state.get("synced_at"),
                "episodes": len(state.get("episodes", {})),
                "current": not damaged and self.is_current(),
                "damaged": damaged, "levels": levels}
