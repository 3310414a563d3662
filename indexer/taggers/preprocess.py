"""Image preprocessing shared by the CNN taggers (numpy + OpenCV, no torch)."""

from __future__ import annotations

import cv2
import numpy as np


def center_crop(frame: np.ndarray, size: int, crop_pct: float = 0.875) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8: resize the short side to size / crop_pct and
    cut the centre, as the ImageNet and Places365 evaluation pipelines do."""
    h, w = frame.shape[:2]
    short = round(size / crop_pct)
    scale = short / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


def letterbox(frame: np.ndarray, size: int, pad_value: int = 114) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8: fit the long side, pad the rest with grey
    (Ultralytics' rule), so the detector sees the whole frame undistorted."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(frame, (nw, nh), interpolation=interp)
    out = np.full((size, size, 3), pad_value, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def resize_to_input(frame: np.ndarray, size: int, resize: str = "stretch") -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [size, size, 3] uint8 by the student's resize rule (``stretch``:
    the whole frame; ``center_crop``; ``letterbox``). Shared by the PyTorch and ONNX students,
    so the ONNX one needs no torch."""
    if resize == "stretch":
        h, w = frame.shape[:2]
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
        return cv2.resize(frame, (size, size), interpolation=interp)
    if resize == "center_crop":
        return center_crop(frame, size)
    if resize == "letterbox":
        return letterbox(frame, size)
    raise ValueError(f"resize must be one of stretch, center_crop, letterbox, not {resize!r}")


def to_chw_float(
    images: list[np.ndarray],
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
    std: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """List of [S, S, 3] uint8 -> [B, 3, S, S] float32, scaled to 0..1 then normalised.

    The channels move first while the pixels are still bytes (a quarter of the memory to
    copy) and the arithmetic runs in place: the same operations in the same order as
    ``((x / 255) - mean) / std`` on [B, S, S, 3], so the values are identical, about nine
    times faster than computing on new arrays (a tenth of a millisecond a 192-px frame)."""
    batch = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)).astype(np.float32)
    batch /= np.float32(255.0)
    batch -= np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    batch /= np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return batch
