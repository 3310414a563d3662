"""Export downloads of the API (``format=csv|edl|otio|json``): a search's shots
(``GET /api/v1/search``) and an episode's shots (``GET /api/v1/episodes/{id}/shots``), made by
``search/export``. Media references are the server's media URLs, never its file paths."""

from __future__ import annotations

from flask import Response, request

from search.export import EXPORT_FORMATS, exporter
from search.export.base import ClipList
from search.export.collect import MAX_CLIPS, episode_clips, search_clips
from tvindex.core.records import EpisodeDetail
from webui.context import ctx
from webui.errors import BadParameter
from webui.links import link
from webui.params import int_arg, level_arg, min_score_arg, sort_arg

EXPORT_LIMIT = 500  # a search export's default number of shots


def format_arg(default: str | None = None) -> str | None:
    """The ``format`` parameter: one of the export formats, or ``default`` when absent."""
    raw = request.args.get("format", "")
    if not raw:
        return default
    if raw not in EXPORT_FORMATS:
        raise BadParameter(f"format must be one of {', '.join(EXPORT_FORMATS)}, "
                           f"got {raw[:40]!r}")
    return raw


def media_url(episode: EpisodeDetail) -> str:
    """The absolute URL this server plays the episode's media at."""
    return request.host_url.rstrip("/") + link("media.media", episode_id=episode.id)


def download(clips: ClipList, fmt: str) -> Response:
    """The export as a file to save (``Content-Disposition: attachment``)."""
    out = exporter(fmt)
    resp = Response(out.render(clips), mimetype=out.media_type.split(";")[0])
    if "charset" in out.media_type:
        resp.headers["Content-Type"] = out.media_type
    resp.headers["Content-Disposition"] = f'attachment; filename="{out.filename(clips)}"'
    return resp


def search_download(q: str, fmt: str) -> Response:
    """A search's shots (level shot; ``limit`` up to ``MAX_CLIPS``, default 500)."""
    if level_arg() != "shot":
        raise BadParameter("an export lists shots: leave level out or set level=shot")
    if request.args.get("cursor") or request.args.get("offset", "") not in ("", "0"):
        raise BadParameter("an export starts at the first hit: leave cursor and offset out")
    limit = int_arg("limit", EXPORT_LIMIT, 1, MAX_CLIPS)
    return download(search_clips(ctx().store, q, limit=limit, min_score=min_score_arg(),
                                 sort=sort_arg(), media=media_url), fmt)


def episode_download(episode_id: str, fmt: str) -> Response:
    """An episode's shots in time order; ``json`` is answered inline."""
    clips = episode_clips(ctx().store, episode_id, media=media_url)
    if fmt == "json" and not request.args.get("format"):
        out = exporter("json")
        return Response(out.render(clips), mimetype="application/json")
    return download(clips, fmt)
