"""The export downloads in the OpenAPI document (``webui/openapi.py``): the ``format``
parameter of ``GET /search``, its file answers, and ``GET /episodes/{episode_id}/shots``
(``webui/downloads.py``, ``search/export``)."""

from __future__ import annotations

from typing import Any

from webui.openapi_timecodes import TC

FORMATS = ["csv", "edl", "otio", "json"]
_FILE = {"type": "string"}
FILE_CONTENT: dict[str, Any] = {
    "text/csv": {"schema": {**_FILE, "description": "one row per shot: rank, ids, titles, "
                            "tc_in, tc_out, frame_rate, drop_frame, frames, seconds, score, "
                            "labels, media URL"}},
    "text/plain": {"schema": {**_FILE, "description": "format=edl: a CMX 3600 edit decision "
                              "list (source in/out in the episode's timecode, record in/out "
                              "continuous from 01:00:00:00)"}},
    "application/vnd.opentimelineio+json": {"schema": {
        **_FILE, "description": "format=otio: an OpenTimelineIO timeline, one clip per shot"}},
}
FORMAT_DESCRIPTION = (
    "export the shots as a file to download (Content-Disposition: attachment): csv "
    "(timecodes and seconds), edl (CMX 3600), otio (OpenTimelineIO) or json; timecodes are "
    "each episode's (drop-frame at 29.97 and 59.94)")


def format_param(default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": FORMATS}
    if default:
        schema["default"] = default
    return {"name": "format", "in": "query", "required": False, "schema": schema,
            "description": FORMAT_DESCRIPTION + (
                "; on a search, only at level shot, from the first hit, with limit up to "
                "5000 (default 500)" if default is None else "")}


def with_downloads(item: dict[str, Any]) -> dict[str, Any]:
    """``GET /search`` answering files too when ``format`` is given."""
    ok = item["get"]["responses"]["200"]
    ok["content"] = {**ok["content"], **FILE_CONTENT,
                     "application/json; format=json": {"schema": {"$ref":
                                                       "#/components/schemas/ExportList"}}}
    return item


_CLIP = {
    "shot_id": {"type": "string"}, "episode_id": {"type": "string"},
    "episode_title": {"type": "string"}, "programme_id": {"type": "string"},
    "programme_title": {"type": "string"},
    "media": {"type": "string", "description": "URL of the episode's media"},
    "frame_rate": {"type": "string", "description": "25 or 30000/1001"},
    "drop_frame": {"type": "boolean"}, "vfr": {"type": "boolean"},
    "episode_start_tc": {**TC, "type": "string"},
    "tc_in": {**TC, "type": "string", "description": "timecode of the shot's first frame"},
    "tc_out": {**TC, "type": "string", "description": "timecode just after its last frame"},
    "frame_in": {"type": "integer", "description": "frames from the episode's start"},
    "frame_out": {"type": "integer"}, "duration_frames": {"type": "integer"},
    "start_s": {"type": "number", "description": "seconds of the media file"},
    "end_s": {"type": "number"}, "time_s": {"type": "number"},
    "score": {"type": ["number", "null"]},
    "labels": {"type": "array", "items": {"type": "string"},
               "description": "set:label of the evidence (search) or of the shot's best"},
}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


SCHEMAS: dict[str, Any] = {
    "ExportClip": _closed(_CLIP),
    "ExportList": _closed({
        "kind": {"type": "string", "enum": ["search", "episode"]},
        "title": {"type": "string"}, "query": {"type": ["string", "null"]},
        "episode_id": {"type": ["string", "null"]},
        "clips": {"type": "array", "items": {"$ref": "#/components/schemas/ExportClip"}}}),
}


def export_paths(episode_param: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    return {"/episodes/{episode_id}/shots": {"get": {
        "operationId": "episodeShots", "tags": ["catalogue"],
        "summary": "An episode's shots in time order with their timecodes, or as a file",
        "description": "Without format (or format=json): the shots as JSON. With format: "
                       "a file to download, " + FORMAT_DESCRIPTION + ".",
        "parameters": [episode_param, format_param("json")],
        "responses": {"200": {"description": "the shots", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ExportList"}},
            **FILE_CONTENT}}, **errors}}}}
