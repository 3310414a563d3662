"""The OpenAPI 3.1 document of ``/api/v1``, written by hand (``/api/v1/openapi.json``).

Schemas are closed (``additionalProperties: false``) so that the tests, which validate every
response against them, notice any field the code adds or drops without documenting it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from tvindex.core.limits import DEFAULT_LIMIT
from webui.errors import PROBLEM_MEDIA_TYPE
from webui.openapi_examples import response_examples
from webui.openapi_export import export_paths, format_param, with_downloads
from webui.openapi_media import MEDIA_PATHS
from webui.openapi_pictures import picture_get
from webui.openapi_schemas import (  # noqa: F401  (BLEND_METHOD, SHOT_METHOD: used by webui.api)
    BLEND,
    BLEND_METHOD,
    LEVEL,
    SCHEMAS,
    SHOT_METHOD,
    STR,
    ref,
)
from webui.openapi_search import (
    FACETS_PARAM,
    MIN_SCORE_PARAM,
    SORT_PARAM,
)
from webui.openapi_words import transcript_paths


def _param(name: str, where: str, schema: dict[str, Any], description: str,
           required: bool = False, example: Any = None) -> dict[str, Any]:
    out = {"name": name, "in": where, "required": required or where == "path",
           "schema": schema, "description": description}
    if example is not None:
        out["example"] = example
    return out


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": ref(schema)}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": ref("Error")}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid parameter or query (the message says which)", 401: "no or wrong API key",
            403: "state-changing endpoints are disabled (no API key configured)",
            404: "unknown id", 410: "the cursor expired: start again without it",
            413: "request body too large",
            409: "the catalogue cannot answer: it has no embeddings, or they were made by "
                 "another model than the configured embedding tagger (re-index)",
            415: "not an image of a supported format (JPEG, PNG, WebP, BMP, GIF), or an "
                 "unsupported request content type"}
    return {str(c): _problem(text[c]) for c in codes}


LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500},
               "page size")
OFFSET = _param("offset", "query", {"type": "integer", "minimum": 0}, "items to skip")


def _get(summary: str, schema: str, params: list[dict[str, Any]], *errors: int,
         op: str, description: str = "") -> dict[str, Any]:
    out = {"operationId": op, "summary": summary, "parameters": params,
           "responses": {"200": _json(schema, summary), **_errors(*errors)}}
    if description:
        out["description"] = description
    return {"get": out}


def _similar_limit(default: int) -> dict[str, Any]:
    return _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100,
                                     "default": default}, "how many")


EXCLUDE_EPISODE = _param("exclude_episode", "query", {"type": "boolean", "default": False},
                         "leave out the other shots of the example shot's episode "
                         "(true or false)")


TAGS = [
    {"name": "search", "description": "Ranked search in the query language, and completions"},
    {"name": "catalogue", "description": "Programmes, episodes, shots and label vocabularies"},
    {"name": "similar", "description": "Recommendations: similar programmes, episodes and "
                                       "shots; query by example (a picture or a shot)"},
    {"name": "media", "description": "The media files, thumbnails and posters results link "
                                     "to (served at the server root, not under /api/v1)"},
    {"name": "system", "description": "Status, this document, re-index requests"},
]
OPERATION_TAGS = {
    "health": "system", "openapi": "system", "reindex": "system",
    "search": "search", "suggest": "search",
    "labels": "catalogue", "programmes": "catalogue", "programme": "catalogue",
    "episode": "catalogue", "timeline": "catalogue", "shot": "catalogue",
    "similarProgrammes": "similar", "similarEpisodes": "similar", "similarShots": "similar",
    "similarToExample": "similar",
    "similarToPicture": "similar",
}


def _decorated(paths: dict[str, Any]) -> dict[str, Any]:
    """Each operation with its tag (``OPERATION_TAGS``; an operation missing there is a
    KeyError, caught by the tests) and each JSON answer with its example, if one is written
    (``webui/openapi_examples.py``)."""
    for item in paths.values():
        for method, op in item.items():
            if method == "servers":
                continue
            if "tags" not in op:
                op["tags"] = [OPERATION_TAGS[op["operationId"]]]
            for code, resp in op["responses"].items():
                media = resp.get("content", {}).get("application/json")
                if media is None or not code.startswith("2") or "$ref" not in media["schema"]:
                    continue
                examples = response_examples(media["schema"]["$ref"].rsplit("/", 1)[-1])
                if examples:
                    media["examples"] = examples
    return paths


def document(version: str) -> dict[str, Any]:
    pid = _param("programme_id", "path", STR, "programme id", example="beach-dogs")
    eid = _param("episode_id", "path", STR, "episode id", example="bd1")
    sid = _param("shot_id", "path", STR, "EPISODE@INDEX", example="bd1@0")
    paths = {
        "/health": _get("Service and catalogue status", "Health", [], op="health"),
        "/search": with_downloads(_get(
            "Ranked search with evidence", "SearchPage",
            [_param("q", "query", {"type": "string", "minLength": 1},
                    "query text in the editors' query language, e.g. "
                    "'object:dog scene:beach -object:car after:2020-01-01'; required "
                    "unless a cursor is given", required=False,
                    example="object:dog scene:beach"),
             _param("level", "query", {**LEVEL, "default": "shot"}, "what to rank"),
             {**LIMIT, "schema": {**LIMIT["schema"], "default": DEFAULT_LIMIT}}, OFFSET,
             _param("cursor", "query", {"type": "string", "minLength": 1},
                    "the `next_cursor` of the previous page (not with offset; q, level and "
                    "limit may be left out, or must match the cursor's): a 400 when it is "
                    "damaged or for another query, a 410 when it expired (start again)"),
             MIN_SCORE_PARAM, SORT_PARAM, FACETS_PARAM, format_param()],
            400, 410, op="search")),
        "/suggest": _get(
            "Completions of the query token being typed", "Suggestions",
            [_param("q", "query", {"type": "string", "maxLength": 200},
                    "the token, e.g. 'object:bic' or '-traf'", example="object:bic"),
             _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 50,
                                       "default": 10}, "how many")],
            400, op="suggest"),
        "/labels": _get(
            "Label vocabularies with how many shots and episodes carry each label",
            "LabelPage",
            [_param("set", "query", STR, "only this label set", example="coco80"),
             _param("match", "query", STR, "only names containing this text",
                    example="dog"),
             {**LIMIT, "schema": {**LIMIT["schema"], "default": 100}}, OFFSET],
            400, 404, op="labels"),
        "/programmes": _get("Programmes, by title", "ProgrammePage",
                            [{**LIMIT, "schema": {**LIMIT["schema"], "default": DEFAULT_LIMIT}}, OFFSET],
                            400, op="programmes"),
        "/programmes/{programme_id}": _get(
            "A programme: episodes and top labels per label set", "Programme", [pid], 404,
            op="programme"),
        "/programmes/{programme_id}/similar": _get(
            "Programmes with similar content, the programme itself excluded", "Similar",
            [pid, _similar_limit(5)], 400, 404, op="similarProgrammes", description=BLEND),
        "/episodes/{episode_id}/similar": _get(
            "Episodes with similar content, the episode itself excluded", "SimilarEpisodes",
            [eid, _similar_limit(10)], 400, 404, op="similarEpisodes", description=BLEND),
        "/shots/{shot_id}/similar": _get(
            "Shots that look like this shot (nearest embeddings), the shot itself excluded",
            "SimilarShots",
            [sid, _similar_limit(10),
             EXCLUDE_EPISODE],
            400, 404, 409, op="similarShots",
            description="Cosine similarity of the shots' embeddings (the embedding tagger's "
                        "pooled features, averaged over the shot's frames), searched in the "
                        "vector index kept beside the catalogue. 409 when the catalogue has "
                        "no embeddings."),
        "/similar": {"get": picture_get(_similar_limit(10), _json("SimilarShots", "similar shots"),
                                        {**_errors(400, 409), "410": _problem(
                                            "the picture is no longer kept: upload it again")}),
                     "post": {
            "operationId": "similarToExample",
            "summary": "Query by example: the shots most like an uploaded picture or a shot",
            "description": (
                "Send a picture as multipart/form-data in the field `image` (JPEG, PNG, WebP, "
                "BMP or GIF; at most server.max_upload_bytes for the whole body and "
                "server.max_upload_pixels pixels), or JSON {\"shot\": \"EPISODE@INDEX\"}. "
                "The picture is embedded by the tagger that embedded the catalogue and "
                "compared with every shot by cosine similarity. Errors: 400 no picture or "
                "shot, or a truncated/corrupt picture; 413 body or picture too large "
                "(decompression bombs included: the size is checked before decoding); 415 "
                "not a supported picture; 404 unknown shot; 409 the catalogue has no "
                "embeddings or was embedded by another model."),
            "parameters": [_similar_limit(10), EXCLUDE_EPISODE],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["image"],
                               "properties": {"image": {"type": "string",
                                                        "contentMediaType": "image/*",
                                                        "description": "the picture"}}},
                    "encoding": {"image": {"contentType": "image/jpeg, image/png, "
                                                          "image/webp, image/bmp, "
                                                          "image/gif"}}},
                "application/json": {
                    "schema": {"type": "object", "required": ["shot"],
                               "additionalProperties": False,
                               "properties": {"shot": {"type": "string",
                                                       "description": "EPISODE@INDEX"}}}}}},
            "responses": {"200": _json("SimilarShots", "similar shots"),
                          **_errors(400, 404, 409, 413, 415)}}},
        "/episodes/{episode_id}": _get("An episode with its top labels", "Episode", [eid],
                                       404, op="episode"),
        "/episodes/{episode_id}/timeline": _get(
            "The episode's shots in time order and its top labels over time", "Timeline",
            [eid], 404, op="timeline"),
        "/episodes/{episode_id}/reindex": {"post": {
            "operationId": "reindex",
            "summary": "Ask the next `tvindex index` run to re-index the episode",
            "description": "Its current tags stay searchable until then. Needs the API key "
                           "configured as server.api_key.",
            "parameters": [eid], "security": [{"ApiKey": []}],
            "responses": {"202": _json("ReindexAccepted", "request recorded"),
                          **_errors(401, 403, 404, 413)}}},
        "/shots/{shot_id}": _get(
            "One shot: times, best labels, its episode and programme", "Shot",
            [sid], 404, op="shot"),
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "tvindex catalogue API", "version": version,
                 "description": "Content-based search of the video catalogue. Read-only "
                                "except where an API key is required. Errors are RFC 9457 "
                                "problem details (application/problem+json, schema Error) "
                                "with a stable code. Times are seconds of the "
                                "media file. Unknown query parameters are a 400 that names "
                                "them. Browse it at /api/docs."},
        "servers": [{"url": "/api/v1"}],
        "tags": TAGS,
        "paths": _decorated({**paths, **export_paths(eid, _errors(400, 404)),
                             **transcript_paths(eid, _errors(400, 404)),  # openapi_words
                             **MEDIA_PATHS}),
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header",
                                                      "name": "X-API-Key"}}},
    }


_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@cache
def _query_parameter_table() -> dict[tuple[str, str], frozenset[str]]:
    doc = document("")
    return {(path, method): frozenset(p["name"] for p in op.get("parameters", ())
                                      if p["in"] == "query")
            for path, ops in doc["paths"].items() for method, op in ops.items()
            if method in ("get", "post", "put", "patch", "delete")}


def query_parameters(rule: str, method: str) -> frozenset[str] | None:
    """The query parameters the operation at Flask ``rule`` (relative to the API root, e.g.
    ``/programmes/<programme_id>``) takes, from this document; None when it is not
    documented. HEAD is GET's."""
    verb = "get" if method.upper() == "HEAD" else method.lower()
    return _query_parameter_table().get((_RULE_ARG.sub(r"{\1}", rule), verb))
