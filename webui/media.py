"""Media and thumbnails, addressed by catalogue ids only.

The file path always comes from the store (the episode's registered ``media_path``), never
from the client: a URL names an episode id, and an id that is not in the catalogue is a 404.
Media are served with HTTP range requests (conditional responses) so the player can seek
without downloading the whole file.

What is served, checked again at every request: the file of an *indexed* episode only; the
path the store recorded, absolute and normalised, opened one component at a time without
following a symlink anywhere (``O_NOFOLLOW``: the store records real paths, so a link there
means the file was swapped after indexing); only a regular file (``fstat`` of the opened
file, the same file ``lstat`` saw); and, when ``paths.media_roots`` is set, only under one of
those folders. Anything else is the same 404 as a missing file, which names the episode and
never the path or the reason; the reason goes to the log.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat
import time
import zlib
from pathlib import Path
from typing import BinaryIO

from flask import Blueprint, Response, abort, current_app, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from tvindex.core.records import shot_id
from tvindex.core.store import NotFound
from webui.context import ctx

bp = Blueprint("media", __name__)

THUMBNAIL_MAX_AGE_S = 3600
# Browsers play these; anything else still streams (for download), the player says why.
PLAYABLE = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm",
            ".ogv": "video/ogg", ".mov": "video/quicktime"}


def media_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return PLAYABLE.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def is_playable(path: str) -> bool:
    return Path(path).suffix.lower() in PLAYABLE


class Refused(Exception):
    """The stored media path may not be served; the message (for the log) says why."""


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_WALK = bool(_NOFOLLOW) and os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def _under(path: str, roots: list[Path]) -> bool:
    for root in roots:
        real = os.path.realpath(root)
        if path == real or path.startswith(real.rstrip(os.sep) + os.sep):
            return True
    return False


def _open_nofollow(path: str) -> int:
    """A read descriptor for ``path``, opened one component at a time, each relative to its
    parent and without following a symlink, so no link anywhere on the way is taken (there
    is no window between a check and the open). ``O_NONBLOCK``: a FIFO does not block."""
    parts = Path(path).parts
    if not _WALK:  # no openat/O_NOFOLLOW here: the next best, a check then an open
        if os.path.realpath(path) != path:
            raise Refused("a symlink in the path")
        return os.open(path, os.O_RDONLY | _CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC
    fd = os.open(parts[0], dir_flags)
    try:
        for name in parts[1:-1]:
            child = os.open(name, dir_flags, dir_fd=fd)
            os.close(fd)
            fd = child
        return os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK,
                       dir_fd=fd)
    finally:
        os.close(fd)


def open_media(path: str, roots: list[Path]) -> tuple[int, os.stat_result]:
    """The open descriptor and status of the media file at ``path`` (a store's record), or
    :class:`Refused` (or ``OSError``) when it may not be served."""
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        raise Refused("not an absolute, normalised path")
    if roots and not _under(path, roots):
        raise Refused("outside paths.media_roots")
    before = os.lstat(path)
    if stat.S_ISLNK(before.st_mode):
        raise Refused("a symlink")
    if not stat.S_ISREG(before.st_mode):
        raise Refused("not a regular file")
    try:
        fd = _open_nofollow(path)
    except OSError as exc:  # ELOOP / ENOTDIR: a link on the way, swapped in since the lstat
        raise Refused(f"cannot be opened without following a link ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise Refused("the file changed while it was checked")
    return fd, st


@bp.get("/media/<episode_id>")
def media(episode_id: str) -> Response:
    episode = ctx().store.episode(episode_id)  # NotFound -> 404
    path = episode.media_path
    try:
        if episode.status != "indexed":
            raise Refused(f"the episode is {episode.status}, not indexed")
        fd, st = open_media(path, list(ctx().settings.paths.media_roots))
    except (Refused, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        current_app.logger.warning("media of episode %s refused (%s): %s", episode_id, why, path)
        abort(404, description=f"the media file of episode {episode_id!r} is not available")
    return _send(os.fdopen(fd, "rb"), path, st)


def _send(file: BinaryIO, path: str, st: os.stat_result) -> Response:
    """What ``send_file(path, conditional=True, etag=True, max_age=0)`` answers, from the file
    already opened (send_file takes a size only from a path it opens itself)."""
    resp = current_app.response_class(wrap_file(request.environ, file),
                                      mimetype=media_type(path), direct_passthrough=True)
    resp.headers.set("Content-Disposition", "inline", filename=os.path.basename(path))
    resp.content_length = st.st_size
    resp.last_modified = st.st_mtime  # type: ignore[assignment]
    resp.cache_control.no_cache = True
    resp.cache_control.max_age = 0
    resp.expires = int(time.time())  # type: ignore[assignment]
    resp.set_etag(f"{st.st_mtime}-{st.st_size}-{zlib.adler32(path.encode()) & 0xFFFFFFFF}")
    try:
        resp = resp.make_conditional(request.environ, accept_ranges=True,
                                     complete_length=st.st_size)
    except RequestedRangeNotSatisfiable:
        file.close()
        raise
    resp.headers["Accept-Ranges"] = "bytes"
    return resp


def _jpeg(data: bytes) -> Response:
    """A thumbnail or poster: cached for an hour, then revalidated by its strong ETag (a hash
    of the JPEG's bytes, so a re-indexed episode's new pictures get new tags)."""
    resp = Response(data, mimetype="image/jpeg")
    resp.cache_control.public = True
    resp.cache_control.max_age = THUMBNAIL_MAX_AGE_S
    resp.set_etag(hashlib.sha256(data).hexdigest()[:32])
    return resp.make_conditional(request.environ)


def _placeholder() -> Response:
    return current_app.send_static_file("placeholder.svg")


MAX_SEGMENT_INDEX = 2**31 - 1  # above any real episode's; keeps stores' integers in range


@bp.get("/thumbnails/<episode_id>/<int:index>.jpg")
def thumbnail(episode_id: str, index: int) -> Response:
    if index > MAX_SEGMENT_INDEX:  # a missing thumbnail, as for any other absent index
        raise NotFound(f"no thumbnail for {shot_id(episode_id, index)}")
    return _jpeg(ctx().store.thumbnail(episode_id, index))


def _episode_poster(episode_id: str) -> bytes | None:
    store = ctx().store
    n = store.episode(episode_id).n_segments or 0
    for index in dict.fromkeys((n // 2, 0)):  # the middle shot, else the first
        try:
            return store.thumbnail(episode_id, index)
        except NotFound:
            continue
    return None


@bp.get("/posters/episodes/<episode_id>.jpg")
def episode_poster(episode_id: str) -> Response:
    data = _episode_poster(episode_id)
    return _jpeg(data) if data else _placeholder()


@bp.get("/posters/programmes/<programme_id>.jpg")
def programme_poster(programme_id: str) -> Response:
    programme = ctx().store.programme(programme_id)
    for ep in programme.episodes:
        if ep.status == "indexed":
            data = _episode_poster(ep.id)
            if data:
                return _jpeg(data)
    return _placeholder()
