"""Frames of a source (sampled video frames or a photo), extra random views, and the JPEG coding
frames are stored in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from indexer.media import MediaError, sample_frames
from training.distill.transfer.layout import TransferError
from training.distill.transfer.sources import Source


def _fit_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


def read_image(path: Path) -> np.ndarray:
    """An image file -> [H, W, 3] uint8 RGB; MediaError when unreadable."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(path, "not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def source_frames(source: Source, every_s: float, max_side: int | None
                  ) -> Iterator[tuple[str, float, np.ndarray]]:
    """(frame id, time in seconds, image) for each frame of a source."""
    if source.kind == "image":
        yield source.id, 0.0, _fit_side(read_image(source.path), max_side)
        return
    for f in sample_frames(source.path, "interval", every_s, start_s=source.start_s,
                           end_s=source.end_s, max_side=max_side):
        yield f"{source.id}@{f.time_s:.3f}", f.time_s, f.image


def random_view(image: np.ndarray, rng: np.random.Generator, scale: tuple[float, float]
                ) -> np.ndarray:
    """A random crop (area fraction in ``scale``, the frame's aspect), flipped half the time:
    an extra view that the teachers tag on its own (consistent teaching)."""
    from training.distill.augment import random_resized_crop

    crop = random_resized_crop(image, rng, scale, (0.8, 1.25))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def encode_jpeg(image: np.ndarray, short_side: int, quality: int) -> bytes:
    """RGB -> JPEG bytes, downscaled so the short side is at most ``short_side``."""
    h, w = image.shape[:2]
    if min(h, w) > short_side:
        s = short_side / min(h, w)
        image = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise TransferError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """JPEG bytes -> [H, W, 3] uint8 RGB."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise TransferError("corrupt JPEG in the transfer set")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
