"""The media, thumbnail and poster URLs every API result links to, for the OpenAPI document
(``webui/openapi.py``). They are served by ``webui/media.py`` at the server root, outside
``/api/v1``: each path item names its own server (``/``). Their errors are HTML pages, not
JSON (they are fetched by the browser's ``<video>`` and ``<img>``)."""

from __future__ import annotations

from typing import Any

ROOT_SERVER = [{"url": "/", "description": "the server root (these URLs are not under "
                                          "/api/v1)"}]
_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
_HTML_ERROR = {"text/html": {"schema": {"type": "string"}}}


def _id(name: str, description: str, example: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": description, "example": example}


def _header(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}, "example": example}


def _image(summary: str, op: str, params: list[dict[str, Any]], ok: dict[str, Any],
           description: str) -> dict[str, Any]:
    return {"servers": ROOT_SERVER, "get": {
        "operationId": op, "tags": ["media"], "summary": summary, "description": description,
        "parameters": params,
        "responses": {"200": ok,
                      "404": {"description": "unknown id (an HTML page)",
                              "content": _HTML_ERROR}}}}


_JPEG = {"image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}}}
_POSTER = {"description": "the poster, or the placeholder picture (SVG) while there is none",
           "content": {**_JPEG, "image/svg+xml": {"schema": {
               "type": "string", "contentMediaType": "image/svg+xml"}}}}
EPISODE = _id("episode_id", "episode id", "bd1")

MEDIA_PATHS: dict[str, Any] = {
    "/media/{episode_id}": {"servers": ROOT_SERVER, "get": {
        "operationId": "media", "tags": ["media"],
        "summary": "The episode's media file, with HTTP range requests (seeking)",
        "description": (
            "The file the catalogue recorded for an indexed episode (an episode's `links.media`"
            "). Ranges: `Range: bytes=START-END` answers 206 with `Content-Range`; a range "
            "past the end is 416. Conditional: `ETag` and "
            "`Last-Modified`, 304 on `If-None-Match` / `If-Modified-Since`. The media type "
            "follows the file's extension (video/mp4, video/webm, ...; others "
            "application/octet-stream, for download). A file that is missing, not indexed, "
            "outside paths.media_roots or reached through a symbolic link is the same 404."),
        "parameters": [
            EPISODE,
            {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "one byte range", "example": "bytes=0-1048575"},
            {"name": "If-None-Match", "in": "header", "required": False,
             "schema": {"type": "string"}, "description": "an ETag from an earlier answer"}],
        "responses": {
            "200": {"description": "the whole file",
                    "headers": {"Accept-Ranges": _header("always bytes", "bytes"),
                                "ETag": _header("the file's version", '"1700000000.0-1234-99"'),
                                "Last-Modified": _header("the file's modification time",
                                                         "Tue, 14 Nov 2023 22:13:20 GMT")},
                    "content": {"video/*": {"schema": _BINARY},
                                "application/octet-stream": {"schema": _BINARY}}},
            "206": {"description": "the requested range",
                    "headers": {"Content-Range": _header("the range sent and the file size",
                                                         "bytes 0-1048575/73400320")},
                    "content": {"video/*": {"schema": _BINARY},
                                "application/octet-stream": {"schema": _BINARY}}},
            "304": {"description": "not modified since the ETag or date given"},
            "404": {"description": "unknown episode, or its media file is not available "
                                   "(an HTML page)", "content": _HTML_ERROR},
            "416": {"description": "the range is outside the file (an HTML page)",
                    "content": _HTML_ERROR}}}},
    "/thumbnails/{episode_id}/{index}.jpg": _image(
        "A shot's thumbnail (JPEG)", "thumbnail",
        [EPISODE, {"name": "index", "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 0},
                   "description": "the shot's index in the episode", "example": 0}],
        {"description": "the thumbnail", "content": _JPEG},
        "A shot hit's `links.thumbnail` and a timeline segment's `thumbnail`. 404 when the "
        "episode or the shot is unknown or has no thumbnail."),
    "/posters/episodes/{episode_id}.jpg": _image(
        "An episode's poster: its middle shot's thumbnail", "episodePoster", [EPISODE],
        _POSTER, "An episode hit's `links.thumbnail`: the middle shot's thumbnail, else the "
                 "first's, else a placeholder picture. 404 for an unknown episode."),
    "/posters/programmes/{programme_id}.jpg": _image(
        "A programme's poster: the poster of its first indexed episode", "programmePoster",
        [_id("programme_id", "programme id", "beach-dogs")], _POSTER,
        "A programme hit's `links.thumbnail`; a placeholder picture while no episode is "
        "indexed. 404 for an unknown programme."),
}
