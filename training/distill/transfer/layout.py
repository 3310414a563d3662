"""The transfer set's on-disk names (index file, format tag and version, splits, provenance
file, image extensions) and its error type."""

from __future__ import annotations

INDEX_FILE = "index.json"
FORMAT = "tvindex-transfer"
VERSION = 1
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")
PROVENANCE_FILE = "provenance.csv"


class TransferError(RuntimeError):
    """The transfer set cannot be built or read (bad source, incompatible cache)."""
