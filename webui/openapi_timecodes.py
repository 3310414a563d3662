"""Timecode fields of the OpenAPI document (``webui/openapi.py``): the SMPTE label beside
each time in seconds, and an episode's clock (``tvindex.core.timecode``)."""

from __future__ import annotations

from typing import Any

TC: dict[str, Any] = {
    "type": ["string", "null"], "pattern": r"^\d\d:\d\d:\d\d[:;]\d\d$",
    "description": "SMPTE timecode HH:MM:SS:FF of the time beside it, in the episode's clock "
                   "(its start timecode plus the frames since its start; ';' before the "
                   "frames: drop-frame); null when the episode's clock is unknown"}
TIMECODES: dict[str, Any] = {"start_tc": TC, "end_tc": TC, "time_tc": TC}
EPISODE_CLOCK: dict[str, Any] = {
    "frame_rate": {"type": ["string", "null"], "pattern": r"^\d+(/\d+)?$",
                   "description": "frames per second, exact: 25 or 30000/1001 (null: indexed "
                                  "before timecodes were kept)"},
    "start_tc": {**TC, "description": "timecode of the episode's first frame (the file's "
                                      "timecode tag, else 00:00:00:00)"},
    "end_tc": {**TC, "description": "timecode at the episode's end"},
    "drop_frame": {"type": ["boolean", "null"],
                   "description": "drop-frame timecode (29.97, 59.94)"},
    "vfr": {"type": ["boolean", "null"],
            "description": "variable frame rate: the timecodes are nominal"},
}
