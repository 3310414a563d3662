"""``gradual``: hard cuts, dissolves and fades from cheap scores on 48x27 thumbnails, no
network (CPU, decoding-bound).

Per frame ``i`` (thumbnails ``x``, RGB, mean absolute differences over pixels and channels):

- **cut**: PySceneDetect ContentDetector's score between ``x[i-1]`` and ``x[i]`` (HSV);
  ``>= threshold`` is a cut, as in ``content``.
- **dissolve**: during a dissolve each frame is a blend of the two shots, so a frame ``m`` in
  it lies half-way between the frames ``k`` before and after it: ``e = |x[m] - (x[m-k] +
  x[m+k]) / 2|`` is small next to ``d = |x[m+k] - x[m-k]|``. Camera moves and cuts are not
  linear blends (a cut gives ``e = d/2``; a pan gives a double image), so ``d >= DISSOLVE_D``
  with ``e <= DISSOLVE_RATIO * d`` for some ``k`` in ``SPANS`` marks frame ``m``; a run of
  marked frames is one dissolve, its boundary at the run's middle. Fades to or from black are
  blends with black and are marked the same way.
- **fade**: a run of black frames (mean below ``BLACK_MEAN``, little spread) is a boundary at
  its middle; the fade out and fade in around it join it.

Events closer than ``MERGE_GAP`` frames are one transition, placed at the black run if there is
one, else at the cut, else at the dissolve's middle. Memory: ``2 * max(SPANS) + 1``
thumbnails and a few numbers per frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from indexer.media.shot_detectors import ShotDetector, apply_min_shot
from indexer.media.shot_detectors.thumbs import tiny_frames
from indexer.media.types import MediaInfo

SPANS = (4, 6, 9)
DISSOLVE_D = 30.0
DISSOLVE_RATIO = 0.25
MIN_DISSOLVE_RUN = 2
BLACK_MEAN = 14.0
BLACK_STD = 10.0
MERGE_GAP = 10


@dataclass
class Scores:
    """The cheap per-frame scores of a stream of thumbnails (see the module's docstring)."""

    spans: tuple[int, ...] = SPANS
    cut: list[float] = field(default_factory=list)
    black: list[bool] = field(default_factory=list)
    # per centre frame m and span k (in ``spans`` order): (d, e / d); (0, 1) when unknown
    blend: list[list[tuple[float, float]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ring: deque[np.ndarray] = deque(maxlen=2 * max(self.spans) + 1)
        self._prev_hsv: np.ndarray | None = None

    def push(self, thumb: np.ndarray) -> None:
        hsv = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)
        prev = self._prev_hsv
        self.cut.append(0.0 if prev is None else sum(cv2.mean(cv2.absdiff(hsv, prev))[:3]) / 3)
        self._prev_hsv = hsv
        x = thumb.astype(np.float32)
        mean, std = cv2.meanStdDev(cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY))
        self.black.append(float(mean[0, 0]) < BLACK_MEAN and float(std[0, 0]) < BLACK_STD)
        self._ring.append(x)
        self.blend.append([(0.0, 1.0)] * len(self.spans))
        i = len(self.cut) - 1
        ring = self._ring
        for j, k in enumerate(self.spans):
            m = i - k
            if m - k < 0:
                continue
            a, b = ring[-1 - 2 * k], ring[-1 - k]
            d = float(cv2.norm(x, a, cv2.NORM_L1)) / x.size
            if d > 0:
                e = float(cv2.norm(b, (a + x) * 0.5, cv2.NORM_L1)) / x.size
                self.blend[m][j] = (d, e / d)

    def dissolving(self, m: int, d_min: float = DISSOLVE_D, ratio: float = DISSOLVE_RATIO) -> bool:
        return any(d >= d_min and r <= ratio for d, r in self.blend[m])


def _runs(flags: list[bool], min_len: int = 1) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of True."""
    i, n = 0, len(flags)
    while i < n:
        if flags[i]:
            j = i
            while j + 1 < n and flags[j + 1]:
                j += 1
            if j - i + 1 >= min_len:
                yield i, j
            i = j + 1
        else:
            i += 1


def transition_frames(scores: Scores, threshold: float) -> list[int]:
    """The frames starting new shots, from the scores of a whole range."""
    n = len(scores.cut)
    # events: (first frame, last frame, boundary frame, priority)
    events: list[tuple[int, int, int, int]] = []
    for i in range(1, n):
        if scores.cut[i] >= threshold:
            events.append((i - 1, i, i, 2))
    for a, b in _runs(scores.black):
        events.append((a, b, (a + b + 1) // 2, 3))
    dissolving = [scores.dissolving(m) for m in range(n)]
    for a, b in _runs(dissolving, MIN_DISSOLVE_RUN):
        events.append((a, b, (a + b + 1) // 2, 1))
    events.sort()
    starts: list[int] = []
    group: list[tuple[int, int, int, int]] = []
    for ev in [*events, None]:
        if group and (ev is None or ev[0] > max(g[1] for g in group) + MERGE_GAP):
            best = max(group, key=lambda g: (g[3], -g[0]))
            if 0 < best[2] < n:
                starts.append(best[2])
            group = []
        if ev is not None:
            group.append(ev)
    return starts


class GradualDetector(ShotDetector):
    """Cuts, dissolves and fades from cheap scores (no network)."""

    name = "gradual"

    def cuts(
        self, path: Path, info: MediaInfo, start: float, end: float, min_shot_s: float
    ) -> list[float]:
        times: list[float] = []
        scores = Scores()
        for t, thumb in tiny_frames(path, info, start, end):
            times.append(t)
            scores.push(thumb)
        found = [times[i] for i in transition_frames(scores, self.options.threshold)]
        return apply_min_shot(found, start, end, min_shot_s)
