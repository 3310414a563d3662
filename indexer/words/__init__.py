"""Word sources: timed text from an episode's subtitles, its speech and the text on screen.

Each source is a :class:`WordExtractor` (``base``) found by name in the registry
(``registry``, dotted paths imported on first use, like the taggers), built from its own
settings section and the :class:`~indexer.taggers.base.RuntimeContext`. ``run`` is the words
pass of ``tvindex index``. See docs/words.md.
"""

from indexer.words.base import WordExtractor, WordsError
from indexer.words.registry import (
    create_word_extractor,
    list_word_extractors,
    register_word_extractor,
    word_extractors_from_settings,
)

__all__ = ["WordExtractor", "WordsError", "create_word_extractor", "list_word_extractors",
           "register_word_extractor", "word_extractors_from_settings"]
