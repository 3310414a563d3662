"""Pictures given as examples (query by example): bytes -> RGB pixels, under bounds.

The one decoder of an example picture, shared by the web upload (``webui/example.py``) and
``tvindex similar image``, so that both read a picture alike. It is decoded in memory only,
under two bounds, each an :class:`ImageError` whose message says why:

- its size in pixels (``max_pixels``), checked from the header that ``Image.open`` reads,
  *before* any pixel is decoded (a decompression bomb: a few KB of PNG that claim
  100 000 x 100 000 pixels): :class:`ImageTooLarge`;
- its format: JPEG, PNG, WebP, BMP or GIF only (the decoders Pillow tries are limited to
  these), else :class:`UnsupportedImage`; an empty, truncated or corrupt file of one of them
  is a :class:`CorruptImage`.

The decoded picture is oriented by its EXIF tag, flattened onto white when it has
transparency, converted to RGB, and scaled down to at most ``MAX_SIDE`` pixels a side (the
embedding networks see 224-384 px anyway).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
MAX_SIDE = 1024


class ImageError(ValueError):
    """An example picture cannot be used; the message says why (no traceback needed)."""


class ImageTooLarge(ImageError):
    """More pixels than allowed (told from the header, before decoding)."""


class UnsupportedImage(ImageError):
    """Not a picture of an accepted format."""


class CorruptImage(ImageError):
    """Empty, truncated or corrupt, or without pixels."""


@dataclass
class DecodedImage:
    pixels: np.ndarray  # [H, W, 3] uint8, RGB, at most MAX_SIDE a side
    format: str  # JPEG, PNG, WEBP, BMP, GIF
    width: int  # as given
    height: int
    bytes: int

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "width": self.width, "height": self.height,
                "bytes": self.bytes}


def _too_large(width: int, height: int, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(
        f"the image has {width} x {height} = {width * height} pixels, over the limit of "
        f"{max_pixels} pixels (server.max_upload_pixels)")


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """The bytes of a picture -> RGB pixels; ``ImageError`` subclasses as above."""
    if not data:
        raise CorruptImage("the image is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own, process-wide bound (far above ours) was hit while reading the header.
        raise ImageTooLarge(f"the image has too many pixels ({exc}); the limit is "
                            f"{max_pixels} pixels (server.max_upload_pixels)") from None
    except UnidentifiedImageError:
        raise UnsupportedImage("not an image of a supported format: upload a JPEG, PNG, "
                               "WebP, BMP or GIF picture") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header may break a decoder anyhow
        raise CorruptImage(f"the image cannot be read: {exc}") from None
    with im:
        width, height = im.size
        if im.format not in ALLOWED_FORMATS:  # defensive: formats= already restricts
            raise UnsupportedImage(f"unsupported image format {im.format}: upload a JPEG, "
                                   "PNG, WebP, BMP or GIF picture")
        if width * height > max_pixels:
            raise _too_large(width, height, max_pixels)
        if width < 1 or height < 1:
            raise CorruptImage(f"the image has no pixels ({width} x {height})")
        if im.format == "JPEG":
            im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode at a reduced scale: less memory
        fmt = im.format
        try:
            im.load()
            pixels = np.array(_to_rgb(im), dtype=np.uint8)  # a copy: im is closed below
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large(width, height, max_pixels) from None
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, SyntaxError, ValueError, zlib...
            raise CorruptImage(f"the image is truncated or corrupt ({fmt}): {exc}") from None
    return DecodedImage(pixels, fmt, width, height, len(data))


def _to_rgb(im: Image.Image) -> Image.Image:
    """A loaded picture -> RGB upright, transparency flattened onto white, MAX_SIDE bound."""
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the stored orientation
        upright = None
    im = upright if upright is not None else im
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    if max(im.size) > MAX_SIDE:
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return im
