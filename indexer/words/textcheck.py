"""The screen source's cheap pre-check, and how its lines are compared.

Two tests, a few milliseconds a frame, before the text detector (~0.1-0.3 s a frame on a CPU):

- **unchanged**: the frame, shrunk to 160 px wide and cut into 10 x 10 px blocks, differs from
  the last frame read by less than ``change_level`` grey levels in every block. Its text is that
  frame's text. Block-wise rather than a whole-frame mean, so a lower third appearing on a
  still background (a small region, a large change) is never missed.
- **no text**: no text-like line in the frame: strong vertical edges (character strokes) that,
  closed horizontally, make a band at least ``min_aspect`` times as wide as it is high, 4 to
  80 px high at 640 px wide (text 8 px or more in a 1280-px frame), and dense in edges.
  Pictures of fences or foliage can pass (the detector then finds nothing); what this test
  must never do is drop a frame with a caption, which the tests check. A frame with strong
  edges nearly everywhere (``busy``: foliage, noise) cannot be told apart and is read.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

import cv2
import numpy as np

_WORDCHARS = re.compile(r"[^\w]+")


def normalise_line(text: str) -> str:
    """Case, accents' composition, punctuation and spacing folded: the key two readings of
    one line share."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORDCHARS.sub(" ", text).split())


def similar(a: str, b: str, threshold: float) -> bool:
    """Whether two normalised lines are the same line read twice."""
    if a == b:
        return True
    if threshold >= 1.0 or not a or not b:
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold


def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    if w == width:
        return gray
    return cv2.resize(gray, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def block_change(a: np.ndarray, b: np.ndarray, block: int = 10) -> float:
    """The largest mean absolute difference over ``block`` x ``block`` tiles of two grey
    images of one size."""
    h, w = (a.shape[0] // block) * block, (a.shape[1] // block) * block
    if h == 0 or w == 0:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
    d = cv2.absdiff(a[:h, :w], b[:h, :w]).astype(np.float32)
    return float(d.reshape(h // block, block, w // block, block).mean(axis=(1, 3)).max())


def has_text_lines(image: np.ndarray, *, edge_level: int = 90, min_aspect: float = 2.0,
                   min_density: float = 0.12, busy: float = 0.08) -> bool:
    """Whether an RGB frame holds something shaped like a line of text (see the module)."""
    gray = _shrink(image, 640)
    gx = cv2.convertScaleAbs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3))
    strokes = (gx >= edge_level).astype(np.uint8)
    density = strokes.mean()
    if density < 0.0005:
        return False
    if density > busy:  # edges everywhere (foliage, noise): too busy to tell, so read it
        return True
    closed = cv2.morphologyEx(strokes, cv2.MORPH_CLOSE,
                              cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    _, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    for x, y, w, h, _area in stats[1:]:
        if not (4 <= h <= 80 and w >= 16 and w >= min_aspect * h):
            continue
        if strokes[y:y + h, x:x + w].mean() >= min_density:
            return True
    return False


class TextPrecheck:
    """The pre-check over one episode's frames in time order: :meth:`verdict` says ``read``,
    ``unchanged`` (reuse :attr:`lines`) or ``no_text``; :meth:`remember` keeps the last frame
    read and its lines."""

    def __init__(self, change_level: float = 6.0) -> None:
        self.change_level = change_level
        self._ref: np.ndarray | None = None
        self.lines: list[tuple[str, float]] = []

    def verdict(self, image: np.ndarray) -> str:
        thumb = _shrink(image, 160)
        if (self._ref is not None and self._ref.shape == thumb.shape
                and block_change(thumb, self._ref) < self.change_level):
            return "unchanged"
        if not has_text_lines(image):
            return "no_text"
        return "read"

    def remember(self, image: np.ndarray, lines: list[tuple[str, float]]) -> None:
        self._ref = _shrink(image, 160)
        self.lines = list(lines)
