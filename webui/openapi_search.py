"""Search fields of the OpenAPI document (``webui/openapi.py``): why a hit matched (each
term's score, an episode/programme hit's best shot, a temporal hit's second moment), the
query's soft exclusions and ``then`` part, and the ``min_score``/``sort`` parameters."""

from __future__ import annotations

from typing import Any

from search.ranking import SORTS

_NUM_OR_NULL = {"type": ["number", "null"]}
_LABEL_REFS = {"type": "array", "items": {"$ref": "#/components/schemas/LabelRef"}}

EVIDENCE_WHY: dict[str, Any] = {
    "term": {"type": "string", "description": "the query term it answers, as canonical query "
                                              "text, e.g. object:dog"},
    "soft": {"type": "boolean", "description": "a ~term (prefer without): it lowered the "
                                               "score and excluded nothing"},
}


def moment(extra: dict[str, Any]) -> dict[str, Any]:
    """The Moment schema (a shot inside a hit), with ``extra`` optional fields."""
    props = {"id": {"type": "string"}, "episode_id": {"type": ["string", "null"]},
             "start_s": _NUM_OR_NULL, "end_s": _NUM_OR_NULL, "time_s": _NUM_OR_NULL,
             "score": {"type": "number"},
             "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}},
             **extra}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": ["id", "start_s", "end_s", "time_s", "score"],
            "description": "A shot inside a hit: an episode/programme hit's best shot, or "
                           "moment B of an 'A then B' hit"}


def _moment_or_null(description: str) -> dict[str, Any]:
    return {"anyOf": [{"$ref": "#/components/schemas/Moment"}, {"type": "null"}],
            "description": description}


HIT_WHY: dict[str, Any] = {
    "best_shot": _moment_or_null("episode/programme hits: the best shot for the same query "
                                 "(open the player there); null when no shot matches alone"),
    "then": _moment_or_null("'A then B' hits: moment B (the hit itself is moment A)"),
}
QUERY_TEMPORAL: dict[str, Any] = {
    "soft_excluded": {**_LABEL_REFS, "description": "~terms: lower the score, exclude nothing"},
    "then_groups": {"type": "array", "items": _LABEL_REFS,
                    "description": "'A then B': the groups of moment B"},
    "within_s": {**_NUM_OR_NULL, "description": "'within' window in seconds (null: the next "
                                                "shot)"},
}
MIN_SCORE_PARAM: dict[str, Any] = {
    "name": "min_score", "in": "query", "required": False,
    "schema": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
    "description": "score floor: hits scoring below it are dropped (the total counts the rest)",
    "example": 0.3}
SORT_PARAM: dict[str, Any] = {
    "name": "sort", "in": "query", "required": False,
    "schema": {"type": "string", "default": "score",
               "pattern": rf"^({'|'.join(SORTS)})(:(asc|desc))?$"},
    "description": "order: score (best first), air_date (newest first; a programme's latest "
                   "episode) or duration (longest first; a shot's length, an episode's, a "
                   "programme's indexed episodes together); add :asc or :desc to choose the "
                   "direction. Missing values come last; ties by score, then catalogue order",
    "example": "air_date:desc"}
# Facets (issue 15; search/facets.py): counts over every matched item, each with the query
# narrowed to it.
FACETS_PARAM: dict[str, Any] = {
    "name": "facets", "in": "query", "required": False,
    "schema": {"type": "string", "pattern": r"^(|0|1|true|false|all|((programme|genre|year|"
                                           r"label)(,(programme|genre|year|label))*))$"},
    "description": "facets to count over every matched item (not the page): a comma-separated "
                   "subset of programme, genre, year, label, or 1 for all; the answer's "
                   "`facets` holds them (not for 'A then B' queries or word terms: a 400)",
    "example": "programme,genre,year,label"}
_FACET_VALUE = {"type": "object", "additionalProperties": False,
                "required": ["value", "count", "query"],
                "properties": {"value": {"type": "string", "description": "programme id, genre, "
                                         "air year or set:label"},
                               "count": {"type": "integer", "minimum": 1},
                               "query": {"type": "string", "description": "the query narrowed "
                                         "to this value (its total is count)"},
                               "title": {"type": "string", "description": "programmes: title"}}}
FACETS_PROP: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {k: {"type": "array", "items": _FACET_VALUE}
                   for k in ("programme", "genre", "year", "label")},
    "description": "only with the facets parameter: per facet, values by count (largest "
                   "first, ties by value, at most 10); labels are those present in the matched "
                   "items, the query's own left out"}
