"""Query by example: what a ``POST /similar`` (API or page) asks for, validated.

A request names a shot (``{"shot": "EPISODE@INDEX"}`` as JSON, or a ``shot`` form field) or
carries a picture (multipart/form-data, field ``image``). The upload is read and decoded in
memory (never spooled to a temporary file; see ``InMemoryRequest``) under three bounds:

- the request body: ``server.max_upload_bytes`` on the upload routes only (``app.py``), 413;
- the picture's size in pixels: ``server.max_upload_pixels``, checked from the header that
  ``Image.open`` reads, *before* any pixel is decoded (a decompression bomb: a few KB of PNG
  that claim 100 000 × 100 000 pixels), 413;
- its format: JPEG, PNG, WebP, BMP or GIF only (the decoders Pillow tries are limited to
  these), else 415; a truncated or corrupt file of one of them is a 400.

The decoding itself (``tvindex.core.images``, shared with ``tvindex similar image``) orients
the picture by its EXIF tag, flattens it onto white when it has transparency, converts it to
RGB, and scales it down to at most ``MAX_SIDE`` pixels a side (the embedding networks see
224-384 px anyway); this module maps its errors to the HTTP statuses above.
Only the decoded picture is kept afterwards, by content, so that its result page can be
shared (``webui/pictures.py``).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Request, has_app_context, request
from PIL import Image
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from tvindex.core import images
from tvindex.core.images import ALLOWED_FORMATS, MAX_SIDE
from tvindex.core.images import DecodedImage as UploadedImage
from tvindex.core.records import parse_shot_id
from webui.context import ctx
from webui.errors import BadParameter

__all__ = ["ACCEPT", "ALLOWED_FORMATS", "MAX_SIDE", "Example", "InMemoryRequest", "UploadedImage",
           "decode_image", "preview_data_url", "read_example", "shot_value"]

ACCEPT = "image/jpeg,image/png,image/webp,image/bmp,image/gif"
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

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        raise BadParameter(f"the body is not valid JSON: {e}" if e is not None
                           else "the body is not JSON (Content-Type: application/json)")

    def get_json(self, force: bool = False, silent: bool = False,
                 cache: bool = True) -> Any:
        """JSON bodies; one nested deeper than the parser's recursion allows (a 2 KB body of
        ``[[[[...``) is invalid JSON like any other: 400 (``None`` when ``silent``), never a
        ``RecursionError``."""
        try:
            return super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            if silent:
                return None
            raise BadParameter("the body is not valid JSON: nested too deeply") from None


@dataclass
class Example:
    """A query by example: a shot id, or an uploaded picture."""

    shot: str | None = None
    image: UploadedImage | None = None


def decode_image(data: bytes, max_pixels: int) -> UploadedImage:
    """The bytes of an uploaded picture -> RGB pixels; 400/413/415 HTTP errors as above.
    At most ``server.max_concurrent_decodes`` pictures are decoded at once."""
    slots = ctx().decode_slots if has_app_context() else None
    try:
        return images.decode_image(data, max_pixels, slots)
    except images.ImageTooLarge as exc:
        raise RequestEntityTooLarge(str(exc)) from None
    except images.UnsupportedImage as exc:
        raise UnsupportedMediaType(str(exc)) from None
    except images.ImageError as exc:
        raise BadParameter(str(exc)) from None


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
