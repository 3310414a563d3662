"""Taggers: frames -> logits over named label sets. See ``base.py`` for the interface."""

from indexer.taggers.base import (
    LabelSet,
    Tagger,
    TaggerError,
    create_tagger,
    list_taggers,
    register_tagger,
)

__all__ = ["LabelSet", "Tagger", "TaggerError", "create_tagger", "list_taggers", "register_tagger"]
