"""Words in the OpenAPI document (``webui/openapi.py``; issue 17): the transcript of an
episode (``GET /episodes/{episode_id}/transcript``), the word evidence of search hits and the
word terms of a resolved query."""

from __future__ import annotations

from typing import Any

from tvindex.core.words import WORD_SOURCES

_STR = {"type": "string"}
_NUM = {"type": "number"}
_OPT_STR = {"type": ["string", "null"]}
_OPT_NUM = {"type": ["number", "null"]}
_SOURCE = {"type": "string", "enum": list(WORD_SOURCES)}
_FIELD = {"type": "string", "enum": ["said", "screen", "subtitle", "text"],
          "description": "the query field: said (speech), screen (on-screen text), subtitle "
                         "(subtitles), text (any source)"}


def _obj(properties: dict[str, Any], optional: tuple[str, ...] = (),
         description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": [k for k in properties if k not in optional],
                           "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


SCORE_RULE = ("score = s / (s + 1) of the text engine's BM25 score s (SQLite FTS5, "
              "Elasticsearch), the best matching segment's; it enters the hit's score as one "
              "more term of the geometric mean of the label scores")

WORD_SCHEMAS: dict[str, Any] = {
    "WordEvidence": _obj({
        "field": _FIELD, "term": {**_STR, "description": "the words searched, as typed"},
        "source": _SOURCE, "start_s": _NUM, "end_s": _NUM, "language": _OPT_STR,
        "snippet": {**_STR, "description": "the segment's text as HTML: escaped, with "
                                           "<mark> around each matched word (cut to about "
                                           "240 characters around the first)"},
        "score": {"type": "number", "minimum": 0, "maximum": 1, "description": SCORE_RULE}},
        description="The text segment that matched a word term of the query"),
    "WordRef": _obj({"field": _FIELD, "source": {"type": ["string", "null"],
                                                 "enum": [*WORD_SOURCES, None]},
                     "value": _STR}),
    "TimedWord": _obj({"start_s": _NUM, "end_s": _NUM, "text": _STR,
                       "confidence": _OPT_NUM}),
    "TextSegment": _obj({"start_s": _NUM, "end_s": _NUM, "source": _SOURCE,
                         "language": _OPT_STR, "text": _STR, "confidence": _OPT_NUM,
                         "words": _array(_ref("TimedWord"))}, optional=("words",),
                        description="A subtitle cue, a speech segment (with its words' "
                                    "times) or a line of on-screen text"),
    "WordSource": _obj({"source": _SOURCE, "version": _OPT_STR,
                        "error": {**_OPT_STR, "description": "why the source failed for "
                                                             "this episode (null: it did not)"},
                        "segments": {"type": "integer", "minimum": 0}}),
    "Transcript": _obj({
        "episode_id": _STR,
        "source": {"type": ["string", "null"], "enum": [*WORD_SOURCES, None],
                   "description": "the source asked for (null: all)"},
        "segments": {**_array(_ref("TextSegment")), "description": "in time order"},
        "sources": {**_array(_ref("WordSource")),
                    "description": "each word source written for the episode"},
        "links": {"type": "object", "additionalProperties": {"type": "string"}}}),
}
# Added to the Hit and ResolvedQuery schemas (optional: only with word terms).
HIT_WORDS: dict[str, Any] = {"words": {**_array(_ref("WordEvidence")),
                                       "description": "what the query's word terms matched "
                                                      "(present with word terms only)"}}
QUERY_WORDS: dict[str, Any] = {"word_groups": _array(_array(_ref("WordRef"))),
                               "word_excluded": _array(_ref("WordRef")),
                               "then_word_groups": {
                                   **_array(_array(_ref("WordRef"))),
                                   "description": "'A then B': moment B's word terms"}}
SOURCE_PARAM_SCHEMA: dict[str, Any] = {"type": "string", "enum": list(WORD_SOURCES)}

TRANSCRIPT_EXAMPLE = ("n1?source=speech", {
    "episode_id": "n1", "source": "speech",
    "segments": [{"start_s": 6.0, "end_s": 8.0, "source": "speech", "language": "ca",
                  "text": "Obrim el pavelló", "confidence": 0.9,
                  "words": [{"start_s": 6.0, "end_s": 6.4, "text": "Obrim",
                             "confidence": 0.8}]}],
    "sources": [{"source": "speech", "version": "whisper-base/1", "error": None,
                 "segments": 1}],
    "links": {"episode": "/api/v1/episodes/n1", "page": "/episodes/n1"}})



def transcript_paths(episode_param: dict[str, Any], errors: dict[str, Any]) -> dict[str, Any]:
    """``GET /episodes/{episode_id}/transcript`` (``errors``: openapi.py's 400 and 404)."""
    return {"/episodes/{episode_id}/transcript": {"get": {
        "operationId": "transcript", "tags": ["catalogue"],
        "summary": "The episode's text segments in time order: subtitles, speech, on-screen "
                   "text",
        "parameters": [episode_param, {
            "name": "source", "in": "query", "required": False,
            "schema": SOURCE_PARAM_SCHEMA, "description": "only this word source",
            "example": "speech"}],
        "responses": {"200": {"description": "the transcript", "content": {
            "application/json": {"schema": _ref("Transcript")}}}, **errors}}}}
