"""Examples for the OpenAPI document (``webui/openapi.py``): response bodies, one per schema,
shown by the docs page (``/api/docs``) beside each operation.

Each is a real answer of the test catalogue, trimmed; ``tests/test_webui_docs.py`` validates
every one against its (closed) schema, so an example cannot go stale silently.
"""

from __future__ import annotations

from typing import Any

from webui.openapi_words import TRANSCRIPT_EXAMPLE

_DOG_BEACH_QUERY = {
    "groups": [[{"label_id": 2, "label_set": "coco80", "name": "dog"}],
               [{"label_id": 6, "label_set": "places365", "name": "beach"}]],
    "excluded": [], "soft_excluded": [], "then_groups": [], "within_s": None,
    "programme_ids": [], "genres": [], "after": None, "before": None}

_SHOT_HIT = {
    "level": "shot", "id": "bd2@0", "score": 0.924662, "programme_id": "beach-dogs",
    "programme_title": "Beach Dogs", "episode_id": "bd2", "episode_title": "Two",
    "air_date": "2019-05-01", "start_s": 0.0, "end_s": 5.0, "time_s": 2.5,
    "start_tc": "00:00:00:00", "end_tc": "00:00:05:00", "time_tc": "00:00:02:12",
    "evidence": [
        {"label_set": "coco80", "label": "dog", "score": 0.95, "coverage": None,
         "excluded": False},
        {"label_set": "places365", "label": "beach", "score": 0.9, "coverage": None,
         "excluded": False}],
    "links": {"self": "/api/v1/shots/bd2@0", "page": "/episodes/bd2?shot=0",
              "thumbnail": "/thumbnails/bd2/0.jpg", "similar": "/api/v1/shots/bd2@0/similar"}}

# schema name -> (summary, value)
EXAMPLES: dict[str, tuple[str, Any]] = {
    "Transcript": TRANSCRIPT_EXAMPLE,  # words (issue 17): webui/openapi_words.py
    "Health": ("a healthy catalogue", {
        "status": "ok", "version": "0.1.0", "api": "v1", "backend": "sqlite", "programmes": 4,
        "episodes": {"total": 5, "indexed": 4, "pending": 1, "failed": 0},
        "embedder": "ready"}),
    "SearchPage": ("q=object:dog scene:beach&limit=1", {
        "level": "shot", "total": 6, "offset": 0, "limit": 1, "query": _DOG_BEACH_QUERY,
        "hits": [_SHOT_HIT], "q": "object:dog scene:beach", "next_offset": 1,
        "next": "/api/v1/search?q=object%3Adog+scene%3Abeach&limit=1&offset=1",
        "next_cursor": "eyJsIjoic2hvdCIsIm4iOjEsInAiOjF9.c2lnbmF0dXJlLWV4YW1wbGU"}),
    "Suggestions": ("q=object:do", {
        "q": "object:do", "items": [{"text": "object:dog", "name": "dog", "kind": "label",
                                     "label_set": "coco80", "episodes": 4}]}),
    "LabelPage": ("match=dog", {
        "total": 1, "offset": 0, "limit": 100, "next_offset": None, "next": None,
        "items": [{"label_set": "coco80", "label_id": 2, "name": "dog",
                   "activation": "sigmoid", "shots": 5, "episodes": 4,
                   "label_set_name": "COCO objects", "role": "object",
                   "query": "object:dog"}]}),
    "ProgrammePage": ("limit=1", {
        "total": 4, "offset": 0, "limit": 1, "next_offset": 1,
        "next": "/api/v1/programmes?limit=1&offset=1",
        "items": [{"id": "beach-dogs", "title": "Beach Dogs", "description": "Dogs at sea",
                   "genre": "nature", "episodes": 3, "indexed_episodes": 2,
                   "first_air_date": "2019-05-01", "last_air_date": "2021-05-01",
                   "links": {"self": "/api/v1/programmes/beach-dogs",
                             "page": "/programmes/beach-dogs"}}]}),
    "Shot": ("bd1@0", {
        "id": "bd1@0", "index": 0, "start_s": 0.0, "end_s": 5.0, "time_s": 2.5, "n_frames": 2,
        "start_tc": "00:00:00:00", "end_tc": "00:00:05:00", "time_tc": "00:00:02:12",
        "top_labels": {"coco80": [{"label": "person", "score": 0.8},
                                  {"label": "dog", "score": 0.8}],
                       "places365": [{"label": "beach", "score": 0.8},
                                     {"label": "street", "score": 0.1}]},
        "episode_id": "bd1", "episode_title": "One", "programme_id": "beach-dogs",
        "programme_title": "Beach Dogs", "air_date": "2021-05-01",
        "links": {"page": "/episodes/bd1?shot=0", "thumbnail": "/thumbnails/bd1/0.jpg",
                  "media": "/media/bd1", "episode": "/api/v1/episodes/bd1",
                  "similar": "/api/v1/shots/bd1@0/similar"}}),
    "Episode": ("bd1", {
        "id": "bd1", "title": "One", "air_date": "2021-05-01", "description": "",
        "start_s": None, "end_s": None, "status": "indexed", "error": None,
        "duration_s": 10.0, "n_frames": 3, "n_segments": 2, "sampling": "shots",
        "programme_id": "beach-dogs", "programme_title": "Beach Dogs",
        "reindex_requested": False, "frame_rate": "25", "start_tc": "00:00:00:00",
        "end_tc": "00:00:10:00", "drop_frame": False, "vfr": False,
        "top_labels": {"coco80": [{"label": "person", "score": 0.8333, "coverage": 1.0},
                                  {"label": "dog", "score": 0.6333, "coverage": 0.6667}],
                       "places365": [{"label": "beach", "score": 0.7333, "coverage": 1.0}]},
        "playable": True,
        "genres": [{"genre": "nature", "score": 1.0, "predicted": False},
                   {"genre": "documentary", "score": 0.71, "predicted": True}],
        "links": {"media": "/media/bd1", "page": "/episodes/bd1",
                  "timeline": "/api/v1/episodes/bd1/timeline",
                  "similar": "/api/v1/episodes/bd1/similar",
                  "programme": "/api/v1/programmes/beach-dogs"}}),
    "SimilarShots": ("shot bd1@0", {
        "query": {"kind": "shot", "shot_id": "bd1@0", "exclude_episode": False, "image": None},
        "method": "cosine-embedding", "model": "yolo",
        "items": [{**_SHOT_HIT, "score": 0.98,
                   "evidence": [{**_SHOT_HIT["evidence"][0], "coverage": 1.0}]}]}),
}


def response_examples(schema: str) -> dict[str, Any] | None:
    """The ``examples`` of a media type object answering ``schema``, or None."""
    found = EXAMPLES.get(schema)
    if found is None:
        return None
    summary, value = found
    return {"example": {"summary": summary, "value": value}}
