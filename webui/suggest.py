"""Autocompletion for the query box: the token being typed -> query text that completes it.

``object:bic`` -> ``object:bicycle``; ``traff`` -> ``object:"traffic light"``;
``programme:ciu`` -> ``programme:"Ciutat en bici"``; a leading ``-`` is kept. Label names come
with how many episodes carry them, and the more common ones come first among equally good
matches. The vocabulary is read from the store at most every ``ttl_s`` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from search.query import Term, normalise_label
from tvindex.core.labels import label_role
from tvindex.core.store import CatalogueStore

_FILTER_FIELDS = {"programme": "programme", "program": "programme", "prog": "programme",
                  "genre": "genre"}
_LABEL_FIELDS = {"object": "object", "obj": "object", "scene": "scene", "label": "label"}
MAX_SUGGESTIONS = 50


@dataclass(frozen=True)
class _Entry:
    kind: str  # "label", "programme" or "genre"
    name: str
    key: str  # normalised name
    label_set: str | None = None
    episodes: int = 0
    shots: int = 0


def field_for_set(label_set: str, name: str | None = None) -> str:
    """The query field an editor would write for label ``name`` of ``label_set``: its role
    (``object``/``scene``; ``tvindex.core.labels.label_role``: of an ImageNet class, scene
    only for its places), else the set's own name."""
    role = label_role(label_set, name or "")
    return label_set if role == "other" else role


class Suggester:
    def __init__(self, store: CatalogueStore, ttl_s: float = 30.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._entries: list[_Entry] = []

    def _vocabulary(self) -> list[_Entry]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl_s:
                entries = [_Entry("label", i.name, normalise_label(i.name), i.label_set,
                                  i.episodes, i.shots) for i in self.store.labels()]
                programmes = self.store.programmes()
                entries += [_Entry("programme", p.title, normalise_label(p.title),
                                   episodes=int(p.indexed_episodes)) for p in programmes]
                genres = sorted({p.genre for p in programmes if p.genre})
                entries += [_Entry("genre", g, normalise_label(g)) for g in genres]
                self._entries = entries
                self._loaded_at = time.monotonic()
            return self._entries

    def suggest(self, token: str, limit: int = 10) -> list[dict[str, Any]]:
        """Completions of one query token (the text from the last space to the caret)."""
        limit = max(1, min(limit, MAX_SUGGESTIONS))
        sign = token[:1] if token[:1] in ("-", "~") else ""  # -term excludes, ~term avoids
        negated = bool(sign)
        body = token[1:] if negated else token
        field, sep, value = body.partition(":")
        if not sep:
            field, value = "", body
        field = field.lower()
        value = value.lstrip('"')
        wanted = normalise_label(value)
        if not sep and not wanted:
            return []

        def accepts(e: _Entry) -> bool:
            if not sep:
                return e.kind in ("label", "programme") and not (negated and e.kind != "label")
            if field in _FILTER_FIELDS:
                return not negated and e.kind == _FILTER_FIELDS[field]
            if e.kind != "label":
                return False
            canon = _LABEL_FIELDS.get(field)
            if canon in ("object", "scene"):
                return label_role(e.label_set or "", e.name) == canon
            return canon == "label" or e.label_set == field

        ranked = []
        for e in self._vocabulary():
            if not accepts(e):
                continue
            if not wanted or e.key.startswith(wanted):
                quality = 0
            elif any(w.startswith(wanted) for w in e.key.split()):
                quality = 1
            elif wanted in e.key:
                quality = 2
            else:
                continue
            ranked.append((quality, -e.episodes, -e.shots, e.key, e))
        ranked.sort(key=lambda r: r[:4])

        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for *_, e in ranked:
            if e.kind != "label":
                text_field = e.kind
            elif sep:
                text_field = _LABEL_FIELDS.get(field, field)  # keep the field typed
            else:
                text_field = field_for_set(e.label_set or "", e.name)
            text = sign + Term(text_field, e.name).to_query()
            if text in seen:
                continue
            seen.add(text)
            out.append({"text": text, "name": e.name, "kind": e.kind,
                        "label_set": e.label_set, "episodes": e.episodes})
            if len(out) >= limit:
                break
        return out
