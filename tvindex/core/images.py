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

import ctypes
import ctypes.util
import io
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
MAX_SIDE = 1024
# Above this many pixels, the memory freed after a decode is handed back (release_memory).
TRIM_ABOVE_PIXELS = 4_000_000
# Bytes of RGB a strip of a large non-RGB picture holds while it is converted (_to_rgb).
STRIP_BYTES = 8 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_malloc_trim: Any = None
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


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


def decode_image(data: bytes, max_pixels: int,
                 slots: AbstractContextManager[Any] | None = None) -> DecodedImage:
    """The bytes of a picture -> RGB pixels; ``ImageError`` subclasses as above.

    The header checks come first; the decoding itself runs inside ``slots`` when given (the
    web server's semaphore: ``server.max_concurrent_decodes``), so that concurrent uploads
    cannot multiply the peak. A large picture is held at full size in its own mode only
    (JPEG: not even that, ``draft`` decodes at a reduced scale); every conversion after that
    (RGB, transparency, 16-bit) works on strips scaled down as they go. After a large decode
    the freed memory is handed back to the system (:func:`release_memory`)."""
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
        fmt = im.format
        with slots if slots is not None else nullcontext():
            try:
                pixels = _decode(im, width, height, max_pixels)
            finally:
                im.close()
                if width * height > TRIM_ABOVE_PIXELS:
                    release_memory()
    return DecodedImage(pixels, fmt, width, height, len(data))


def _decode(im: Image.Image, width: int, height: int, max_pixels: int) -> np.ndarray:
    fmt = im.format
    if fmt == "JPEG":
        im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode at a reduced scale: less memory
    try:
        im.load()
        return np.array(_to_rgb(im), dtype=np.uint8)  # a copy: im is closed after
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(width, height, max_pixels) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, SyntaxError, ValueError, zlib...
        raise CorruptImage(f"the image is truncated or corrupt ({fmt}): {exc}") from None


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``; elsewhere nothing):
    a large picture's buffers, once freed, would otherwise stay in the process's arenas."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def bound_allocator(threshold: int = 1 << 20) -> bool:
    """Make glibc map allocations of ``threshold`` bytes or more straight from the system
    and unmap them when freed (``mallopt(M_MMAP_THRESHOLD)``, which also stops glibc from
    raising the threshold after each large free); a long-running server calls it once, so
    that large transient buffers (decoded pictures) never stay in the heap. True if set."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def _orientation(im: Image.Image) -> Image.Transpose | None:
    try:
        return _TRANSPOSE.get(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the stored orientation
        return None


def _flatten(im: Image.Image, top: float | None = None) -> Image.Image:
    """Any mode -> RGB: 16-bit and float scaled to 8 bits (``top`` -> 255, else told from
    the values), transparency flattened onto white."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        values = np.asarray(im, dtype=np.float64)
        if top is None:
            top = 65535.0 if im.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """A loaded picture -> RGB upright, transparency flattened onto white, MAX_SIDE bound."""
    if im.mode != "RGB" and max(im.size) > MAX_SIDE:
        return _to_rgb_in_strips(im)
    # No copy of the whole picture; a broken EXIF block keeps the stored orientation.
    with suppress(Exception):
        ImageOps.exif_transpose(im, in_place=True)
    im = _flatten(im)
    if max(im.size) > MAX_SIDE:
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return im


def _to_rgb_in_strips(im: Image.Image) -> Image.Image:
    """A large picture of another mode than RGB -> RGB, a strip of rows at a time, each
    reduced (box average; the strips' heights are multiples of the factor, so the result is
    the whole picture's reduction) before the next: the picture is never held at full size
    in RGB (4 bytes a pixel) or as 16-bit floats (8 bytes)."""
    width, height = im.size
    scale = MAX_SIDE / max(width, height)
    fx = max(1, int(width / max(1, round(width * scale)) / 3))
    fy = max(1, int(height / max(1, round(height * scale)) / 3))
    top = None
    if im.mode in ("I", "F"):
        top = 255.0 if float(im.getextrema()[1]) <= 255 else 65535.0  # type: ignore[index]
    elif im.mode.startswith("I;16"):
        top = 65535.0
    rows = max(fy, STRIP_BYTES // (width * 4) // fy * fy)
    out = Image.new("RGB", (-(-width // fx), -(-height // fy)))
    for y in range(0, height, rows):
        strip = _flatten(im.crop((0, y, width, min(height, y + rows))), top)
        out.paste(strip.reduce((fx, fy)) if (fx, fy) != (1, 1) else strip, (0, y // fy))
    method = _orientation(im)
    if method is not None:
        out = out.transpose(method)
    out.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return out
