"""How the report names and formats things, in the terminal, the plots and the HTML alike."""

from __future__ import annotations

from typing import Any

REPRESENTATION_NAMES = {"embedding": "embedding", "labels": "label profile", "blend": "blend"}


def fmt(value: Any, digits: int = 3) -> str:
    """A value for a table or a line: floats to ``digits`` decimals, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def side_names(report: dict[str, Any]) -> dict[str, str]:
    """``evaluated``/``reference`` -> a title naming the catalogue's embedding tagger."""
    cat = report["catalogues"]
    def name(side: str) -> str:
        model = (cat.get(side) or {}).get("embedding_model")
        # The tagger's name, without its weights' fingerprints (the table has them all).
        return f"{side} ({model.split(':')[0] if model else 'no embeddings'})"

    return {side: name(side) if cat.get(side) else side for side in ("evaluated", "reference")}
