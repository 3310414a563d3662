"""Training-time augmentation of cached frames, for broadcast footage (numpy + OpenCV).

The teachers' logits were computed once on the whole frame, so augmentations must keep what
the teachers saw: crops stay large (objects at the edges may be lost otherwise), colours move
as grading and white balance do between programmes, and the degradations are the ones
broadcast frames carry: defocus/motion blur, compression artefacts, letterbox or pillarbox
bars when 4:3 and 16:9 material meet.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from indexer.taggers.student import preprocess
from training.distill.config import AugmentConfig


def random_resized_crop(image: np.ndarray, rng: np.random.Generator,
                        scale: tuple[float, float], ratio: tuple[float, float]) -> np.ndarray:
    """A crop covering ``scale`` of the area whose aspect ratio is the frame's own times a
    factor in ``ratio`` (log-uniform); falls back to the whole frame."""
    h, w = image.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = (w / h) * math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return image[top:top + ch, left:left + cw]
    return image


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float,
                 hue_deg: float) -> np.ndarray:
    """Brightness, contrast and saturation factors in [1 - s, 1 + s]; hue shift in degrees."""
    x = image.astype(np.float32)
    if strength > 0:
        x *= rng.uniform(1 - strength, 1 + strength)  # brightness
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - strength, 1 + strength) + mean  # contrast
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * rng.uniform(1 - strength, 1 + strength) + grey  # saturation
    x = np.clip(x, 0, 255).astype(np.uint8)
    if hue_deg > 0:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # OpenCV hue is 0..179 (2 degrees a step)
        shift = round(rng.uniform(-hue_deg, hue_deg) / 2)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return x


def blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian (defocus) or horizontal box (camera pan) blur of a few pixels."""
    if rng.random() < 0.5:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.5, 1.5)))
    k = int(rng.integers(3, 8))
    return cv2.blur(image, (k, 1))


def jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    quality = int(rng.integers(30, 91))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else image


def bars(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black bars: pillarbox (4:3 inside 16:9) or letterbox (16:9 inside 4:3)."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    if rng.random() < 0.5:  # pillarbox: squeeze width to 3/4
        nw = max(1, int(w * 0.75))
        left = (w - nw) // 2
        out[:, left:left + nw] = cv2.resize(image, (nw, h), interpolation=cv2.INTER_AREA)
    else:
        nh = max(1, int(h * 0.75))
        top = (h - nh) // 2
        out[top:top + nh] = cv2.resize(image, (w, nh), interpolation=cv2.INTER_AREA)
    return out


class BroadcastAugment:
    """Callable: ``(frame [H, W, 3] uint8 RGB, rng) -> [S, S, 3] uint8`` through the student's
    own resize rule, so training and inference see the same geometry."""

    def __init__(self, cfg: AugmentConfig, image_size: int, resize: str = "stretch") -> None:
        self.cfg, self.size, self.resize = cfg, image_size, resize

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.cfg
        x = random_resized_crop(image, rng, c.scale, c.ratio)
        if rng.random() < c.hflip:
            x = x[:, ::-1]
        x = preprocess(np.ascontiguousarray(x), self.size, self.resize)
        if rng.random() < c.bars:
            x = bars(x, rng)
        if c.color > 0 or c.hue_deg > 0:
            x = color_jitter(x, rng, c.color, c.hue_deg)
        if rng.random() < c.blur:
            x = blur(x, rng)
        if rng.random() < c.jpeg:
            x = jpeg(x, rng)
        return np.ascontiguousarray(x)
