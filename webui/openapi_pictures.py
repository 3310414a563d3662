"""The OpenAPI pieces of search by picture (``webui/pictures.py``): the floor's fields in the
``SimilarShots`` answer, the kept picture's id, and ``GET /similar?image=ID``."""

from __future__ import annotations

from typing import Any

SIMILARITY_FLOOR: dict[str, Any] = {
    "min_similarity": {"type": ["number", "null"],
                       "description": "pictures.min_similarity: shots less similar are no match"},
    "best_similarity": {"type": ["number", "null"],
                        "description": "the nearest shot's similarity, under the floor or not"},
    "no_close_match": {"type": "boolean",
                       "description": "true when no shot reaches the floor (items is empty)"},
    "links": {"type": "object", "additionalProperties": {"type": "string"},
              "description": "self: this answer's URL (GET /similar?image=ID), page: the web "
                             "page; empty when the picture could not be kept"},
}
PICTURE_ID: dict[str, Any] = {
    "id": {"type": ["string", "null"],
           "description": "the kept picture's id (SHA-256 of its decoded pixels), for "
                          "GET /similar?image=ID; null when it could not be kept"},
}


def picture_get(limit: dict[str, Any], ok: dict[str, Any],
                errors: dict[str, Any]) -> dict[str, Any]:
    """``GET /similar``: the answer a picture upload gave, at the URL it named."""
    return {
        "operationId": "similarToPicture",
        "summary": "Query by example with a kept picture (a shareable URL)",
        "description": (
            "A picture uploaded with POST /similar is kept by content for pictures.keep_days "
            "after its last use; its answer names this URL (links.self). 410 when the "
            "picture is no longer kept (upload it again), 400 for a malformed id."),
        "parameters": [
            {"name": "image", "in": "query", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
             "description": "the picture's id (query.image.id of the upload's answer)"},
            limit],
        "responses": {"200": ok, **errors},
    }
