"""The run's taggers, built once and only when an episode needs tagging.

Building the taggers (importing torch and friends, reading weights) takes seconds; a run over
an indexed, unchanged catalogue needs none of it. To skip an episode the run must know the
configuration version (:func:`indexer.indexing.config_version`), which names the taggers'
weights and label sets. :class:`VersionCache` keeps, in the data dir, the last version
computed for a *settings key*: a hash of everything the version could depend on, read without
building anything (the ``taggers``, ``sampling`` and ``aggregation`` sections, where models
are looked for, the name, size, times and inode of every file there and of every file a
tagger setting names by path, and the tagger code's files). When the key is unchanged the
cached version is used; the run builds the taggers only when some episode must be tagged,
and then checks the version against the real one (a mismatch is recomputed, never trusted).
The Ray engine's driver does not build them at all: the tagging actors build them and send
their descriptions (:func:`specs_of`), from which the driver aggregates and versions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from indexer.indexing import config_version
from indexer.taggers.base import Tagger, TaggerSpec
from tvindex.core.files import write_atomic
from tvindex.settings import AggregationSettings, SamplingSettings

log = logging.getLogger(__name__)
VERSION_FILE = "config_versions.json"
_KEEP = 32  # settings keys remembered per data dir

Built = tuple[list[Tagger], Tagger | None]  # the taggers and the embedder (one of them)


class Models:
    """The taggers of a run: ``build()`` makes them (and the embedder) on first :meth:`get`.
    ``key``: the settings key (None: no shortcut, the version needs the taggers);
    ``cache``: where versions are remembered."""

    def __init__(self, build: Callable[[], Built], *, key: str | None = None,
                 cache: VersionCache | None = None) -> None:
        self._build = build
        self._built: Built | None = None
        self.key = key
        self.cache = cache
        self.load_seconds = 0.0

    @classmethod
    def ready(cls, taggers: Sequence[Tagger], embedder: Tagger | None) -> Models:
        """Taggers built already (the version is computed from them)."""
        m = cls(lambda: (list(taggers), embedder))
        m.get()
        return m

    @classmethod
    def from_settings(cls, settings, data_dir: str | os.PathLike[str] | None) -> Models:
        """The composition root's shortcut: ``taggers.active`` from ``settings``, the
        embedder chosen by ``taggers.embedding``, the version cache in ``data_dir``."""
        def build() -> Built:
            from indexer.frame_tagging import choose_embedder
            from indexer.taggers import taggers_from_settings

            taggers = taggers_from_settings(settings)
            return taggers, choose_embedder(taggers, settings.taggers.embedding)

        cache = VersionCache(Path(data_dir) / VERSION_FILE) if data_dir is not None else None
        return cls(build, key=settings_key(settings), cache=cache)

    def recipe(self) -> Models:
        """A copy that builds the taggers again where it is used (sent to other processes
        or machines: the built taggers stay here)."""
        return Models(self._build)

    @property
    def loaded(self) -> bool:
        return self._built is not None

    def get(self) -> Built:
        if self._built is None:
            import time

            t0 = time.perf_counter()
            self._built = self._build()
            self.load_seconds = time.perf_counter() - t0
        return self._built

    def version(self, sampling: SamplingSettings, aggregation: AggregationSettings) -> str:
        """The real configuration version (builds the taggers); remembered for the key."""
        taggers, embedder = self.get()
        v = config_version(taggers, embedder, sampling, aggregation)
        self.remember(v)
        return v

    def remember(self, version: str) -> None:
        """Keep ``version`` as the real one for this settings key (also when it was computed
        elsewhere: on a Ray cluster's tagging actors)."""
        if self.cache is not None and self.key is not None:
            self.cache.put(self.key, version)

    def version_hint(self) -> str | None:
        """The version remembered for this settings key, without building anything."""
        if self.cache is None or self.key is None:
            return None
        return self.cache.get(self.key)


Specs = tuple[list[TaggerSpec], TaggerSpec | None]  # Built, described


def specs_of(taggers: Sequence[Tagger], embedder: Tagger | None) -> Specs:
    """Built taggers (and their embedder) described, for a process that aggregates their
    output without building them."""
    return ([TaggerSpec.of(t) for t in taggers],
            TaggerSpec.of(embedder) if embedder is not None else None)


class VersionCache:
    """Settings key -> configuration version, a small JSON file (a cache: when it cannot be
    read or written, the run just builds the taggers)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} \
            if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        return self._read().get(key)

    def put(self, key: str, version: str) -> None:
        data = self._read()
        if data.get(key) == version:
            return
        data.pop(key, None)
        data[key] = version
        data = dict(list(data.items())[-_KEEP:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(data, indent=1).encode())
        except OSError as exc:
            log.warning("configuration version cache %s not written (%s)", self.path, exc)


def _signature(path: Path) -> list | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _folder(path: Path | None) -> list:
    if path is None:
        return []
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return [str(path), None]
    return [_signature(path / n) for n in names]


def _named_files(value) -> list:
    """Signatures of the existing files a settings value names by path."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _named_files(v)]
    if isinstance(value, list):
        return [s for v in value for s in _named_files(v)]
    if isinstance(value, str) and ("/" in value or value.startswith("~")):
        p = Path(value).expanduser()
        return [_signature(p)] if p.is_file() else []
    return []


def settings_key(settings) -> str:
    """Hash of what the configuration version could depend on, computed without building any
    tagger (see the module docstring)."""
    import indexer.taggers as taggers_pkg
    import tvindex
    import tvindex.core.labels as labels_mod

    taggers = settings.taggers.model_dump(mode="json", by_alias=True)
    code_dir = Path(taggers_pkg.__file__).parent
    code = [_signature(p) for p in sorted(code_dir.rglob("*.py"))]
    code.append(_signature(Path(labels_mod.__file__)))
    payload = {
        "tvindex": tvindex.__version__,
        "taggers": taggers,
        "sampling": settings.sampling.model_dump(mode="json"),
        "aggregation": settings.aggregation.model_dump(mode="json"),
        "model_dir": _folder(settings.paths.model_dir),
        "cache_dir": _folder(Path(settings.paths.cache_dir)),
        "allow_download": settings.models.allow_download,
        "named_files": _named_files(taggers),
        "code": code,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
