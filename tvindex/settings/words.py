"""The ``words`` section: which word sources ``tvindex index`` runs after the pictures, and
each source's own settings (``indexer/words/``; docs/words.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tvindex.settings.base import _Section

WordSource = Literal["subtitles", "speech", "screen"]
_LANG = r"^[a-z]{2,3}$"


class SubtitlesWordSettings(_Section):
    """Subtitle cues: sidecar files next to the media, the manifest's ``subtitles`` column,
    and text subtitle streams inside the media."""

    sidecars: bool = True
    embedded: bool = True
    # A subtitle file larger than this is refused (recorded as the source's error).
    max_file_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=1 << 30)
    # Language of cues whose file name, stream and manifest row name none (null: unknown).
    default_language: str | None = Field(None, pattern=_LANG)


class SpeechWordSettings(_Section):
    """Speech to text with faster-whisper (CTranslate2)."""

    # A faster-whisper model folder (model.bin, config.json, tokenizer.json,
    # vocabulary.*): a bare name is looked for in paths.model_dir, then paths.cache_dir; a
    # path is used as it is.
    model: str = "faster-whisper-base"
    # auto: CUDA when CTranslate2 sees a GPU, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: int8 on CPU, float16 on CUDA.
    compute_type: Literal["auto", "int8", "int8_float16", "float16", "float32"] = "auto"
    # CPU threads for CTranslate2 (0: its default).
    cpu_threads: int = Field(0, ge=0, le=256)
    # Voice-activity detection (Silero VAD): silence and music are skipped, not transcribed.
    vad: bool = True
    # Silences at least this long split the speech into separate chunks.
    min_silence_ms: int = Field(500, ge=50, le=10_000)
    # 5 = faster-whisper's default beam search; 1 = greedy decoding, about a quarter faster
    # but less accurate (bench/words.py: English WER 0.10 with 5, 0.18 with 1).
    beam_size: int = Field(5, ge=1, le=10)
    word_timestamps: bool = True
    # Used when the manifest names no language for the programme; null: detected per episode.
    language: str | None = Field(None, pattern=_LANG)
    # Segments Whisper itself thinks are not speech (no_speech_prob above this and a low
    # average log probability) are dropped.
    no_speech_threshold: float = Field(0.6, ge=0, le=1)


class ScreenWordSettings(_Section):
    """On-screen text with RapidOCR (PP-OCR detection + recognition, onnxruntime)."""

    # Seconds between the frames read for text (its own sampling, not the pictures').
    every_s: float = Field(1.0, gt=0, le=3600)
    # The detector sees frames scaled so their longest side is at most this.
    det_max_side: int = Field(960, ge=320, le=4096)
    # The cheap pre-check: skip frames with no text-like edges, and frames unchanged since
    # the last frame read (their text is the same).
    precheck: bool = True
    # The pre-check's last step runs the text detector alone on frames scaled to this longest
    # side (cheap); only frames where it finds text are read in full.
    precheck_det_side: int = Field(640, ge=160, le=4096)
    # Lines read with a lower recognition score are dropped.
    min_confidence: float = Field(0.6, ge=0, le=1)
    # Lines shorter than this (characters, after normalising) are dropped.
    min_chars: int = Field(2, ge=1, le=100)
    # Two readings of a line on consecutive frames are one segment when their normalised
    # texts are at least this similar (1 = identical only).
    merge_similarity: float = Field(0.85, ge=0.5, le=1)
    threads: int = Field(2, ge=1, le=256)


class WordsSettings(_Section):
    # The word sources `tvindex index` runs after the pictures (an empty list: none). The
    # screen source is opt-in: ~0.1 s per frame read, ~5 minutes of OCR per hour of video at
    # one frame a second on an idle 2-core CPU, several times that under load (docs/words.md).
    enabled: list[WordSource] = Field(default_factory=lambda: ["subtitles", "speech"])
    subtitles: SubtitlesWordSettings = Field(default_factory=SubtitlesWordSettings)
    speech: SpeechWordSettings = Field(default_factory=SpeechWordSettings)
    screen: ScreenWordSettings = Field(default_factory=ScreenWordSettings)

    @field_validator("enabled")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists a source twice")
        return v

    def for_source(self, name: str) -> _Section:
        """The settings section of the word source ``name``."""
        return getattr(self, name)
