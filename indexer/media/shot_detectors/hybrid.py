"""``hybrid``: ``gradual``'s cheap scores pick the regions worth a closer look, and TransNetV2
runs only on the 50-frame blocks holding them (each from its usual 100-frame window, so its
predictions there are exactly those of ``transnetv2``); blocks with nothing in them count as
no transition. The candidates are deliberately loose (half the cut threshold, a weaker blend
test, any black frame): the network, not the rule, decides."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from indexer.media.shot_detectors import DetectorOptions, ShotDetector, apply_min_shot
from indexer.media.shot_detectors.gradual import DISSOLVE_D, Scores
from indexer.media.shot_detectors.thumbs import tiny_frames
from indexer.media.shot_detectors.transnet import (
    BLOCK,
    TransNetModel,
    block_predictions,
    boundaries,
)
from indexer.media.types import MediaInfo

# a candidate frame flags the blocks within this many frames of it
_REACH = 8
_LOOSE_D, _LOOSE_RATIO = DISSOLVE_D / 2, 0.4


class HybridDetector(ShotDetector):
    """Cheap candidates, TransNetV2 on the blocks around them."""

    name = "hybrid"

    def __init__(self, options: DetectorOptions) -> None:
        super().__init__(options)
        self.model = TransNetModel(options.device)
        self.blocks_run = 0
        self.blocks_total = 0

    def cuts(
        self, path: Path, info: MediaInfo, start: float, end: float, min_shot_s: float
    ) -> list[float]:
        times: list[float] = []
        scores = Scores()
        cut_min = self.options.threshold / 2
        run = total = 0

        def thumbs() -> Iterator[np.ndarray]:
            for t, thumb in tiny_frames(path, info, start, end):
                times.append(t)
                scores.push(thumb)
                yield thumb

        def candidate(i: int) -> bool:
            return (
                scores.cut[i] >= cut_min
                or scores.black[i]
                or scores.dissolving(i, _LOOSE_D, _LOOSE_RATIO)
            )

        def want(b: int) -> bool:
            nonlocal run, total
            n = len(scores.cut) - max(scores.spans)  # frames whose scores are all known
            lo, hi = max(0, b * BLOCK - _REACH), min(n, (b + 1) * BLOCK + _REACH)
            total += 1
            if any(candidate(i) for i in range(lo, hi)):
                run += 1
                return True
            return False

        probs = block_predictions(thumbs(), self.model, want)
        self.blocks_run, self.blocks_total = run, total
        found = [times[i] for i in boundaries(probs, self.options.transition_threshold)]
        return apply_min_shot(found, start, end, min_shot_s)
