"""The base of every settings section model (:class:`_Section`: unknown keys refused, floats
finite, no NUL in text), in a module of its own so that feature modules
(``tvindex/settings/<feature>.py``) subclass it without importing ``sections``, which imports
them for the :class:`~tvindex.settings.sections.Settings` root (no import cycle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class _Section(BaseModel):
    # allow_inf_nan=False: every float, in lists, tuples and dicts too, must be finite.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return no_nul(v)


def no_nul(value: Any) -> Any:
    """``value``, refused when a text or path in it (or in its list) holds a NUL character,
    which no file name, host or key can hold (the OS would raise ValueError much later)."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    if any(isinstance(x, (str, Path)) and "\x00" in str(x) for x in items):
        raise ValueError("must not contain a NUL character")
    return value
