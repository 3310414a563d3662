"""What the pages say about the vocabulary: each label set's display name (``vocabulary``
settings) and example queries drawn from labels the catalogue really carries, so the search
box never suggests a label that would answer "unknown label"."""

from __future__ import annotations

import threading
import time
from typing import Any

from search.query import Term
from tvindex.core.labels import label_role, place_labels
from tvindex.core.store import CatalogueStore
from webui.suggest import field_for_set

_TTL_S = 60.0  # recomputed at least this often when the store cannot tell its version


def label_query(label_set: str, name: str) -> str:
    """Query text that finds one label, e.g. ``object:"traffic light"``, ``scene:valley``,
    ``imagenet1k:orange``."""
    return Term(field_for_set(label_set, name), name).to_query()


def display_name(settings: Any, label_set: str) -> str:
    """The name editors see for a label set (``vocabulary.display_names``, else its name)."""
    return settings.vocabulary.display_names.get(label_set, label_set)


def stand_in_note(label_set: str) -> str | None:
    """For a set of which only some labels are places (the offline ImageNet stand-in for
    Places365): what ``scene:`` means there; None for other sets."""
    places = place_labels(label_set)
    if places is None:
        return None
    return (f"A stand-in for a scene classifier: only its {len(places)} classes that are "
            f"places (seashore, valley, church, library, restaurant, ...) answer scene:; "
            f"the others are searched as {label_set}:NAME.")


class CatalogueExamples:
    """Example queries from the catalogue's most common labels, cached until the catalogue
    changes (or for a minute when the store cannot tell)."""

    def __init__(self, store: CatalogueStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._key: object = None
        self._at = float("-inf")
        self._value: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        version = self.store.catalogue_version()
        with self._lock:
            fresh = (self._key == version if version is not None
                     else time.monotonic() - self._at < _TTL_S)
            if not fresh or not self._value:
                self._value = self._compute()
                self._key, self._at = version, time.monotonic()
            return self._value

    def _compute(self) -> dict[str, Any]:
        """``object``, ``scene``, ``exclude``: query terms (or None when the catalogue has no
        such label), ``placeholder``: the search box's hint."""
        carried = sorted((i for i in self.store.labels() if i.episodes > 0),
                         key=lambda i: (-i.episodes, -i.shots, i.name))
        objects = [i for i in carried if label_role(i.label_set, i.name) == "object"]
        scenes = [i for i in carried if label_role(i.label_set, i.name) == "scene"]

        def term(info: Any) -> str:
            return Term(field_for_set(info.label_set, info.name), info.name).to_query()

        out: dict[str, Any] = {
            "object": term(objects[0]) if objects else None,
            "scene": term(scenes[0]) if scenes else None,
            "exclude": "-" + term(objects[1]) if len(objects) > 1 else None,
        }
        parts = [t for t in (out["object"], out["scene"], out["exclude"]) if t]
        if not parts and carried:
            parts = [term(carried[0])]
        out["placeholder"] = ("Search the pictures: " + " ".join(parts) if parts
                              else "Search the pictures")
        return out
