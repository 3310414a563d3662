"""SubRip (.srt) and WebVTT (.vtt) parsing, and cleaning a cue's text (HTML-like tags, ASS
override blocks). Written here rather than taken from a library: both formats are a few
lines of grammar, and parsing them ourselves lets hostile input (binary garbage, a huge file,
broken timestamps) fail as one :class:`SubtitleFormatError` naming what is wrong, with the
size and cue count bounded, instead of whatever a third-party parser does (pysrt guesses
encodings and swallows errors; webvtt-py raises on the first bad cue)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

MAX_CUES = 200_000
MAX_CUE_CHARS = 2_000
# A cue's end may run past its start by at most this (a 3-hour "cue" is a broken timestamp).
MAX_CUE_S = 600.0


class SubtitleFormatError(ValueError):
    """The text is not a usable subtitle file; the message says why."""


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


_TIME = r"(?:(\d{1,3}):)?([0-5]?\d):([0-5]\d)[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAG = re.compile(r"<[^>\n]{0,200}>")
_ASS_BLOCK = re.compile(r"\{[^}\n]{0,500}\}")
_SPACE = re.compile(r"[ \t\u00a0]+")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def parse_timing(line: str) -> tuple[float, float] | None:
    """``(start, end)`` of a ``00:00:01,000 --> 00:00:02,500`` line; None when it is not one."""
    m = _TIMING.match(line)
    if m is None:
        return None
    g = m.groups()
    return _seconds(*g[:4]), _seconds(*g[4:])


def clean_text(text: str) -> str:
    """A cue's words alone: tags (``<i>``, ``<v Name>``, ``<00:01.000>``), ASS override blocks
    (``{\\an8}``) and ASS line breaks removed, entities decoded, lines joined by one space."""
    text = text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    text = _ASS_BLOCK.sub("", _TAG.sub("", text))
    text = html.unescape(text)
    lines = (_SPACE.sub(" ", ln).strip() for ln in text.splitlines())
    return " ".join(ln for ln in lines if ln)[:MAX_CUE_CHARS]


def decode_text(data: bytes) -> str:
    """Subtitle bytes as text: UTF-8 (with or without BOM), UTF-16 with a BOM, else
    Windows-1252 (older Catalan and Spanish subtitles). Binary data is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SubtitleFormatError(f"bad UTF-16 text ({exc.reason})") from None
    if b"\x00" in data[:65536]:
        raise SubtitleFormatError("binary data, not a text subtitle file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    controls = sum(1 for c in text[:65536] if ord(c) < 32 and c not in "\r\n\t\f")
    if controls > 16:
        raise SubtitleFormatError("binary data, not a text subtitle file")
    return text


def _blocks(text: str) -> list[list[str]]:
    blocks, cur = [], []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.strip():
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


def _cues(blocks: list[list[str]], what: str) -> list[Cue]:
    cues, bad, seen = [], 0, 0
    for block in blocks:
        # The timing line is the first or (after a number / cue identifier) the second line.
        at = next((i for i, ln in enumerate(block[:2]) if "-->" in ln), None)
        if at is None:
            continue
        seen += 1
        times = parse_timing(block[at])
        if times is None or not (0 <= times[0] < times[1] <= times[0] + MAX_CUE_S):
            bad += 1
            continue
        text = clean_text("\n".join(block[at + 1:]))
        if text:
            cues.append(Cue(times[0], times[1], text))
        if len(cues) > MAX_CUES:
            raise SubtitleFormatError(f"more than {MAX_CUES} cues")
    if not cues and (bad or not seen):
        why = f"{bad} cue(s) with bad timestamps" if bad else "no cues"
        raise SubtitleFormatError(f"not a usable {what} file: {why}")
    cues.sort(key=lambda c: (c.start_s, c.end_s))
    return cues


def parse_srt(text: str) -> list[Cue]:
    """The cues of a SubRip file (numbered blocks; cues with bad timestamps are skipped, a
    file without one good cue is an error)."""
    return _cues(_blocks(text), "SubRip")


def parse_vtt(text: str) -> list[Cue]:
    """The cues of a WebVTT file (NOTE, STYLE and REGION blocks skipped)."""
    if not text.lstrip("\ufeff").startswith("WEBVTT"):
        raise SubtitleFormatError("not a WebVTT file: it does not start with WEBVTT")
    blocks = _blocks(text)[1:]  # the header block
    blocks = [b for b in blocks if b[0].split(" ", 1)[0] not in ("NOTE", "STYLE", "REGION")]
    return _cues(blocks, "WebVTT")


def parse_subtitle_bytes(data: bytes, suffix: str) -> list[Cue]:
    """Parse by the file's suffix (``.srt`` or ``.vtt``; a WEBVTT header wins)."""
    text = decode_text(data)
    if text.lstrip("\ufeff").startswith("WEBVTT") or suffix.lower() == ".vtt":
        return parse_vtt(text)
    return parse_srt(text)
