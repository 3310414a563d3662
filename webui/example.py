"""Query by example: what a ``POST /similar`` (API or page) asks for, validated.

A request names a shot (``{"shot": "EPISODE@INDEX"}`` as JSON, or a ``shot`` form field) or
carries a picture (multipart/form-data, field ``image``). The picture is read and decoded in
memory only (never written to disk; see ``InMemoryRequest``) under three bounds:

- the request body: ``server.max_upload_bytes`` on the upload routes only (``app.py``), 413;
- the picture's size in pixels: ``server.max_upload_pixels``, checked from the header that
  ``Image.open`` reads, *before* any pixel is decoded (a decompression bomb: a few KB of PNG
  that claim 100 000 × 100 000 pixels), 413;
- its format: JPEG, PNG, WebP, BMP or GIF only (the decoders Pillow tries are limited to
  these), else 415; a truncated or corrupt file of one of them is a 400.

The decoded picture is oriented by its EXIF tag, flattened onto white when it has
transparency, converted to RGB, and scaled down to at most ``MAX_SIDE`` pixels a side (the
embedding networks see 224-384 px anyway).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Request, request
from PIL import Image, ImageOps, UnidentifiedImageError
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from tvindex.core.records import parse_shot_id
from webui.errors import BadParameter

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
ACCEPT = "image/jpeg,image/png,image/webp,image/bmp,image/gif"
MAX_SIDE = 1024
FIELD = "image"
_HOW = ("send multipart/form-data with the picture in an 'image' field, or JSON "
        '{"shot": "EPISODE@INDEX"}')


class InMemoryRequest(Request):
    """Uploaded files stay in memory: bodies are bounded (``server.max_request_bytes``, or
    ``server.max_upload_bytes`` on the upload routes), so nothing needs a temporary file."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None,
                         content_length: int | None = None) -> io.BytesIO:
        return io.BytesIO()


@dataclass
class UploadedImage:
    pixels: np.ndarray  # [H, W, 3] uint8, RGB, at most MAX_SIDE a side
    format: str  # JPEG, PNG, WEBP, BMP, GIF
    width: int  # as uploaded
    height: int
    bytes: int

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "width": self.width, "height": self.height,
                "bytes": self.bytes}


@dataclass
class Example:
    """A query by example: a shot id, or an uploaded picture."""

    shot: str | None = None
    image: UploadedImage | None = None


def _too_large(width: int, height: int, max_pixels: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(
        f"the image has {width} x {height} = {width * height} pixels, over the limit of "
        f"{max_pixels} pixels (server.max_upload_pixels)")


def decode_image(data: bytes, max_pixels: int) -> UploadedImage:
    """The bytes of an uploaded picture -> RGB pixels; 400/413/415 HTTP errors as above."""
    if not data:
        raise BadParameter("the image is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own, process-wide bound (far above ours) was hit while reading the header.
        raise RequestEntityTooLarge(f"the image has too many pixels ({exc}); the limit is "
                                    f"{max_pixels} pixels (server.max_upload_pixels)") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaType("not an image of a supported format: upload a JPEG, PNG, "
                                   "WebP, BMP or GIF picture") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header may break a decoder anyhow
        raise BadParameter(f"the image cannot be read: {exc}") from None
    with im:
        width, height = im.size
        if im.format not in ALLOWED_FORMATS:  # defensive: formats= already restricts
            raise UnsupportedMediaType(f"unsupported image format {im.format}: upload a JPEG, "
                                       "PNG, WebP, BMP or GIF picture")
        if width * height > max_pixels:
            raise _too_large(width, height, max_pixels)
        if width < 1 or height < 1:
            raise BadParameter(f"the image has no pixels ({width} x {height})")
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
            raise BadParameter(f"the image is truncated or corrupt ({fmt}): {exc}") from None
    return UploadedImage(pixels, fmt, width, height, len(data))


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


def shot_value(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadParameter('shot must be a shot id "EPISODE@INDEX"')
    try:
        parse_shot_id(value.strip())
    except ValueError as exc:
        raise BadParameter(str(exc)) from None
    return value.strip()


def read_example(max_pixels: int) -> Example:
    """The current request's example (see the module's description); HTTP errors when it
    has none or it is invalid."""
    mimetype = request.mimetype
    if mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        upload = request.files.get(FIELD)
        if upload is not None and (upload.filename or upload.content_length):
            data = upload.read()
            if not data and not request.form.get("shot"):
                raise BadParameter("the image is empty (0 bytes): choose a picture")
            if data:
                return Example(image=decode_image(data, max_pixels))
        if request.form.get("shot"):
            return Example(shot=shot_value(request.form["shot"]))
        raise BadParameter(f"the image is missing: {_HOW}")
    if mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadParameter(f"the body is not a JSON object: {_HOW}")
        if "shot" not in body:
            raise BadParameter(f"shot is required in the JSON body: {_HOW}")
        return Example(shot=shot_value(body["shot"]))
    if request.content_length or mimetype:
        raise UnsupportedMediaType(f"unsupported request content type {mimetype or 'none'!r}: "
                                   f"{_HOW}")
    raise BadParameter(f"the image is missing: {_HOW}")


def preview_data_url(pixels: np.ndarray, side: int = 320) -> str:
    """A small JPEG of the uploaded picture as a data: URL, to show it back without storing
    it anywhere (the CSP allows data: images)."""
    im = Image.fromarray(pixels, "RGB")
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
