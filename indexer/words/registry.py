"""The word-source registry: names -> classes, by dotted paths imported on first use (so
faster-whisper and onnxruntime load only when their source is built), in the taggers' style."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from indexer.taggers.base import RuntimeContext
from indexer.words.base import WordExtractor, WordsError

WORD_EXTRACTOR_PATHS: dict[str, str] = {
    "subtitles": "indexer.words.subtitles:SubtitleExtractor",
    "speech": "indexer.words.speech:SpeechExtractor",
    "screen": "indexer.words.screen:ScreenTextExtractor",
}
_CLASSES: dict[str, type[WordExtractor]] = {}


def register_word_extractor(name: str) -> Callable[[type[WordExtractor]], type[WordExtractor]]:
    """Class decorator: the class is the word source ``name`` (sets ``cls.name``)."""

    def wrap(cls: type[WordExtractor]) -> type[WordExtractor]:
        if name in _CLASSES and _CLASSES[name] is not cls:
            raise ValueError(f"word source {name!r} registered twice")
        cls.name = name
        _CLASSES[name] = cls
        return cls

    return wrap


def list_word_extractors() -> list[str]:
    return sorted(set(WORD_EXTRACTOR_PATHS) | set(_CLASSES))


def word_extractor_class(name: str) -> type[WordExtractor]:
    if name in _CLASSES:
        return _CLASSES[name]
    try:
        module, _, attr = WORD_EXTRACTOR_PATHS[name].partition(":")
    except KeyError:
        raise WordsError(f"unknown word source {name!r}; available: "
                         f"{', '.join(list_word_extractors())}") from None
    cls = getattr(importlib.import_module(module), attr)
    _CLASSES.setdefault(name, cls)
    return cls


def create_word_extractor(name: str, cfg: Any = None,
                          ctx: RuntimeContext | None = None) -> WordExtractor:
    """Build word source ``name`` from its settings section (None: the section's defaults)."""
    cls = word_extractor_class(name)
    if cfg is None:
        from tvindex.settings.words import WordsSettings

        cfg = WordsSettings().for_source(name)
    return cls(cfg, ctx or RuntimeContext())


def word_extractors_from_settings(settings, names=None) -> list[WordExtractor]:
    """The composition root's shortcut: ``names`` (default ``words.enabled``), each from its
    own section of ``settings.words`` and the taggers' runtime context (device, models)."""
    ctx = RuntimeContext.from_settings(settings)
    names = settings.words.enabled if names is None else names
    return [create_word_extractor(n, settings.words.for_source(n), ctx) for n in names]
