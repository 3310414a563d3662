"""The ``screen`` word source: text on screen (lower thirds, captions, signs) read with RapidOCR
(PP-OCR detection and recognition models shipped in its wheel, run by onnxruntime) on frames
sampled at the source's own rate (``words.screen.every_s``).

A cheap pre-check keeps most frames away from the full reading: a frame unchanged since the
last one read has the same text, a frame without text-like edges has none (``textcheck``),
and a frame in which the text detector, run alone on a small copy (``precheck_det_side``),
finds no box has none either (on footage without captions this last step decides most frames).
Readings of the same line on consecutive frames (equal once normalised, or nearly) are merged
into one timed segment whose confidence is the mean recognition score."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from indexer.media import MediaError, Sampler, probe
from indexer.taggers.base import RuntimeContext
from indexer.words.base import WordExtractor, WordsError, episode_range, settings_hash
from indexer.words.registry import register_word_extractor
from indexer.words.textcheck import TextPrecheck, normalise_line, similar
from tvindex.core.records import EpisodeRecord
from tvindex.core.words import TextSegment
from tvindex.settings.words import ScreenWordSettings

# Frames are read at most this large (longest side); the detector scales them further.
READ_MAX_SIDE = 1920


@dataclass
class _OpenLine:
    start_s: float
    last_s: float
    key: str
    readings: Counter = field(default_factory=Counter)
    scores: list[float] = field(default_factory=list)

    def segment(self, end_s: float) -> TextSegment:
        text = self.readings.most_common(1)[0][0]
        conf = float(np.mean(self.scores)) if self.scores else None
        return TextSegment(self.start_s, end_s, "screen", text, None,
                           None if conf is None else round(conf, 4))


class LineTracker:
    """Turns per-frame readings into timed lines: a line stays open while consecutive frames
    read it (or a near-identical text) and closes at the first frame without it."""

    def __init__(self, similarity: float) -> None:
        self.similarity = similarity
        self.open: list[_OpenLine] = []
        self.done: list[TextSegment] = []

    def see(self, t: float, lines: list[tuple[str, float]]) -> None:
        matched: set[int] = set()
        for text, score in lines:
            key = normalise_line(text)
            line = next((o for i, o in enumerate(self.open) if i not in matched
                         and similar(o.key, key, self.similarity)), None)
            if line is None:
                line = _OpenLine(t, t, key)
                self.open.append(line)
            matched.add(self.open.index(line))
            line.last_s = t
            line.readings[text] += 1
            line.scores.append(score)
        keep = []
        for i, line in enumerate(self.open):
            if i in matched:
                keep.append(line)
            else:
                self.done.append(line.segment(t))
        self.open = keep

    def finish(self, end_s: float) -> list[TextSegment]:
        for line in self.open:
            self.done.append(line.segment(max(end_s, line.last_s)))
        self.open = []
        return sorted(self.done, key=lambda s: (s.start_s, s.end_s, s.text))


class OcrEngine:
    """RapidOCR with our settings (no angle classifier: broadcast text is upright)."""

    def __init__(self, cfg: ScreenWordSettings) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise WordsError(f"screen: rapidocr is not installed ({exc})") from None
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        try:
            self.engine = RapidOCR(params={
                "Global.log_level": "error", "Global.use_cls": False,
                "Global.text_score": cfg.min_confidence,
                "Det.limit_type": "max", "Det.limit_side_len": cfg.det_max_side,
                "EngineConfig.onnxruntime.intra_op_num_threads": cfg.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        except Exception as exc:  # noqa: BLE001 (a model file or runtime problem, any type)
            raise WordsError(f"screen: the OCR models cannot be loaded ({exc})") from None
        self.min_confidence = cfg.min_confidence
        self.quick = None
        if cfg.precheck and cfg.precheck_det_side < cfg.det_max_side:
            try:
                self.quick = RapidOCR(params={
                    "Global.log_level": "error", "Global.use_cls": False,
                    "Det.limit_type": "max", "Det.limit_side_len": cfg.precheck_det_side,
                    "EngineConfig.onnxruntime.intra_op_num_threads": cfg.threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1})
            except Exception as exc:  # noqa: BLE001 (as above)
                raise WordsError(f"screen: the OCR models cannot be loaded ({exc})") from None

    def detects_text(self, image: np.ndarray) -> bool:
        """The pre-check's last step: the text detector alone on a small copy of the frame
        (``precheck_det_side``); True when it finds any text box (or there is no such
        step)."""
        if self.quick is None:
            return True
        result = self.quick(np.ascontiguousarray(image[:, :, ::-1]), use_det=True,
                            use_cls=False, use_rec=False)
        return result.boxes is not None and len(result.boxes) > 0

    def read(self, image: np.ndarray) -> list[tuple[str, float]]:
        """The lines read in an RGB image, top to bottom, with their scores."""
        result = self.engine(np.ascontiguousarray(image[:, :, ::-1]))  # RapidOCR wants BGR
        if result.txts is None or result.boxes is None:
            return []
        rows = sorted(zip(result.boxes, result.txts, result.scores, strict=True),
                      key=lambda r: (float(np.min(r[0][:, 1])), float(np.min(r[0][:, 0]))))
        return [(" ".join(t.split()), float(s)) for _, t, s in rows
                if float(s) >= self.min_confidence and t.strip()]


@register_word_extractor("screen")
class ScreenTextExtractor(WordExtractor):
    """On-screen text lines as timed segments."""

    def __init__(self, cfg: ScreenWordSettings | None = None,
                 ctx: RuntimeContext | None = None) -> None:
        self.cfg = cfg or ScreenWordSettings()
        self._engine: OcrEngine | None = None
        self.version = f"screen:rapidocr-ppocrv6:{settings_hash(self.cfg)}"
        self.sampler = Sampler("interval", self.cfg.every_s, max_side=READ_MAX_SIDE)
        self.stats = Counter()
        self.seconds = {"ocr": 0.0, "precheck": 0.0, "total": 0.0}

    def engine(self) -> OcrEngine:
        if self._engine is None:
            self._engine = OcrEngine(self.cfg)
        return self._engine

    def lines_in(self, image: np.ndarray) -> list[tuple[str, float]]:
        """OCR one frame, keeping lines long enough to mean something."""
        t0 = time.perf_counter()
        lines = self.engine().read(image)
        self.seconds["ocr"] += time.perf_counter() - t0
        self.stats["ocr"] += 1
        return [(t, s) for t, s in lines if len(normalise_line(t)) >= self.cfg.min_chars]

    def extract(self, episode: EpisodeRecord) -> list[TextSegment]:
        self.engine()
        start, end = episode_range(episode)
        t_start = time.perf_counter()
        tracker = LineTracker(self.cfg.merge_similarity)
        check = TextPrecheck() if self.cfg.precheck else None
        t_end = start
        try:
            info = probe(episode.media_path)
            for frame in self.sampler.frames(episode.media_path, info, start, end):
                self.stats["frames"] += 1
                t_end = frame.time_s
                if check is not None:
                    t0 = time.perf_counter()
                    verdict = check.verdict(frame.image)
                    if verdict == "read" and not self.engine().detects_text(frame.image):
                        verdict = "no_text_detected"
                        check.remember(frame.image, [])
                    self.seconds["precheck"] += time.perf_counter() - t0
                    if verdict != "read":
                        self.stats[f"skipped_{verdict}"] += 1
                        tracker.see(frame.time_s, check.lines if verdict == "unchanged" else [])
                        continue
                lines = self.lines_in(frame.image)
                if check is not None:
                    check.remember(frame.image, lines)
                tracker.see(frame.time_s, lines)
            duration_end = info.duration_s if end is None else min(end, info.duration_s)
        except MediaError as exc:
            raise WordsError(f"screen: {exc.reason}") from None
        finally:
            self.seconds["total"] += time.perf_counter() - t_start
        return tracker.finish(max(min(t_end + self.cfg.every_s, duration_end), t_end))

    def cost(self) -> dict[str, float]:
        frames = self.stats["frames"]
        skipped = (self.stats["skipped_unchanged"] + self.stats["skipped_no_text"]
                   + self.stats["skipped_no_text_detected"])
        return {"frames": frames, "ocr_frames": self.stats["ocr"],
                "skipped_unchanged": self.stats["skipped_unchanged"],
                "skipped_no_text": self.stats["skipped_no_text"],
                "skipped_no_text_detected": self.stats["skipped_no_text_detected"],
                "skip_rate": round(skipped / frames, 3) if frames else 0.0,
                "ms_per_frame": round(1000 * self.seconds["total"] / frames, 1) if frames else 0.0,
                "seconds": round(self.seconds["total"], 2)}
