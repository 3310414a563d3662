"""Search by picture: uploaded pictures kept by content so a result page has a URL to share,
the similarity floor ("no close match"), and the embedding network warmed at start.

- **Kept by content** (:class:`PictureStore`): an uploaded picture, once decoded (oriented,
  flattened, at most ``MAX_SIDE`` a side), is kept as a JPEG named by the SHA-256 of its
  pixels in ``pictures.dir`` (``<data_dir>/pictures``), so ``GET /similar?image=ID`` (page) and
  ``GET /api/v1/similar?image=ID`` (API) give the same answer to whoever follows the link.
  It is kept ``pictures.keep_days`` after its last use and within ``pictures.max_store_mb``
  (least recently used out first); after that the link answers 410 Gone. A data directory
  that cannot be written keeps nothing: the answer then comes without a share link.
- **The floor** (``pictures.min_similarity``): shots less similar than it are no match; when
  none is left the answer says so (``no_close_match``) with the best similarity found.
- **Warm start** (:func:`warm_embedder`, ``pictures.warm_embedder``): ``tvindex serve`` loads
  the embedding network in a background thread, so the first upload does not wait for it;
  ``/api/v1/health`` reports its state.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, current_app
from PIL import Image
from werkzeug.exceptions import Gone

from tvindex.core import images
from tvindex.core.files import write_atomic
from tvindex.core.records import Hit
from webui.context import WebContext, ctx
from webui.errors import BadParameter

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{64}$")
_VECTORS_KEPT = 64  # embeddings of kept pictures cached in memory (one network pass saved)
_EXTENSION = "tvindex_pictures"
_STATE = "tvindex_embedder_state"


class PictureGone(Gone):
    """A shared picture link whose picture is no longer kept (410)."""

    problem_code = "picture_gone"


def picture_id(pixels: np.ndarray) -> str:
    """The content address of a decoded picture: SHA-256 of its shape and pixels."""
    h = hashlib.sha256(f"{pixels.shape}".encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def check_id(value: str) -> str:
    if not _ID.match(value):
        raise BadParameter("image must be a picture id: 64 lower-case hexadecimal characters "
                           "(the SHA-256 a picture upload answers with)")
    return value


class PictureStore:
    """Pictures kept as ``ID.jpg`` in one folder; a file's modification time is its last use."""

    def __init__(self, folder: Path, keep_s: float, max_bytes: int) -> None:
        self.folder = folder
        self.keep_s = keep_s
        self.max_bytes = max_bytes

    @property
    def enabled(self) -> bool:
        return self.keep_s > 0

    def _path(self, pid: str) -> Path:
        return self.folder / f"{check_id(pid)}.jpg"

    def put(self, pixels: np.ndarray) -> str | None:
        """Keep the picture; its id, or None when it cannot be kept (keeping is off, or the
        folder cannot be written: the reason goes to the log)."""
        if not self.enabled:
            return None
        pid = picture_id(pixels)
        path = self._path(pid)
        try:
            if path.exists():
                os.utime(path)
                return pid
            self.folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=92)
            # A temporary name of this thread's own: the same picture uploaded twice at once
            # is written twice and renamed into place twice, harmlessly.
            write_atomic(path, buf.getvalue(),
                         tmp=path.with_name(f".{pid}.{os.getpid()}.{threading.get_ident()}.tmp"))
            self.sweep()
        except OSError as exc:
            log.warning("pictures: cannot keep an uploaded picture in %s (%s); its result "
                        "page gets no share link", self.folder, exc.strerror or exc)
            return None
        return pid

    def get(self, pid: str, max_pixels: int) -> images.DecodedImage:
        """The kept picture ``pid``; :class:`PictureGone` when it is not (or no longer) kept."""
        path = self._path(pid)
        try:
            if not self.enabled or time.time() - path.stat().st_mtime > self.keep_s:
                raise FileNotFoundError(path)
            data = path.read_bytes()
            os.utime(path)
        except OSError:
            days = f"{self.keep_s / 86400:g}"
            raise PictureGone(f"picture {pid} is not kept here (pictures are kept {days} days "
                              "after their last use): upload it again") from None
        try:
            return images.decode_image(data, max_pixels)
        except images.ImageError:
            raise PictureGone(f"picture {pid} is damaged: upload it again") from None

    def sweep(self) -> None:
        """Remove pictures unused for longer than they are kept, then the least recently
        used ones while the folder holds more than its budget."""
        now = time.time()
        files = []
        for p in self.folder.glob("*.jpg"):
            try:
                st = p.stat()
            except OSError:
                continue
            if now - st.st_mtime > self.keep_s:
                p.unlink(missing_ok=True)
            else:
                files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size


@dataclass
class PictureResult:
    """Shots like a picture, after the floor."""

    hits: list[Hit]
    best_similarity: float | None  # the nearest shot's, floor or not
    min_similarity: float | None
    picture_id: str | None = None  # None: not kept (no share link)

    @property
    def no_close_match(self) -> bool:
        return self.best_similarity is not None and not self.hits

    def to_dict(self) -> dict[str, Any]:
        return {"min_similarity": self.min_similarity,
                "best_similarity": self.best_similarity,
                "no_close_match": self.no_close_match}


@dataclass
class PictureSearch:
    """One application's picture store and the embeddings of kept pictures."""

    store: PictureStore
    _vectors: OrderedDict[tuple[str, str], np.ndarray] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def embed(self, context: WebContext, pixels: np.ndarray, pid: str | None) -> np.ndarray:
        recommender = context.recommender()
        key = (pid or "", str(context.store.embedding_model()))
        with self._lock:
            if pid is not None and key in self._vectors:
                self._vectors.move_to_end(key)
                return self._vectors[key]
        with context.embed_lock:
            vector = recommender.embed_image(pixels)
        if pid is not None:
            with self._lock:
                self._vectors[key] = vector
                while len(self._vectors) > _VECTORS_KEPT:
                    self._vectors.popitem(last=False)
        return vector

    def search(self, context: WebContext, pixels: np.ndarray, limit: int,
               pid: str | None) -> PictureResult:
        from search.recommend import apply_floor

        vector = self.embed(context, pixels, pid)
        floor = context.settings.pictures.min_similarity
        hits, best = apply_floor(context.recommender().shots_like(vector, limit), floor)
        return PictureResult(hits, best, floor, pid)


def pictures() -> PictureSearch:
    """The current application's :class:`PictureSearch`."""
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        context = ctx()
        cfg = context.settings.pictures
        folder = cfg.dir
        if folder is None:
            subdir = context.store.data_subdir()
            base = Path(context.settings.paths.data_dir)
            folder = (base / subdir if subdir else base) / "pictures"
        found = current_app.extensions.setdefault(_EXTENSION, PictureSearch(PictureStore(
            Path(folder), cfg.keep_days * 86400, int(cfg.max_store_mb * 1024 * 1024))))
    return found


def warm_embedder(app: Flask) -> threading.Thread | None:
    """Load the embedding network in the background (``pictures.warm_embedder``) when the
    catalogue has embeddings; the thread, or None when there is nothing to warm."""
    context: WebContext = app.extensions["tvindex"]
    if not context.settings.pictures.warm_embedder or context.store.embedding_model() is None:
        return None
    state = app.extensions[_STATE] = {"state": "loading"}

    def load() -> None:
        started = time.perf_counter()
        try:
            embedder = context.recommender().embedder()
            state["state"] = "ready" if embedder is not None else "none"
            log.info("pictures: embedding network loaded in %.1f s",
                     time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001  (reported by /api/v1/health; the first query retries)
            state["state"] = "failed"
            log.warning("pictures: loading the embedding network failed: %s", exc)

    thread = threading.Thread(target=load, name="tvindex-warm-embedder", daemon=True)
    thread.start()
    return thread


def embedder_state(app: Flask) -> str:
    """``off`` (not warmed at start), ``loading``, ``ready``, ``none`` (no embedding tagger
    configured) or ``failed``."""
    return app.extensions.get(_STATE, {}).get("state", "off")
