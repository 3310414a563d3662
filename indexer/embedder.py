"""The embedding tagger alone, for query by example (the web server, ``tvindex similar``).

``choose_embedder`` picks the embedder among taggers already built (indexing builds every
active tagger anyway). A reader that only embeds a picture should not load every network to
find that one, so :func:`build_embedder` builds the candidates one at a time, in the order the
rule looks at them, and stops at the first with frame features. Whether a tagger has features
(``embedding_dim > 0``) is known only once it is built (it is read from the loaded model), so
a detector before the embedder in ``taggers.active`` is still built, under ``auto``.

The answer is the tagger ``choose_embedder`` would pick from every active tagger; when it
would raise instead (a named tagger that is not active, or has no features), every active
tagger is built and ``choose_embedder`` raises its own error.
"""

from __future__ import annotations

from typing import Any

from indexer.taggers.base import RuntimeContext, Tagger
from indexer.taggers.registry import STUDENTS, create_tagger, taggers_from_settings


def embedder_candidates(active: list[str], spec: str) -> list[str]:
    """The taggers to try, in order, for ``taggers.embedding`` = ``spec``: under ``auto``
    the student first when it is active, then the active taggers in order; a name: that
    tagger when it is active; ``none``: none."""
    spec = spec.strip()
    if spec == "none":
        return []
    if spec == "auto":
        students = [n for n in active if n in STUDENTS]  # the PyTorch or the ONNX student
        return students + [n for n in active if n not in students]
    return [spec] if spec in active else []


def build_embedder(settings: Any) -> Tagger | None:
    """The embedding tagger of ``settings`` (``taggers.embedding``), built alone; None when
    none is configured or no active tagger has features (``auto``). TaggerError as
    ``choose_embedder``'s when the setting names a tagger that cannot embed."""
    spec = settings.taggers.embedding.strip()
    ctx = RuntimeContext.from_settings(settings)
    for name in embedder_candidates(list(settings.taggers.active), spec):
        tagger = create_tagger(name, settings.taggers.for_tagger(name), ctx)
        if tagger.embedding_dim > 0:
            return tagger
    if spec in ("auto", "none"):
        return None
    from indexer.frame_tagging import choose_embedder

    # The named tagger is not active or has no features: the indexer's own error.
    return choose_embedder(taggers_from_settings(settings), settings.taggers.embedding)


def build_text_encoder(settings: Any):
    """The text tower of ``taggers.openclip``'s model (``visual:`` query terms), built alone:
    an ``indexer.taggers.openclip.OpenClipTextEncoder``. Errors as the tagger's (the clip
    extra missing, weights not found)."""
    from indexer.taggers.openclip import OpenClipTextEncoder

    return OpenClipTextEncoder(settings.taggers.openclip, RuntimeContext.from_settings(settings))
