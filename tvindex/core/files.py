"""Writing files so that a crash leaves the old content or the new, never a mix."""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    try:
        fsync(directory)
    except OSError:  # some filesystems refuse fsync on a directory; the rename still happened
        pass


def write_atomic(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """Replace ``path`` with ``data``: written to a hidden temporary file beside it (``tmp``,
    by default ``.NAME.tmp``: give writers that may race a name each), flushed, then renamed
    over it (``os.replace`` is atomic)."""
    tmp = tmp or path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
