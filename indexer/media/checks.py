"""Checking what a caller asks for: sampling arguments (ValueError at once) and a time range
against the file's length (MediaError)."""

from __future__ import annotations

from indexer.media.source import _secs
from indexer.media.types import MediaError, MediaInfo

MODES = ("interval", "keyframes", "shots")


def _range(info: MediaInfo, start_s: float, end_s: float | None) -> tuple[float, float]:
    """Clip a requested range to the file; a range that starts past the end is an error."""
    if start_s >= info.duration_s:
        raise MediaError(
            info.path,
            f"requested range starts at {_secs(start_s)} but the video is only "
            f"{_secs(info.duration_s)} long",
        )
    end = info.duration_s if end_s is None else min(end_s, info.duration_s)
    return start_s, end


def _check_args(
    mode: str,
    every_s: float,
    start_s: float,
    end_s: float | None,
    frames_per_shot: int,
    threshold: float,
    min_shot_s: float,
    max_side: int | None,
) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not every_s > 0:
        raise ValueError(f"every_s must be > 0 seconds, not {every_s}")
    if not start_s >= 0:
        raise ValueError(f"start_s must be >= 0 seconds, not {start_s}")
    if end_s is not None and not end_s > start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    if frames_per_shot < 1:
        raise ValueError(f"frames_per_shot must be >= 1, not {frames_per_shot}")
    if not threshold > 0:
        raise ValueError(f"shot_threshold must be > 0, not {threshold}")
    if not min_shot_s >= 0:
        raise ValueError(f"min_shot_s must be >= 0 seconds, not {min_shot_s}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 pixel, not {max_side}")

