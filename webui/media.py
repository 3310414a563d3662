"""Media and thumbnails, addressed by catalogue ids only.

The file path always comes from the store (the episode's registered ``media_path``), never
from the client: a URL names an episode id, and an id that is not in the catalogue is a 404.
Media are served with HTTP range requests (``send_file(conditional=True)``) so the player can
seek without downloading the whole file.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, send_file

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


@bp.get("/media/<episode_id>")
def media(episode_id: str) -> Response:
    episode = ctx().store.episode(episode_id)  # NotFound -> 404
    path = Path(episode.media_path)
    if not path.is_absolute() or not path.is_file():
        current_app.logger.warning("media of episode %s missing: %s", episode_id, path)
        abort(404, description=f"the media file of episode {episode_id!r} is not available")
    resp = send_file(path, mimetype=media_type(str(path)), conditional=True, etag=True,
                     max_age=0)
    resp.headers["Accept-Ranges"] = "bytes"
    return resp


def _jpeg(data: bytes) -> Response:
    resp = Response(data, mimetype="image/jpeg")
    resp.cache_control.public = True
    resp.cache_control.max_age = THUMBNAIL_MAX_AGE_S
    return resp


def _placeholder() -> Response:
    return current_app.send_static_file("placeholder.svg")


@bp.get("/thumbnails/<episode_id>/<int:index>.jpg")
def thumbnail(episode_id: str, index: int) -> Response:
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
