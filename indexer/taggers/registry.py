"""The tagger registry: names -> classes, by a table of dotted paths imported on first use.

This module imports no tagger implementation (and so never torch): ``list_taggers`` reads the
table, and ``tagger_class`` imports one module when a tagger is built. Implementations mark
themselves with ``@register_tagger(name)``, which sets the class's ``name``; a plug-in outside
tvindex registers with ``register_tagger(name)`` on its class, or adds its dotted path with
``add_tagger_path``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from indexer.taggers.base import RuntimeContext, Tagger, TaggerError

# name -> "module:Class". The order is irrelevant; listings are sorted.
TAGGER_PATHS: dict[str, str] = {
    "openclip": "indexer.taggers.openclip:OpenClipTagger",
    "places365": "indexer.taggers.places365:Places365Tagger",
    "student": "indexer.taggers.student:StudentTagger",
    "student-onnx": "indexer.taggers.student_onnx:StudentOnnxTagger",
    "tflite-detector": "indexer.taggers.tflite_detector:TfliteDetectorTagger",
    "timm-classifier": "indexer.taggers.timm_classifier:TimmClassifierTagger",
    "yolo": "indexer.taggers.yolo:YoloTagger",
}
_CLASSES: dict[str, type[Tagger]] = {}
# The student taggers (PyTorch and ONNX): taggers.embedding ``auto`` embeds with the first
# one active (indexer.frame_tagging.choose_embedder, indexer.embedder).
STUDENTS = ("student", "student-onnx")


def register_tagger(name: str) -> Callable[[type[Tagger]], type[Tagger]]:
    """Class decorator: the class is the tagger ``name`` (sets ``cls.name``)."""

    def wrap(cls: type[Tagger]) -> type[Tagger]:
        if name in _CLASSES and _CLASSES[name] is not cls:
            raise ValueError(f"tagger {name!r} registered twice")
        cls.name = name
        _CLASSES[name] = cls
        return cls

    return wrap


def add_tagger_path(name: str, dotted: str) -> None:
    """Make ``name`` resolve to ``"package.module:Class"``, imported when first built."""
    if name in TAGGER_PATHS and TAGGER_PATHS[name] != dotted:
        raise ValueError(f"tagger {name!r} registered twice")
    TAGGER_PATHS[name] = dotted


def list_taggers() -> list[str]:
    return sorted(set(TAGGER_PATHS) | set(_CLASSES))


def tagger_class(name: str) -> type[Tagger]:
    """The class of tagger ``name``, importing its module on first use."""
    if name in _CLASSES:
        return _CLASSES[name]
    try:
        module, _, attr = TAGGER_PATHS[name].partition(":")
    except KeyError:
        raise TaggerError(
            f"unknown tagger {name!r}; available: {', '.join(list_taggers())}") from None
    cls = getattr(importlib.import_module(module), attr)
    _CLASSES.setdefault(name, cls)
    if cls.name != name:
        raise TaggerError(f"{TAGGER_PATHS[name]} is registered as {cls.name!r}, not {name!r}")
    return cls


def create_tagger(name: str, cfg: Any = None, ctx: RuntimeContext | None = None) -> Tagger:
    """Build tagger ``name`` from its settings section ``cfg`` (None: the class's defaults are
    not known here, so pass the section) and a runtime context."""
    return tagger_class(name)(cfg, ctx or RuntimeContext())


def taggers_from_settings(settings, names=None) -> list[Tagger]:
    """The composition root's shortcut: build ``names`` (default ``taggers.active``), each
    from its own section of ``settings`` and one shared runtime context."""
    ctx = RuntimeContext.from_settings(settings)
    names = settings.taggers.active if names is None else names
    return [create_tagger(n, settings.taggers.for_tagger(n), ctx) for n in names]


def tagger_from_settings(name: str, settings) -> Tagger:
    """One tagger, built like ``taggers_from_settings`` does."""
    return taggers_from_settings(settings, [name])[0]
