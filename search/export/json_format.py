"""JSON: the clip list as one object (``kind``, ``title``, ``query`` or ``episode_id``, and
``clips`` with their timecodes, frames, seconds, score and labels)."""

from __future__ import annotations

import json

from search.export.base import ClipList, Exporter


class JsonExporter(Exporter):
    name = "json"
    media_type = "application/json"
    extension = "json"

    def render(self, clips: ClipList) -> bytes:
        body = {"kind": clips.kind, "title": clips.title, "query": clips.query,
                "episode_id": clips.episode_id, **clips.extra,
                "clips": [c.to_dict() for c in clips.clips]}
        return (json.dumps(body, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
