"""The schemas of the OpenAPI document (``webui/openapi.py``): the JSON building blocks and
``SCHEMAS``, every answer's shape. Closed (``additionalProperties: false``) so that the tests,
which validate every response against them, notice any field the code adds or drops without
documenting it. Features keep their pieces in modules of their own (``openapi_search``,
``openapi_timecodes``, ``openapi_words``, ``openapi_export``, ``openapi_pictures``)."""

from __future__ import annotations

from typing import Any

from webui.errors import PROBLEM_TITLES, PROBLEM_TYPE_BASE
from webui.openapi_export import SCHEMAS as EXPORT_SCHEMAS
from webui.openapi_pictures import PICTURE_ID, SIMILARITY_FLOOR
from webui.openapi_search import (
    EVIDENCE_WHY,
    FACETS_PROP,
    HIT_WHY,
    QUERY_TEMPORAL,
    moment,
)
from webui.openapi_timecodes import EPISODE_CLOCK, TIMECODES
from webui.openapi_words import HIT_WORDS, QUERY_WORDS, WORD_SCHEMAS

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
