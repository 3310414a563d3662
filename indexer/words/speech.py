"""The ``speech`` word source: faster-whisper (Whisper in CTranslate2) over the episode's
audio, decoded with PyAV for the episode's time range only, at 16 kHz mono.

Voice-activity detection (Silero VAD, inside faster-whisper) skips silence and music, which
is what makes programme audio several times faster than real time on a CPU. The language is
the manifest's ``language`` for the programme, else ``words.speech.language``, else detected.
Episodes without an audio stream have no speech (an empty result, not an error)."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import av
import numpy as np

from indexer.taggers.base import RuntimeContext
from indexer.words.base import WordExtractor, WordsError, episode_range, settings_hash
from indexer.words.registry import register_word_extractor
from tvindex.core.records import EpisodeRecord
from tvindex.core.words import TextSegment, Word
from tvindex.settings.words import SpeechWordSettings

SAMPLE_RATE = 16_000
# What a faster-whisper (CTranslate2) model folder must hold; the vocabulary is .txt or .json.
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")


def find_model_dir(name: str, ctx: RuntimeContext) -> Path:
    """The model folder: ``name`` itself when it is a path, else ``<model_dir>/name``, else
    ``<cache_dir>/name``; a WordsError naming where it looked otherwise."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute() or len(candidate.parts) > 1:
        places = [candidate]
    else:
        places = [Path(d) / name for d in (ctx.models.model_dir, ctx.models.cache_dir) if d]
    for place in places:
        if place.is_dir():
            return place
    looked = ", ".join(str(p) for p in places) or "nowhere (TVINDEX_MODEL_DIR is not set)"
    raise WordsError(f"speech model folder {name!r} not found (looked in {looked}); put a "
                     f"faster-whisper model folder there or set words.speech.model to its path")


def check_model_dir(folder: Path) -> str:
    """The model's identity (a short hash of its configuration and its weights' size, head
    and tail); a WordsError naming the missing files when the folder is incomplete."""
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if not any((folder / f"vocabulary.{ext}").is_file() for ext in ("txt", "json")):
        missing.append("vocabulary.txt (or vocabulary.json)")
    if missing:
        raise WordsError(f"speech model folder {folder} is missing {', '.join(missing)} "
                         f"(a faster-whisper model folder holds model.bin, config.json, "
                         f"tokenizer.json and vocabulary.*)")
    h = hashlib.sha256((folder / "config.json").read_bytes())
    weights = folder / "model.bin"
    size = weights.stat().st_size
    h.update(str(size).encode())
    with open(weights, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def decode_audio(path: str, start_s: float, end_s: float | None
                 ) -> tuple[np.ndarray, float] | None:
    """The audio of ``[start_s, end_s)`` as 16 kHz mono float32, and the time (seconds from
    the first video frame) of its first sample; None when the file has no audio stream.
    A WordsError when the audio cannot be decoded."""
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise WordsError(f"audio: the file cannot be opened ({exc})") from None
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        video = next(iter(container.streams.video), None)
        origin = (float(video.start_time * video.time_base)
                  if video is not None and video.start_time is not None else 0.0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        first: float | None = None
        bad, total, why = 0, 0, ""
        try:
            if start_s > 1.0:
                container.seek(int((start_s + origin - 1.0) / stream.time_base),
                               stream=stream, backward=True)
            for pkt in container.demux(stream):
                if pkt.size:
                    total += 1
                try:
                    frames = stream.decode(pkt)
                except (av.FFmpegError, ValueError) as exc:
                    # A damaged packet is silence of its length, not the end of the audio;
                    # the episode fails only when most of its audio is damaged.
                    bad, why = bad + 1, str(exc)
                    if first is not None and pkt.duration:
                        n = round(float(pkt.duration * pkt.time_base) * SAMPLE_RATE)
                        chunks.append(np.zeros(n, np.float32))
                    continue
                done = False
                for frame in frames:
                    t = (frame.time if frame.time is not None else 0.0) - origin
                    if end_s is not None and t >= end_s:
                        done = True
                        break
                    for out in resampler.resample(frame):
                        if first is None:
                            first = t
                        chunks.append(out.to_ndarray().reshape(-1))
                if done:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            raise WordsError(f"audio: cannot be decoded ({exc})") from None
        if bad and (bad * 2 > total or first is None):
            raise WordsError(f"audio: cannot be decoded ({bad} of {total} packets damaged; "
                             f"{why})")
    if not chunks or first is None:
        return np.zeros(0, np.float32), start_s
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    # Cut to the range: the seek lands on a packet before start_s.
    skip = max(0, round((start_s - first) * SAMPLE_RATE))
    audio, first = audio[skip:], first + skip / SAMPLE_RATE
    if end_s is not None:
        audio = audio[:max(0, round((end_s - first) * SAMPLE_RATE))]
    return audio, first


def _device(cfg: SpeechWordSettings, ctx: RuntimeContext) -> str:
    want = cfg.device if cfg.device != "auto" else ctx.device
    if want.startswith("cuda"):
        return "cuda"
    if want == "auto":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return "cpu"


@register_word_extractor("speech")
class SpeechExtractor(WordExtractor):
    """Speech segments (with word timestamps) from faster-whisper; confidence is
    ``exp(avg_logprob)`` of the segment."""

    def __init__(self, cfg: SpeechWordSettings | None = None,
                 ctx: RuntimeContext | None = None) -> None:
        self.cfg = cfg or SpeechWordSettings()
        self.ctx = ctx or RuntimeContext()
        self._model = None
        self.unavailable: str | None = None
        self.audio_s = 0.0
        self.seconds = 0.0
        try:
            self.model_dir: Path | None = find_model_dir(self.cfg.model, self.ctx)
            model_id = check_model_dir(self.model_dir)
        except (WordsError, OSError) as exc:
            self.model_dir, model_id, self.unavailable = None, "unavailable", str(exc)
        self.version = f"speech:{model_id}:{settings_hash(self.cfg)}"

    def model(self):
        if self.unavailable:
            raise WordsError(self.unavailable)
        if self._model is None:
            from faster_whisper import WhisperModel

            device = _device(self.cfg, self.ctx)
            compute = self.cfg.compute_type
            if compute == "auto":
                compute = "float16" if device == "cuda" else "int8"
            try:
                self._model = WhisperModel(str(self.model_dir), device=device,
                                           compute_type=compute,
                                           cpu_threads=self.cfg.cpu_threads)
            except (RuntimeError, ValueError, OSError) as exc:
                self.unavailable = f"speech model {self.model_dir} cannot be loaded: {exc}"
                raise WordsError(self.unavailable) from None
        return self._model

    def transcribe(self, audio: np.ndarray, offset: float, language: str | None
                   ) -> list[TextSegment]:
        """Segments of 16 kHz mono ``audio`` whose first sample is at ``offset`` seconds."""
        cfg = self.cfg
        try:
            segments, info = self.model().transcribe(
                audio, language=language, beam_size=cfg.beam_size,
                vad_filter=cfg.vad,
                vad_parameters={"min_silence_duration_ms": cfg.min_silence_ms},
                word_timestamps=cfg.word_timestamps, condition_on_previous_text=False)
            segments = list(segments)
        except ValueError as exc:  # e.g. a language Whisper does not know
            raise WordsError(f"speech: {exc}") from None
        lang = language or info.language
        out = []
        for s in segments:
            text = s.text.strip()
            if not text or (s.no_speech_prob > cfg.no_speech_threshold and s.avg_logprob < -1):
                continue
            words = tuple(Word(float(w.start) + offset, float(w.end) + offset, w.word.strip(),
                               round(float(w.probability), 4))
                          for w in (s.words or ()) if w.word.strip())
            conf = min(1.0, math.exp(float(s.avg_logprob)))
            out.append(TextSegment(float(s.start) + offset, float(s.end) + offset, "speech",
                                   text, lang, round(conf, 4), words))
        return out

    def extract(self, episode: EpisodeRecord) -> list[TextSegment]:
        self.model()  # an unusable model is the reason, before any decoding
        start, end = episode_range(episode)
        t0 = time.perf_counter()
        decoded = decode_audio(episode.media_path, start, end)
        if decoded is None or decoded[0].size == 0:
            return []
        audio, offset = decoded
        language = episode.language or self.cfg.language
        segments = self.transcribe(audio, offset, language)
        self.audio_s += audio.size / SAMPLE_RATE
        self.seconds += time.perf_counter() - t0
        return segments

    def cost(self) -> dict[str, float]:
        rtf = self.audio_s / self.seconds if self.seconds else 0.0
        return {"audio_s": round(self.audio_s, 2), "seconds": round(self.seconds, 2),
                "x_real_time": round(rtf, 2)}
