"""The ``subtitles`` word source: cues from sidecar files next to the media (``NAME.srt``,
``NAME.ca.vtt``, ...), the files the manifest's ``subtitles`` column names, and the text
subtitle streams inside the media (mov_text, subrip, webvtt, ass/ssa), read with PyAV.

Language: the file name's tag (``NAME.ca.srt``), the stream's ``language`` metadata, else the
manifest's ``language``, else ``default_language``. Cues are clipped to the episode's time
range (episodes are time ranges of files). Times are seconds from the file's first video frame,
the clock of the episode's shots."""

from __future__ import annotations

import hashlib
import os
import re
from fractions import Fraction
from pathlib import Path

import av

from indexer.taggers.base import RuntimeContext
from indexer.words.base import (
    WordExtractor,
    WordsError,
    clip_segment,
    episode_range,
    settings_hash,
)
from indexer.words.registry import register_word_extractor
from indexer.words.subtitle_formats import (
    Cue,
    SubtitleFormatError,
    clean_text,
    parse_subtitle_bytes,
)
from tvindex.core.records import EpisodeRecord
from tvindex.core.words import TextSegment
from tvindex.settings.words import SubtitlesWordSettings

SIDECAR_SUFFIXES = (".srt", ".vtt")
TEXT_CODECS = {"mov_text", "subrip", "srt", "webvtt", "ass", "ssa", "text"}
# ISO 639-2 (B and T) codes of the languages a broadcaster meets most, to ISO 639-1.
_ISO639_2 = {"cat": "ca", "spa": "es", "eng": "en", "fra": "fr", "fre": "fr", "deu": "de",
             "ger": "de", "ita": "it", "por": "pt", "eus": "eu", "baq": "eu", "glg": "gl",
             "oci": "oc", "nld": "nl", "dut": "nl", "ara": "ar", "zho": "zh", "chi": "zh",
             "rus": "ru", "jpn": "ja", "pol": "pl", "ron": "ro", "rum": "ro"}
_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{2,8})?$")


def language_code(tag: str | None) -> str | None:
    """``ca``, ``cat``, ``es-ES``, ``spa`` -> ``ca``/``es``; None for none or ``und``."""
    m = _TAG.match((tag or "").strip())
    if m is None:
        return None
    code = m.group(1).lower()
    if code in ("und", "mul", "zxx", "mis"):
        return None
    return _ISO639_2.get(code, code)


def find_sidecars(media_path: str | os.PathLike[str]) -> list[tuple[Path, str | None]]:
    """Subtitle files next to the media: ``NAME.srt`` / ``NAME.vtt`` and ``NAME.<lang>.srt``
    (``<lang>``: ca, es-ES, cat, ...), each with the language its name gives (None: none)."""
    media = Path(media_path)
    stem, found = media.stem, []
    try:
        names = sorted(os.listdir(media.parent))
    except OSError:
        return []
    for name in names:
        path = media.parent / name
        suffix = path.suffix.lower()
        if suffix not in SIDECAR_SUFFIXES or not name.startswith(stem + "."):
            continue
        middle = name[len(stem) + 1:-len(suffix)]
        if middle and _TAG.match(middle) is None:
            continue
        if path.is_file():
            found.append((path, language_code(middle) if middle else None))
    return found


def _video_origin(container) -> float:
    """The first video frame's time (the shots' zero), in seconds of the container."""
    for stream in container.streams.video:
        if stream.start_time is not None and stream.time_base is not None:
            return float(stream.start_time * stream.time_base)
    return 0.0


def _stream_cues(container, stream, origin: float) -> list[Cue]:
    cues: list[Cue] = []
    for pkt in container.demux(stream):
        if pkt.size == 0 or pkt.pts is None:
            continue
        tb = pkt.time_base or stream.time_base or Fraction(1, 1000)
        start = float(pkt.pts * tb) - origin
        end = start + float((pkt.duration or 0) * tb)
        texts = []
        for sub in stream.decode(pkt):
            rects = sub if hasattr(sub, "__len__") and not hasattr(sub, "dialogue") else [sub]
            for rect in rects:
                raw = getattr(rect, "dialogue", b"") or getattr(rect, "text", b"")
                if raw:
                    texts.append(raw.decode("utf-8", errors="replace"))
        text = clean_text("\n".join(texts))
        if text and end > start >= 0:
            cues.append(Cue(start, end, text))
    return cues


def embedded_cues(path: str | os.PathLike[str]) -> list[tuple[list[Cue], str | None, str]]:
    """The cues of every text subtitle stream in the media: ``(cues, language, codec)``.
    Bitmap subtitles (DVD, PGS, DVB) are not text and are left out."""
    out = []
    with av.open(str(path), metadata_errors="ignore") as container:
        origin = _video_origin(container)
        streams = [s for s in container.streams.subtitles
                   if s.codec_context is not None and s.codec_context.name in TEXT_CODECS]
        for stream in streams:
            container.seek(0)
            lang = language_code((stream.metadata or {}).get("language"))
            out.append((_stream_cues(container, stream, origin), lang, stream.codec_context.name))
    return out


def _has_subtitle_streams(path: str) -> bool:
    with av.open(path, metadata_errors="ignore") as container:
        return bool(container.streams.subtitles)


@register_word_extractor("subtitles")
class SubtitleExtractor(WordExtractor):
    """Subtitle cues as timed text segments (confidence 1: they are what was written)."""

    def __init__(self, cfg: SubtitlesWordSettings | None = None,
                 ctx: RuntimeContext | None = None) -> None:
        self.cfg = cfg or SubtitlesWordSettings()
        self.version = f"subtitles:1:{settings_hash(self.cfg)}"

    def _files(self, episode: EpisodeRecord) -> list[tuple[Path, str | None]]:
        files = [(Path(p), language_code(Path(p).suffixes[-2][1:])
                  if len(Path(p).suffixes) >= 2 else None) for p in episode.subtitles]
        if self.cfg.sidecars:
            named = {f for f, _ in files}
            files += [(f, lang) for f, lang in find_sidecars(episode.media_path)
                      if f not in named]
        return files

    def episode_version(self, episode: EpisodeRecord) -> str:
        """The settings, and each subtitle file's name, size and modification time."""
        h = hashlib.sha256()
        for path, _ in self._files(episode):
            try:
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}|missing\n".encode())
        return f"{self.version}:{h.hexdigest()[:12]}"

    def _read(self, path: Path) -> list[Cue]:
        try:
            size = path.stat().st_size
            if size > self.cfg.max_file_bytes:
                raise WordsError(f"subtitle file {path.name}: {size} bytes, more than "
                                 f"words.subtitles.max_file_bytes ({self.cfg.max_file_bytes})")
            data = path.read_bytes()
        except OSError as exc:
            raise WordsError(f"subtitle file {path}: cannot read ({exc.strerror or exc})"
                             ) from None
        try:
            return parse_subtitle_bytes(data, path.suffix)
        except SubtitleFormatError as exc:
            raise WordsError(f"subtitle file {path.name}: {exc}") from None

    def extract(self, episode: EpisodeRecord) -> list[TextSegment]:
        default = episode.language or self.cfg.default_language
        tracks: list[tuple[list[Cue], str | None]] = [
            (self._read(path), lang) for path, lang in self._files(episode)]
        if self.cfg.embedded and _safe_has_streams(episode.media_path):
            try:
                tracks += [(cues, lang) for cues, lang, _ in embedded_cues(episode.media_path)]
            except (av.FFmpegError, OSError, UnicodeError) as exc:
                raise WordsError(f"embedded subtitles: cannot be read ({exc})") from None
        start, end = episode_range(episode)
        seen, segments = set(), []
        for cues, lang in tracks:
            for cue in cues:
                seg = clip_segment(TextSegment(cue.start_s, cue.end_s, "subtitles", cue.text,
                                               lang or default, 1.0), start, end)
                key = (round(cue.start_s, 2), round(cue.end_s, 2), cue.text, seg and seg.language)
                if seg is not None and key not in seen:
                    seen.add(key)
                    segments.append(seg)
        segments.sort(key=lambda s: (s.start_s, s.end_s, s.text))
        return segments


def _safe_has_streams(path: str) -> bool:
    """Whether the media has subtitle streams; a file PyAV cannot open has none here (the
    picture pass reports what is wrong with it)."""
    try:
        return _has_subtitle_streams(path)
    except (av.FFmpegError, OSError):
        return False
