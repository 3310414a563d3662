"""How well a student reproduces its teachers on a split of the transfer set, and how fast it
is against them on the same frames and machine.

Per head: top-1 agreement (thesis 5.3.1) and nDCG@k of the student's label ranking with the
teacher's probabilities as graded relevance (``metrics.py`` says which gain). Metrics are
accumulated batch by batch, so a split of any size streams.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer.taggers.base import Tagger
from indexer.taggers.preprocess import to_chw_float
from indexer.taggers.student import StudentNet, preprocess
from training.distill.transfer import Row, TransferSet
from training.evaluation.metrics import ndcg_at_k, top1_agreement
from tvindex.core.labels import LabelSet

Predict = Callable[[list[np.ndarray]], dict[str, np.ndarray]]


def model_predictor(model: StudentNet, image_size: int, resize: str,
                    mean: Sequence[float], std: Sequence[float], device: torch.device,
                    batch_size: int = 64, amp_dtype: torch.dtype | None = None) -> Predict:
    """A ``frames -> {label set: logits}`` function for a model in memory, with exactly the
    student tagger's preprocessing (used for validation during training)."""

    def predict(frames: list[np.ndarray]) -> dict[str, np.ndarray]:
        was_training = model.training
        model.eval()
        out: dict[str, list[np.ndarray]] = {}
        try:
            for start in range(0, len(frames), batch_size):
                chunk = [preprocess(f, image_size, resize) for f in frames[start:start + batch_size]]
                x = torch.from_numpy(to_chw_float(chunk, tuple(mean), tuple(std))).to(device)
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), torch.autocast(
                        device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(x)
                for name, v in logits.items():
                    out.setdefault(name, []).append(v.float().cpu().numpy())
        finally:
            model.train(was_training)
        return {k: np.concatenate(v) for k, v in out.items()}

    return predict


class _Accumulator:
    """Running sums of per-frame metrics, per head and per source kind."""

    def __init__(self, label_sets: Sequence[LabelSet], ks: Sequence[int], gain: str) -> None:
        self.label_sets, self.ks, self.gain = tuple(label_sets), tuple(ks), gain
        self.sums: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, kinds: Sequence[str], teacher: dict[str, np.ndarray],
            student: dict[str, np.ndarray]) -> None:
        kinds_arr = np.asarray(kinds)
        for ls in self.label_sets:
            t, s = teacher[ls.name], student[ls.name]
            values = {"top1": top1_agreement(t, s).astype(np.float64)}
            rel = ls.probabilities(t)
            for k in self.ks:
                values[f"ndcg@{k}"] = ndcg_at_k(rel, s, k, self.gain)
            for group in ("all", *sorted(set(kinds))):
                mask = np.ones(len(kinds_arr), bool) if group == "all" else kinds_arr == group
                acc = self.sums.setdefault((ls.name, group), {"frames": 0.0})
                acc["frames"] += float(mask.sum())
                for key, v in values.items():
                    acc[key] = acc.get(key, 0.0) + float(v[mask].sum())

    def result(self) -> dict[str, dict[str, dict[str, float]]]:
        """{label set: {"all" | kind: {frames, top1, ndcg@k...}}} as means."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (name, group), acc in sorted(self.sums.items()):
            n = acc["frames"]
            out.setdefault(name, {})[group] = {
                "frames": int(n), **{k: round(v / n, 4) for k, v in acc.items()
                                     if k != "frames" and n}}
        return out


def evaluate_rows(rows: Iterable[Row], predict: Predict, label_sets: Sequence[LabelSet],
                  ks: Sequence[int] = (5, 10), gain: str = "linear", batch_size: int = 64
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of ``predict`` against the teachers' cached logits, per head and source kind."""
    acc = _Accumulator(label_sets, ks, gain)
    batch: list[Row] = []

    def run() -> None:
        student = predict([r.image() for r in batch])
        teacher = {ls.name: np.stack([r.logits[ls.name] for r in batch]) for ls in label_sets}
        acc.add([r.kind for r in batch], teacher, student)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            run()
    if batch:
        run()
    return acc.result()


def evaluate_tagger(tagger: Tagger, ts: TransferSet, split: str = "test",
                    ks: Sequence[int] = (5, 10), gain: str = "linear", batch_size: int = 64
                    ) -> dict[str, Any]:
    """A student tagger against the teachers on ``split`` (whole frames only, no extra views).
    The tagger's label sets must be the transfer set's (same names and labels)."""
    mine = {ls.name: ls for ls in tagger.label_sets}
    for ls in ts.label_sets:
        if ls.name not in mine or mine[ls.name].labels != ls.labels:
            raise ValueError(f"the student's label set {ls.name!r} differs from the transfer "
                             "set's (trained on other teachers?)")
    t0 = time.perf_counter()
    metrics = evaluate_rows(ts.rows(split), tagger.predict, ts.label_sets, ks, gain, batch_size)
    return {"split": split, "frames": ts.count(split), "gain": gain,
            "sources": len(ts.sources(split)), "heads": metrics,
            "seconds": round(time.perf_counter() - t0, 2)}


def measure_speed(frames: list[np.ndarray], student: Tagger, teachers: Sequence[Tagger],
                  repeats: int = 5) -> dict[str, Any]:
    """Frames per second of the student and of the teachers together, on the same frames.

    Rounds are interleaved (student, then each teacher, then the student again...) after one
    warm-up pass on a few frames, so load from other processes hits both sides alike. Per
    round the ratio teachers' time / student's time is taken; ``ratio`` is the median over
    rounds (robust to a disturbed round), ``ratio_best`` the ratio of the fastest passes
    (each side's least-disturbed run). Frames/s are medians over rounds.
    """
    if not frames:
        raise ValueError("no frames to time")
    warm = frames[: min(4, len(frames))]
    taggers = (student, *teachers)
    for tagger in taggers:
        tagger.predict(warm)
    times: list[list[float]] = [[] for _ in taggers]
    for _ in range(repeats):
        for i, tagger in enumerate(taggers):
            t0 = time.perf_counter()
            tagger.predict(frames)
            times[i].append(time.perf_counter() - t0)
    student_s = times[0]
    teachers_s = [sum(times[i][r] for i in range(1, len(taggers))) for r in range(repeats)]
    names = [t.name if [u.name for u in taggers].count(t.name) == 1 else f"{t.name}#{i}"
             for i, t in enumerate(taggers)]
    n = len(frames)
    return {
        "frames": n,
        "repeats": repeats,
        "student_fps": round(n / statistics.median(student_s), 2),
        "teachers_fps": round(n / statistics.median(teachers_s), 2),
        "per_tagger_fps": {name: round(n / statistics.median(v), 2)
                           for name, v in zip(names, times)},
        "ratio": round(statistics.median(t / s for t, s in zip(teachers_s, student_s)), 3),
        "ratio_best": round(min(teachers_s) / min(student_s), 3),
        "machine": machine(),
    }


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "processor": platform.processor() or platform.machine(),
                            "cuda": torch.cuda.is_available()}
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def checkpoint_path_settings(settings, checkpoint: str | Path):
    """``settings`` with the student tagger pointed at ``checkpoint``."""
    taggers = settings.taggers.model_copy(update={
        "student": settings.taggers.student.model_copy(update={"checkpoint": str(checkpoint)})})
    return settings.model_copy(update={"taggers": taggers})
