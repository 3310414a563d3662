"""The ``pictures`` section: search by picture (query by example) in the web UI and API."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from tvindex.settings.base import _Section


class PicturesSettings(_Section):
    # Shots less similar than this (cosine of the embeddings) are no match: a picture unlike
    # anything in the catalogue answers "no close match" instead of the whole catalogue.
    # Calibrated for the offline embedder (EfficientNet-Lite0 features) on the demo; another
    # embedding tagger needs its own value (see README, "Search by picture"); null = no floor.
    min_similarity: float | None = Field(0.5, ge=-1, le=1)
    # Uploaded pictures are kept, addressed by their content's SHA-256, so that a result page
    # has a URL to share (GET /similar?image=ID): for this long after their last use, and at
    # most this much disk (the least recently used go first). 0 days = not kept.
    keep_days: float = Field(7.0, ge=0, le=3650)
    max_store_mb: float = Field(256.0, ge=1)
    # Folder; null = <paths.data_dir>/pictures.
    dir: Path | None = None
    # Load the embedding network when the server starts (in the background, so pages and
    # searches answer meanwhile) rather than on the first picture query.
    warm_embedder: bool = True

    @field_validator("dir", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return None if v is None else v.expanduser()
