"""Taggers: frames -> logits over named label sets. ``base.py`` holds the interface,
``registry.py`` the names (no implementation is imported until a tagger is built)."""

from indexer.taggers.base import RuntimeContext, Tagger, TaggerError
from indexer.taggers.registry import (
    create_tagger,
    list_taggers,
    register_tagger,
    tagger_class,
    tagger_from_settings,
    taggers_from_settings,
)

__all__ = ["RuntimeContext", "Tagger", "TaggerError", "create_tagger", "list_taggers",
           "register_tagger", "tagger_class", "tagger_from_settings", "taggers_from_settings"]
