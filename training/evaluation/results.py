"""Evaluation results as plain JSON-able data: a section that cannot be computed says why
(:func:`not_available`), and the report's JSON never holds NaN or infinity (:func:`finite_json`;
:func:`walk_numbers` lists every number to check that)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def not_available(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def finite_json(obj: Any) -> Any:
    """A JSON-able copy: numpy scalars and arrays become Python values, NaN and infinities
    become None, tuples lists, paths strings."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return finite_json(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def walk_numbers(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every number in a JSON value, with its path (for checking that all are finite)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, obj
