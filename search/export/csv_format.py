"""CSV: one row per clip with its timecodes in and out (the episode's clock), frames and the
seconds of the file; UTF-8 with a header row."""

from __future__ import annotations

import csv
import io

from search.export.base import ClipList, Exporter

COLUMNS = ("rank", "shot_id", "programme_id", "programme_title", "episode_id", "episode_title",
           "tc_in", "tc_out", "frame_rate", "drop_frame", "frame_in", "frame_out",
           "duration_frames", "start_s", "end_s", "score", "labels", "media")


class CsvExporter(Exporter):
    name = "csv"
    media_type = "text/csv; charset=utf-8"
    extension = "csv"

    def render(self, clips: ClipList) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for rank, clip in enumerate(clips.clips, 1):
            d = clip.to_dict()
            d.update(rank=rank, labels=" ".join(clip.labels),
                     drop_frame="true" if clip.clock.drop_frame else "false",
                     score="" if clip.score is None else f"{clip.score:.4f}")
            writer.writerow([_safe(d[c]) for c in COLUMNS])
        return out.getvalue().encode("utf-8")


def _safe(value: object) -> object:
    """Text that a spreadsheet would run as a formula (=, +, -, @ first) gets a leading
    apostrophe; numbers are left alone."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
