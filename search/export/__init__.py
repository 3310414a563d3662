"""Exports of search results and of an episode's shots to the tools editors cut in.

The formats by name, as dotted paths (``module:Class``) like the taggers and the store
backends: a format's module (and its library: OpenTimelineIO for ``otio``) is imported only
when it is used. :func:`collect.search_clips` and :func:`collect.episode_clips` gather the
clips through the store contract and the search engine (never a backend); an
:class:`base.Exporter` turns them into a file.
"""

from __future__ import annotations

import importlib

from search.export.base import Exporter, ExportError

EXPORT_FORMATS: dict[str, str] = {
    "csv": "search.export.csv_format:CsvExporter",
    "edl": "search.export.edl:EdlExporter",
    "otio": "search.export.otio_format:OtioExporter",
    "json": "search.export.json_format:JsonExporter",
}


def list_formats() -> list[str]:
    return list(EXPORT_FORMATS)


def exporter(name: str) -> Exporter:
    """The exporter registered as ``name`` (its module imported now)."""
    path = EXPORT_FORMATS.get(name)
    if path is None:
        raise ExportError(f"unknown export format {name!r}; one of {', '.join(EXPORT_FORMATS)}")
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["EXPORT_FORMATS", "ExportError", "Exporter", "exporter", "list_formats"]
