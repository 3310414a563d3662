"""CMX 3600 edit decision list: one video cut per clip.

Source in/out are timecodes in the clip's episode's clock (its rate and start timecode;
drop-frame with ``;`` at 29.97 and 59.94, announced by ``FCM: DROP FRAME``); the record side
runs continuously from 01:00:00:00 at the first clip's rate. The reel is the episode id (up to
32 characters of ``A-Z a-z 0-9 _``), ``* FROM CLIP NAME`` names the shot and its programme and
episode, ``* FROM FILE`` the media (path or URL). Events are numbered 001 to 999 (then four
digits). A list mixing frame rates is written, but an EDL has no per-event rate: read such a
list at each event's rate (``* FRAME RATE`` comments) or use OTIO.
"""

from __future__ import annotations

import re
from fractions import Fraction

from search.export.base import ClipList, Exporter
from tvindex.core.timecode import Timebase, format_rate

RECORD_START = "01:00:00:00"


def _text(value: str, limit: int = 200) -> str:
    """One line of printable text (EDLs are line-oriented)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:limit]


def reel_name(episode_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", episode_id)[:32] or "AX"


class EdlExporter(Exporter):
    name = "edl"
    media_type = "text/plain; charset=utf-8"  # no registered type for CMX 3600
    extension = "edl"

    def render(self, clips: ClipList) -> bytes:
        lines = [f"TITLE: {_text(clips.title, 70)}"]
        if not clips.clips:
            lines.append("FCM: NON-DROP FRAME")
            return ("\n".join(lines) + "\n").encode("utf-8")
        first = clips.clips[0].clock
        record = Timebase.of(first.frame_rate, RECORD_START, first.drop_frame)
        rec_rate: Fraction = record.rate
        drop = first.drop_frame
        lines.append(f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}")
        position = 0  # record frames since RECORD_START
        for number, clip in enumerate(clips.clips, 1):
            if clip.clock.drop_frame != drop:
                drop = clip.clock.drop_frame
                lines.append(f"FCM: {'DROP FRAME' if drop else 'NON-DROP FRAME'}")
            source = clip.clock.timebase
            length = clip.duration_frames
            if clip.rate != rec_rate:  # the same duration in record frames
                length = max(1, round(Fraction(length) * rec_rate / clip.rate))
            lines.append("")
            lines.append(
                f"{number:03d}  {reel_name(clip.episode_id):<8} V     C        "
                f"{source.label(clip.in_frame)} {source.label(clip.out_frame)} "
                f"{record.label(position)} {record.label(position + length)}")
            position += length
            title = " - ".join(t for t in (clip.programme_title, clip.episode_title) if t)
            lines.append(f"* FROM CLIP NAME: {_text(clip.shot_id + ' ' + title)}")
            lines.append(f"* FROM FILE: {_text(clip.media, 1000)}")
            note = f"* TVINDEX SHOT {_text(clip.shot_id)}"
            if clip.score is not None:
                note += f" SCORE {clip.score:.4f}"
            if clip.labels:
                note += " LABELS " + _text(" ".join(clip.labels))
            lines.append(note)
            if clip.rate != rec_rate:
                lines.append(f"* FRAME RATE: {format_rate(clip.rate)}")
        return ("\n".join(lines) + "\n").encode("utf-8")
