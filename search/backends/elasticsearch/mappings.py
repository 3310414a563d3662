"""Index templates and mappings of the Elasticsearch catalogue, and the index/alias naming.

Four indices, each read and written through an alias ``{prefix}{kind}`` that points at one
concrete index ``{prefix}{kind}-m{MAPPING_VERSION}-{build}``:

- ``meta``: the label-set registry (one document per registration slot) and the schema record;
- ``programmes``: metadata, and (from its indexed episodes) label aggregates and air dates;
- ``episodes``: metadata, indexing state (status, fingerprint, committed generation), label
  scores and the full score/coverage vectors;
- ``shots``: one document per shot/frame: times, top labels, JPEG thumbnail, label scores.

Label fields, for every label the store keeps (``keep_mask``), keyed by the global label id
(an integer as a string, so field names never depend on label text):

- ``labels`` (keyword): kept labels, the boolean filter a query's required groups become;
- ``present`` (keyword): kept labels that some frame reached (coverage > 0), for facets and
  the label counts of ``tvindex labels``;
- ``rf`` (rank_features): the scores, for relevance-style ``rank_feature`` queries (stored with
  9 significant bits, so not used for the exact ranking);
- ``p.<id>`` / ``q.<id>`` (float, dynamic template): ``max(p, EPS)`` and ``max(1 - p, EPS)``,
  exact float32, which the ranking query reads with ``field_value_factor``;
- ``s`` (object, not indexed): the exact scores, read back to re-score hits exactly.

Embeddings (mapping version 2), on episode and shot documents:

- ``embedding`` (binary): the mean of the frames' unit embeddings, float32 little-endian,
  base64 (not renormalised; ``CatalogueStore.embeddings`` normalises on read);
- ``embedding_model`` (keyword): the embedding tagger's identity, also on shots so that
  reading one model's shot embeddings is a server-side filter;
- episodes only: ``embedding_frames`` (integer, the episode's weight in its programme's
  mean) and ``embedding_at`` (long, ns since the epoch: the latest names the store's
  ``embedding_model()``).

Why ``binary`` and not ``dense_vector`` with ``index: false`` (which the emulator accepts):
nothing searches vectors in the cluster (similarity search is FAISS, built from a full read
of the embeddings), and that full read is the cost that matters. A ``dense_vector`` comes
back as a JSON array of numbers: at 1 280 dimensions a page of 500 shots is 14 MB of JSON
that takes the client 260 ms to parse (about 9 minutes per million shots, before transfer),
against 3.4 MB and 25 ms as base64 (about 50 s per million). A ``dense_vector`` also fixes
its dimension on the first document, so re-indexing in place with a new embedding model of
another size would be refused document by document; bytes have no dimension in the mapping
(a model's dimension is checked on read). Programme embeddings are not stored: they are the
frame-weighted mean of the episodes', computed on read.

Titles and descriptions are ``text`` with Catalan, Spanish and English sub-fields.
A change of anything here bumps ``MAPPING_VERSION``: the store then copies each index into a
new one and swaps the alias in one atomic call, so searches never see a half-built index.
"""

from __future__ import annotations

from typing import Any

MAPPING_VERSION = 2
KINDS = ("meta", "programmes", "episodes", "shots")
FIELD_LIMIT = 10_000  # 2 float fields per label: imagenet1k + places365 + coco80 fit easily

_TEXT = {"type": "text", "fields": {
    "ca": {"type": "text", "analyzer": "catalan"},
    "es": {"type": "text", "analyzer": "spanish"},
    "en": {"type": "text", "analyzer": "english"},
    "raw": {"type": "keyword", "ignore_above": 512},
}}
_KW = {"type": "keyword"}
_LABEL_FIELDS: dict[str, Any] = {
    "labels": _KW,
    "present": _KW,
    "rf": {"type": "rank_features"},
    "p": {"type": "object", "dynamic": True},
    "q": {"type": "object", "dynamic": True},
    "s": {"type": "object", "enabled": False},
}
_DYNAMIC_LABELS = [
    {"label_p": {"path_match": "p.*", "mapping": {"type": "float"}}},
    {"label_q": {"path_match": "q.*", "mapping": {"type": "float"}}},
]
_VECTORS = {"type": "object", "enabled": False}  # {set: {n_frames, score, coverage (base64)}}
# Predicted genres (issue 19; search/backends/elasticsearch/genres.py): the filter's keyword
# array, and (programmes, episodes) genre -> probability. Added to an older index's mapping by
# put_mapping before the first prediction is written.
GENRE_FIELDS: dict[str, Any] = {"genres_predicted": _KW,
                                "genre_scores": {"type": "object", "enabled": False}}
# An episode's broadcast clock (issue 15; tvindex.core.timecode): frame rate as text
# ("30000/1001"), its first frame's timecode, drop-frame, variable rate. Added to an older
# index's mapping by put_mapping before the first episode with a clock is written.
CLOCK_FIELDS: dict[str, Any] = {"frame_rate": _KW, "start_tc": _KW,
                                "drop_frame": {"type": "boolean"}, "vfr": {"type": "boolean"}}

PROPERTIES: dict[str, dict[str, Any]] = {
    "meta": {
        "kind": _KW, "slot": {"type": "integer"}, "name": _KW,
        "activation": _KW, "fingerprint": _KW, "first_id": {"type": "long"},
        "size": {"type": "integer"}, "labels": {"type": "keyword", "index": False},
        "mapping_version": {"type": "integer"},
    },
    "programmes": {
        "id": _KW, "seq": {"type": "long"}, "title": _TEXT, "description": _TEXT,
        "genre": _KW, "genre_lc": _KW, "air_dates": {"type": "date", "format": "strict_date"},
        "indexed_episodes": {"type": "integer"}, "stale": {"type": "boolean"},
        "n_frames": {"type": "integer"}, "vectors": _VECTORS, **_LABEL_FIELDS,
        **GENRE_FIELDS,
    },
    "episodes": {
        "id": _KW, "seq": {"type": "long"}, "programme_id": _KW, "genre_lc": _KW,
        "title": _TEXT, "description": _TEXT, "media_path": {"type": "keyword", "index": False},
        "air_date": {"type": "date", "format": "strict_date"},
        "start_s": {"type": "double"}, "end_s": {"type": "double"},
        "status": _KW, "fingerprint": _KW, "config_version": _KW,
        "error": {"type": "text", "index": False}, "indexed_at": {"type": "date"},
        "duration_s": {"type": "double"}, "n_frames": {"type": "integer"},
        "n_segments": {"type": "integer"}, "sampling": _KW,
        "gen": _KW, "pending_gen": _KW, "dirty": {"type": "boolean"},
        "dirty_since": {"type": "date"},
        "vectors": _VECTORS, **_LABEL_FIELDS,
        "embedding": {"type": "binary"}, "embedding_model": _KW,
        "embedding_frames": {"type": "integer"}, "embedding_at": {"type": "long"},
        **GENRE_FIELDS, **CLOCK_FIELDS,
    },
    "shots": {
        "episode_id": _KW, "programme_id": _KW, "genre_lc": _KW,
        "air_date": {"type": "date", "format": "strict_date"},
        "ep_seq": {"type": "long"}, "index": {"type": "integer"}, "gen": _KW,
        "start_s": {"type": "double"}, "end_s": {"type": "double"},
        "time_s": {"type": "double"}, "n_frames": {"type": "integer"},
        "top": {"type": "object", "enabled": False},
        "thumbnail": {"type": "binary"},
        "embedding": {"type": "binary"}, "embedding_model": _KW,
        **_LABEL_FIELDS, "genres_predicted": _KW,
    },
}


def alias(prefix: str, kind: str) -> str:
    return f"{prefix}{kind}"


def concrete(prefix: str, kind: str, build: str = "0") -> str:
    return f"{prefix}{kind}-m{MAPPING_VERSION}-{build}"


def template_body(prefix: str, kind: str, shards: int, replicas: int) -> dict[str, Any]:
    """A composable index template for ``{prefix}{kind}-*`` (every build of the index)."""
    mappings: dict[str, Any] = {"dynamic": "strict", "_meta": {"mapping_version": MAPPING_VERSION},
                                "properties": PROPERTIES[kind]}
    if "p" in PROPERTIES[kind]:
        mappings["dynamic_templates"] = _DYNAMIC_LABELS
    # Shots are ~99.9 % of the documents (docs/scaling.md): they get the configured primary
    # shards; programmes, episodes and the registry stay at one (a few GB at 100 000 hours).
    settings: dict[str, Any] = {
        "number_of_shards": shards if kind == "shots" else 1,
        "number_of_replicas": replicas,
        "index.mapping.total_fields.limit": FIELD_LIMIT,
    }
    return {"index_patterns": [f"{prefix}{kind}-*"], "priority": 200,
            "template": {"settings": settings, "mappings": mappings},
            "_meta": {"managed_by": "tvindex", "mapping_version": MAPPING_VERSION}}


# Words (issue 17; search/backends/elasticsearch/words.py): the ``{prefix}words`` index, made
# on first use beside the KINDS (not rebuilt with them). ``surface``/``stems`` hold the tokens
# search/words.py computes (as SQLite's FTS5 columns), so matching is the same in both backends.
WORDS_SETTINGS: dict[str, Any] = {"analysis": {"analyzer": {"folded": {
    "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]}}}}
WORDS_PROPERTIES: dict[str, Any] = {
    "kind": _KW, "episode_id": _KW, "programme_id": _KW, "source": _KW, "gen": _KW,
    "pending_gen": _KW, "dirty": {"type": "boolean"}, "key": _KW,
    "version": _KW, "error": {"type": "text", "index": False},
    "n_segments": {"type": "integer"},
    "start_s": {"type": "double"}, "end_s": {"type": "double"}, "language": _KW,
    "confidence": {"type": "float"},
    "text": {"type": "text", "analyzer": "folded", "fields": {
        "ca": {"type": "text", "analyzer": "catalan"},
        "es": {"type": "text", "analyzer": "spanish"},
        "en": {"type": "text", "analyzer": "english"}}},
    "surface": {"type": "text", "analyzer": "whitespace"},
    "stems": {"type": "text", "analyzer": "whitespace"},
    "words": {"type": "object", "enabled": False},
}
