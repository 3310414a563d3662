"""The ``vocabulary`` section: how label sets are named to editors (the web UI's tabs and
help, the API's label listings)."""

from __future__ import annotations

from pydantic import Field

from tvindex.settings.base import _Section


class VocabularySettings(_Section):
    # Label-set name -> the name editors see. A set without an entry is shown by its name.
    display_names: dict[str, str] = Field(default_factory=lambda: {
        "coco80": "COCO objects",
        "places365": "Places365 scenes",
        "imagenet1k": "ImageNet-1k (stand-in for Places365)",
    })
