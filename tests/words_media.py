"""Test media for the word sources, generated on the spot: sentences spoken by espeak-ng
(ca, es, en) muxed with PyAV as the audio of small MP4s (with silent gaps, like programmes),
lower thirds and captions rendered with PIL in several fonts, sizes and backgrounds,
SRT/VTT sidecars and an embedded mov_text stream."""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

AUDIO_RATE = 16_000
FONT_FILES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Oblique.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
]
FONTS = [f for f in FONT_FILES if Path(f).is_file()]
# Background kinds for rendered text: a flat colour, a gradient, and busy noise under a box.
BACKGROUNDS = ("flat", "gradient", "noise")
_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\n"
    b"Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    b"BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    b"BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    b"\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, "
    b"Text\n")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, lang: str, *, speed: int = 150) -> np.ndarray:
    """``text`` spoken by espeak-ng's ``lang`` voice, as 16 kHz mono float32."""
    proc = subprocess.run(["espeak-ng", "-v", lang, "-s", str(speed), "--stdout", text],
                          capture_output=True, check=True, timeout=60)
    import io

    with wave.open(io.BytesIO(proc.stdout)) as w:
        rate, n = w.getframerate(), w.getnframes()
        pcm = np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float32) / 32768.0
    if rate != AUDIO_RATE:  # linear resampling is plenty for speech recognition tests
        t = np.arange(round(len(pcm) * AUDIO_RATE / rate)) * rate / AUDIO_RATE
        pcm = np.interp(t, np.arange(len(pcm)), pcm).astype(np.float32)
    return pcm


@dataclass(frozen=True)
class Utterance:
    start_s: float
    text: str
    lang: str = "en"


@dataclass(frozen=True)
class Overlay:
    """A line of text drawn on the frames of ``[start_s, end_s)``."""

    start_s: float
    end_s: float
    text: str
    font: str = FONTS[0] if FONTS else ""
    size: int = 36
    where: str = "lower"  # lower (a lower third in a box) or caption (centred, no box)


@dataclass
class Clip:
    """What a generated clip holds (the truth the tests compare against)."""

    path: Path
    duration_s: float
    speech: list[tuple[float, float, str, str]] = field(default_factory=list)
    overlays: list[Overlay] = field(default_factory=list)


def background(kind: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    w, h = size
    if kind == "flat":
        return Image.new("RGB", size, (40, 90, 60))
    if kind == "gradient":
        x = np.linspace(0, 1, w)[None, :, None]
        y = np.linspace(0, 1, h)[:, None, None]
        arr = (np.concatenate([80 + 120 * x + 0 * y, 60 + 100 * y + 0 * x,
                               150 - 100 * x + 0 * y], axis=2)).astype(np.uint8)
        return Image.fromarray(arr)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return Image.fromarray(arr).resize(size, Image.NEAREST)


def draw_text(img: Image.Image, overlay: Overlay) -> Image.Image:
    """``overlay`` drawn on a copy of ``img``: a lower third (white on a dark box at the
    bottom left) or a caption (white with a black outline, centred near the bottom)."""
    img = img.copy()
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype(overlay.font, overlay.size)
    left, top, right, bottom = d.textbbox((0, 0), overlay.text, font=font)
    tw, th = right - left, bottom - top
    w, h = img.size
    if overlay.where == "lower":
        x, y = int(w * 0.06), int(h * 0.78)
        d.rectangle([x - 16, y - 12, x + tw + 16, y + th + 16], fill=(15, 25, 110))
        d.text((x - left, y - top), overlay.text, font=font, fill=(255, 255, 255))
    else:
        x, y = (w - tw) // 2, int(h * 0.85) - th
        d.text((x - left, y - top), overlay.text, font=font, fill=(255, 255, 255),
               stroke_width=max(2, overlay.size // 14), stroke_fill=(0, 0, 0))
    return img


def lower_third_frame(text: str, font: str, size: int, bg: str,
                      frame: tuple[int, int] = (1280, 720), where: str = "lower") -> np.ndarray:
    """One 720p frame with a rendered lower third (or caption), as RGB uint8."""
    return np.asarray(draw_text(background(bg, frame, seed=size),
                                Overlay(0, 1, text, font, size, where)))


def make_clip(path: Path, duration_s: float, *, speech: list[Utterance] = (),
              overlays: list[Overlay] = (), size: tuple[int, int] = (640, 360), fps: int = 10,
              bg: str = "gradient", subtitle_stream: list[tuple[float, float, str]] = (),
              subtitle_language: str = "cat", audio: bool = True) -> Clip:
    """An H.264 MP4 of ``duration_s`` seconds: ``overlays`` drawn on a ``bg`` background,
    ``speech`` spoken by espeak-ng at its times in an AAC track (silence elsewhere; no track
    when ``audio`` is False), and ``subtitle_stream`` cues as an embedded mov_text stream."""
    clip = Clip(Path(path), duration_s, overlays=list(overlays))
    track = np.zeros(int(duration_s * AUDIO_RATE), np.float32)
    for u in speech:
        pcm = speak(u.text, u.lang)
        i = int(u.start_s * AUDIO_RATE)
        pcm = pcm[:max(0, len(track) - i)]
        track[i:i + len(pcm)] += pcm
        clip.speech.append((u.start_s, u.start_s + len(pcm) / AUDIO_RATE, u.text, u.lang))
    base = background(bg, size)
    rendered: dict[tuple[int, ...], np.ndarray] = {}
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.options = {"preset": "ultrafast", "g": str(fps)}
        a = None
        if audio:
            a = out.add_stream("aac", rate=AUDIO_RATE)
            a.layout = "mono"
        s = None
        if subtitle_stream:
            s = out.add_stream("mov_text")
            s.codec_context.subtitle_header = _ASS_HEADER
            s.codec_context.time_base = s.time_base = Fraction(1, 1000)
            s.metadata["language"] = subtitle_language
        for i in range(int(duration_s * fps)):
            t = i / fps
            on = tuple(k for k, o in enumerate(overlays) if o.start_s <= t < o.end_s)
            if on not in rendered:
                img = base
                for k in on:
                    img = draw_text(img, overlays[k])
                rendered[on] = np.asarray(img)
            frame = av.VideoFrame.from_ndarray(rendered[on], format="rgb24")
            frame.pts = i
            for pkt in v.encode(frame):
                out.mux(pkt)
        if a is not None:
            for j in range(0, len(track), 1024):
                chunk = track[j:j + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate, af.pts = AUDIO_RATE, j
                for pkt in a.encode(af):
                    out.mux(pkt)
            for pkt in a.encode(None):
                out.mux(pkt)
        if s is not None:
            from av.subtitles.subtitle import SubtitleSet

            for n, (t0, t1, text) in enumerate(subtitle_stream):
                sub = SubtitleSet.create(f"{n},0,Default,,0,0,0,,{text}".encode(), 0,
                                         int((t1 - t0) * 1000), pts=int(t0 * 1_000_000))
                pkt = s.codec_context.encode_subtitle(sub)
                pkt.stream, pkt.time_base = s, Fraction(1, 1000)
                pkt.pts = pkt.dts = int(t0 * 1000)
                pkt.duration = int((t1 - t0) * 1000)
                out.mux(pkt)
        for pkt in v.encode(None):
            out.mux(pkt)
    return clip


def _stamp(t: float, sep: str) -> str:
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def write_srt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    path.write_text("".join(f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{t}\n\n"
                            for i, (a, b, t) in enumerate(cues, 1)), encoding="utf-8")
    return path


def write_vtt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    path.write_text("WEBVTT\n\n" + "".join(f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{t}\n\n"
                                           for a, b, t in cues), encoding="utf-8")
    return path
