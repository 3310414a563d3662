"""The OpenAPI 3.1 document of ``/api/v1``, written by hand (``/api/v1/openapi.json``).

Schemas are closed (``additionalProperties: false``) so that the tests, which validate every
response against them, notice any field the code adds or drops without documenting it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from tvindex.core.limits import DEFAULT_LIMIT
from webui.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TITLES, PROBLEM_TYPE_BASE
from webui.openapi_examples import response_examples
from webui.openapi_export import SCHEMAS as EXPORT_SCHEMAS
from webui.openapi_export import export_paths, format_param, with_downloads
from webui.openapi_media import MEDIA_PATHS
from webui.openapi_pictures import PICTURE_ID, SIMILARITY_FLOOR, picture_get
from webui.openapi_search import (
    EVIDENCE_WHY,
    FACETS_PARAM,
    FACETS_PROP,
    HIT_WHY,
    MIN_SCORE_PARAM,
    QUERY_TEMPORAL,
    SORT_PARAM,
    moment,
)
from webui.openapi_timecodes import EPISODE_CLOCK, TIMECODES
from webui.openapi_words import HIT_WORDS, QUERY_WORDS, WORD_SCHEMAS, transcript_paths

STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
OPT_STR = {"type": ["string", "null"]}
OPT_INT = {"type": ["integer", "null"]}
OPT_NUM = {"type": ["number", "null"]}
DATE = {"type": ["string", "null"], "format": "date"}
LEVEL = {"type": "string", "enum": ["shot", "episode", "programme"]}
STATUS = {"type": "string", "enum": ["pending", "indexed", "failed"]}
LINKS = {"type": "object", "additionalProperties": {"type": "string"},
         "description": "Related URLs (this server): page, thumbnail, media, API resources."}
BLEND_METHOD = "blend-embedding-label-profile"
SHOT_METHOD = "cosine-embedding"
BLEND = ("similarity = (we * embedding_similarity + wl * label_similarity) / (we + wl), with "
         "we = recommend.embedding_weight and wl = recommend.label_weight (see weights). "
         "embedding_similarity is the cosine of the two items' mean frame embeddings; "
         "label_similarity is the cosine of their label profiles: mean label scores weighted "
         "TF-IDF-style across the catalogue (idf = ln((1 + N) / (1 + df)) + 1, df = items whose "
         "mean score reaches recommend.idf_min_score), each label set normalised to unit "
         "length so that every set weighs the same. A part is null when either item lacks "
         "it (a catalogue indexed without an embedding tagger), and then drops out of the "
         "blend with its weight. The item itself is never listed; ties break on the id.")
SIMILARITY = {"type": "number", "minimum": -1, "maximum": 1,
              "description": "the blend of the two parts below"}
EMBEDDING_SIMILARITY = {"type": ["number", "null"], "minimum": -1, "maximum": 1,
                        "description": "cosine of the mean frame embeddings"}
LABEL_SIMILARITY = {"type": ["number", "null"], "minimum": -1, "maximum": 1,
                    "description": "cosine of the TF-IDF-weighted label profiles"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], optional: tuple[str, ...] = (),
        description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": [k for k in properties if k not in optional],
                           "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def page_of(item: str) -> dict[str, Any]:
    return obj({"total": INT, "offset": INT, "limit": INT,
                "next_offset": {"type": ["integer", "null"],
                                "description": "offset of the next page; null on the last"},
                "next": {"type": ["string", "null"],
                         "description": "URL of the next page; null on the last"},
                "items": array(ref(item))})


_SEGMENT = {
    "id": {"type": "string", "description": "shot id, EPISODE@INDEX"},
    "index": INT,
    "start_s": {"type": "number", "description": "seconds of the media file"},
    "end_s": NUM,
    "time_s": {"type": "number", "description": "the representative frame's time"},
    "n_frames": INT,
    "top_labels": {"type": "object", "additionalProperties": array(ref("SegmentLabel")),
                   "description": "label set -> the shot's best labels (five per set)"},
    **TIMECODES,
}

SCHEMAS: dict[str, Any] = {
    "Error": obj({
        "type": {"type": "string", "format": "uri",
                 "description": "identifies the problem type: " + PROBLEM_TYPE_BASE + "{code} "
                                "(an identifier, not a link)"},
        "title": {"type": "string", "description": "short, the same for every such problem"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599,
                   "description": "the HTTP status of the answer"},
        "detail": {"type": "string", "description": "what was wrong in this request"},
        "code": {"type": "string", "enum": sorted(PROBLEM_TITLES),
                 "description": "stable machine-readable code"},
        "instance": {"type": "string", "description": "the request path"},
        "column": {"type": "integer", "minimum": 1,
                   "description": "1-based position in the query where it went wrong"},
        "suggestions": {**array(STR), "description": "did you mean: the closest known "
                                                      "labels, programmes or parameters"},
        "parameters": {**array(STR), "description": "the unknown query parameters"},
        "retry_after": {"type": "integer", "minimum": 0,
                        "description": "seconds to wait, as in the Retry-After header"},
        "error": {**obj({"status": INT, "message": STR, "column": INT}, optional=("column",)),
                  "deprecated": True,
                  "description": "the error shape before problem details (status, detail as "
                                 "message, column); kept for one release"},
    }, optional=("instance", "column", "suggestions", "parameters", "retry_after"),
        description="An RFC 9457 problem (application/problem+json)."),
    "Health": obj({"status": {"type": "string", "enum": ["ok"]}, "version": STR, "api": STR,
                   "backend": STR, "programmes": INT,
                   "episodes": obj({"total": INT, "indexed": INT, "pending": INT,
                                    "failed": INT}),
                   "embedder": {"type": "string",
                                "enum": ["off", "loading", "ready", "none", "failed"],
                                "description": "the embedding network (search by picture): "
                                               "off = not loaded at start "
                                               "(pictures.warm_embedder)"}}),
    "Evidence": obj({"label_set": STR, "label": STR, "score": NUM, "coverage": OPT_NUM,
                     "excluded": BOOL, **EVIDENCE_WHY}, optional=tuple(EVIDENCE_WHY)),
    "Moment": moment(TIMECODES),
    "Hit": obj({"level": LEVEL, "id": STR, "score": NUM, "programme_id": STR,
                "programme_title": STR, "episode_id": OPT_STR, "episode_title": OPT_STR,
                "air_date": DATE, "start_s": OPT_NUM, "end_s": OPT_NUM, "time_s": OPT_NUM,
                **TIMECODES,
                "evidence": array(ref("Evidence")), "links": LINKS, **HIT_WHY,
                **HIT_WORDS},
               optional=(*HIT_WHY, *HIT_WORDS)),
    "LabelRef": obj({"label_id": INT, "label_set": STR, "name": STR}),
    "ResolvedQuery": obj({"groups": array(array(ref("LabelRef"))),
                          "excluded": array(ref("LabelRef")),
                          "programme_ids": array(STR), "genres": array(STR), **QUERY_TEMPORAL,
                          "after": DATE, "before": DATE, **QUERY_WORDS},
                         optional=tuple(QUERY_WORDS)),
    "SearchPage": obj({"level": LEVEL, "total": INT, "offset": INT, "limit": INT,
                       "query": ref("ResolvedQuery"), "hits": array(ref("Hit")),
                       "q": STR, "next_offset": OPT_INT, "next": OPT_STR,
                       "next_cursor": {
                           "type": ["string", "null"],
                           "description": "opaque cursor of the next page (pass it as "
                                          "`cursor`); null on the last page and on offset "
                                          "pages. Following it to the end lists every hit of "
                                          "the first page's ranking once, even while the "
                                          "catalogue is written"},
                       "facets": FACETS_PROP},
                      optional=("next_cursor", "facets")),
    "Suggestion": obj({"text": {"type": "string", "description": "query text to insert"},
                       "name": STR,
                       "kind": {"type": "string", "enum": ["label", "programme", "genre"]},
                       "label_set": OPT_STR, "episodes": INT}),
    "Suggestions": obj({"q": STR, "items": array(ref("Suggestion"))}),
    "Label": obj({"label_set": STR, "label_id": INT, "name": STR,
                  "activation": {"type": "string", "enum": ["sigmoid", "softmax"]},
                  "shots": {"type": "integer", "description": "shots carrying the label"},
                  "episodes": {"type": "integer",
                               "description": "episodes carrying the label"},
                  "label_set_name": {"type": "string",
                                     "description": "the set's name for editors "
                                                    "(vocabulary.display_names)"},
                  "role": {"type": "string", "enum": ["object", "scene", "other"],
                           "description": "what the label names: object: and scene: "
                                          "search the labels of that role (of the offline "
                                          "ImageNet stand-in, only its places are scenes)"},
                  "query": {"type": "string", "description": "the query term that finds it"}}),
    "LabelPage": page_of("Label"),
    "ProgrammeSummary": obj({"id": STR, "title": STR, "description": STR, "genre": STR,
                             "episodes": INT, "indexed_episodes": INT,
                             "first_air_date": DATE, "last_air_date": DATE,
                             "links": LINKS}),
    "ProgrammePage": page_of("ProgrammeSummary"),
    "TopLabel": obj({"label": STR, "score": {"type": "number", "description": "mean score"},
                     "coverage": {"type": "number",
                                  "description": "share of frames reaching the threshold"}}),
    "TopLabels": {"type": "object", "additionalProperties": array(ref("TopLabel")),
                  "description": "label set -> best labels, best first"},
    "Genre": obj({"genre": STR, "score": NUM, "predicted": BOOL}, description="catalogue "
                 "genre (score 1) or predicted (the model's probability; anygenre: finds it)"),
    "ProgrammeEpisode": obj({"id": STR, "title": STR, "air_date": DATE, "status": STATUS,
                             "segments": OPT_INT, "duration_s": OPT_NUM, "links": LINKS,
                             "genres": array(ref("Genre"))}, optional=("genres",)),
    "Programme": obj({"id": STR, "title": STR, "description": STR, "genre": STR,
                      "episodes": array(ref("ProgrammeEpisode")),
                      "top_labels": ref("TopLabels"), "links": LINKS,
                      "genres": array(ref("Genre"))}, optional=("genres",)),
    "SimilarProgramme": obj({"id": STR, "title": STR, "genre": STR,
                             "similarity": SIMILARITY,
                             "embedding_similarity": EMBEDDING_SIMILARITY,
                             "label_similarity": LABEL_SIMILARITY, "links": LINKS}),
    "BlendWeights": obj({"embedding": {"type": "number", "minimum": 0,
                                       "description": "recommend.embedding_weight"},
                         "label": {"type": "number", "minimum": 0,
                                   "description": "recommend.label_weight"}}),
    "Similar": obj({"programme_id": STR,
                    "method": {"type": "string", "enum": [BLEND_METHOD]},
                    "weights": ref("BlendWeights"),
                    "items": array(ref("SimilarProgramme"))},
                   description="Similar programmes, best first. " + BLEND),
    "SimilarEpisode": obj({"id": STR, "title": STR, "air_date": DATE, "programme_id": STR,
                           "programme_title": STR, "similarity": SIMILARITY,
                           "embedding_similarity": EMBEDDING_SIMILARITY,
                           "label_similarity": LABEL_SIMILARITY, "links": LINKS}),
    "SimilarEpisodes": obj({"episode_id": STR,
                            "method": {"type": "string", "enum": [BLEND_METHOD]},
                            "weights": ref("BlendWeights"),
                            "items": array(ref("SimilarEpisode"))},
                           description="Similar episodes, best first. " + BLEND),
    "UploadedImage": obj({"format": {"type": "string",
                                     "enum": ["JPEG", "PNG", "WEBP", "BMP", "GIF"]},
                          "width": INT, "height": INT,
                          "bytes": {"type": "integer", "description": "size of the upload"},
                          **PICTURE_ID}, optional=tuple(PICTURE_ID),
                         description="The uploaded picture, as received"),
    "ShotQuery": obj({"kind": {"type": "string", "enum": ["shot", "image"]},
                      "shot_id": {"type": ["string", "null"],
                                  "description": "the example shot (kind shot)"},
                      "exclude_episode": {"type": "boolean",
                                          "description": "the example shot's own episode "
                                                         "was left out"},
                      "image": {"anyOf": [ref("UploadedImage"), {"type": "null"}],
                                "description": "the uploaded picture (kind image)"}}),
    "SimilarShots": obj({"query": ref("ShotQuery"),
                         "method": {"type": "string", "enum": [SHOT_METHOD]},
                         "model": {"type": ["string", "null"],
                                   "description": "the tagger that embedded the catalogue"},
                         "items": {**array(ref("Hit")),
                                   "description": "shots, most similar first; a hit's score "
                                                  "is the cosine similarity of embeddings"},
                         **SIMILARITY_FLOOR}, optional=tuple(SIMILARITY_FLOOR),
                        description="Shots like an example, as search hits (evidence: the "
                                    "shot's own best labels)"),
    "Episode": obj({"id": STR, "title": STR, "air_date": DATE, "description": STR,
                    "start_s": OPT_NUM, "end_s": OPT_NUM, "status": STATUS,
                    "error": OPT_STR, "duration_s": OPT_NUM, "n_frames": OPT_INT,
                    "n_segments": OPT_INT, "sampling": OPT_STR, "programme_id": STR,
                    "programme_title": STR,
                    "reindex_requested": {"type": "boolean",
                                          "description": "the next index run re-indexes it"},
                    "top_labels": ref("TopLabels"), **EPISODE_CLOCK,
                    "playable": {"type": "boolean",
                                 "description": "browsers can play the media format"},
                    "links": LINKS,
                    "genres": array(ref("Genre"))}, optional=("genres",)),
    "SegmentLabel": obj({"label": STR, "score": NUM}),
    "Segment": obj(dict(_SEGMENT)),
    "TimelineSegment": obj({**_SEGMENT, "thumbnail": STR}),
    "Track": obj({"label_set": STR, "label": STR, "episode_score": NUM,
                  "scores": {"type": "array", "items": NUM,
                             "description": "one score per segment, 0 when outside the "
                                            "shot's five best labels"}}),
    "Timeline": obj({"episode_id": STR,
                     "start_s": {"type": "number", "description": "episode start in the file"},
                     "end_s": NUM, "duration_s": NUM,
                     "segments": array(ref("TimelineSegment")),
                     "tracks": array(ref("Track"))}),
    "Shot": obj({**_SEGMENT, "episode_id": STR, "episode_title": STR, "programme_id": STR,
                 "programme_title": STR, "air_date": DATE, "links": LINKS}),
    "ReindexAccepted": obj({"episode_id": STR, "reindex_requested": BOOL, "status": STATUS,
                            "message": STR, "links": LINKS}),
    **WORD_SCHEMAS,  # words (issue 17): webui/openapi_words.py
    **EXPORT_SCHEMAS,  # exports (issue 15): webui/openapi_export.py
}


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
        "paths": _decorated({**paths, **MEDIA_PATHS, **export_paths(eid, _errors(400, 404)),
                             **transcript_paths(eid, _errors(400, 404))}),  # openapi_words
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
