"""Tagging frames: frames -> taggers, streamed in batches (the step every consumer of tags
shares), the label sets the taggers emit, and which tagger makes the frame embeddings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from indexer.media import Frame
from indexer.taggers.base import Tagger, TaggerError
from indexer.taggers.registry import STUDENTS
from tvindex.core.labels import LabelSet
from tvindex.core.vectors import unit_rows

EMBEDDING_KEY = "taggers.embedding"


@dataclass
class TaggedFrame:
    """A sampled frame with the logits of every active label set ({name: [n] float32}) and,
    when an embedder runs, its unit-length (L2-normalised) embedding [D] float32; when a
    visual tagger runs (:func:`visual_tagger`), its unit-length image embedding too."""

    frame: Frame
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    embedding: np.ndarray | None = None
    visual: np.ndarray | None = None


def label_sets_of(taggers: Sequence[Tagger]) -> list[LabelSet]:
    """Every label set the taggers emit, in tagger order; two taggers may not share a name."""
    seen: dict[str, str] = {}
    sets: list[LabelSet] = []
    for tagger in taggers:
        for ls in tagger.label_sets:
            if ls.name in seen:
                raise ValueError(f"label set {ls.name!r} is emitted by both {seen[ls.name]!r} and "
                                 f"{tagger.name!r}; activate only one of them")
            seen[ls.name] = tagger.name
            sets.append(ls)
    return sets


def choose_embedder(taggers: Sequence[Tagger], embedding: str) -> Tagger | None:
    """The tagger whose pooled features become the frame embeddings.

    ``embedding`` is the ``taggers.embedding`` setting; ``taggers`` are the active taggers in
    ``taggers.active`` order. ``auto``: the student when active, else the first tagger with
    features (``embedding_dim > 0``), else None (no embeddings, not an error); ``none``: None;
    a name: that tagger, which must be active and have features (else a TaggerError naming
    the key).
    """
    spec = embedding.strip()
    if spec == "none":
        return None
    capable = [t for t in taggers if t.embedding_dim > 0]
    if spec == "auto":
        return next((t for t in capable if t.name in STUDENTS), capable[0] if capable else None)
    chosen = next((t for t in taggers if t.name == spec), None)
    if chosen is None:
        raise TaggerError(
            f"{EMBEDDING_KEY}: {spec!r} is not an active tagger (taggers.active: "
            f"{', '.join(t.name for t in taggers) or 'none'}); name one of them, or use auto "
            "or none")
    if chosen.embedding_dim <= 0:
        others = ", ".join(t.name for t in capable) or "none is active"
        raise TaggerError(
            f"{EMBEDDING_KEY}: tagger {spec!r} has no frame features (a detector); taggers "
            f"with features: {others}; or use auto or none")
    return chosen


def visual_tagger(taggers: Sequence[Tagger]) -> Tagger | None:
    """The active tagger with visual (text-aligned) embeddings (``visual_dim > 0``: openclip),
    or None. Two would fill the same space, so two are an error."""
    visual = [t for t in taggers if t.visual_dim > 0]
    if len(visual) > 1:
        raise TaggerError(f"taggers {', '.join(t.name for t in visual)} all make visual "
                          "embeddings; activate only one of them")
    return visual[0] if visual else None


def batched(items: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def tag_frames(
    frames: Iterable[Frame], taggers: Sequence[Tagger], batch_size: int = 16,
    embedder: Tagger | None = None,
) -> Iterator[TaggedFrame]:
    """Run every tagger over the frames, ``batch_size`` frames at a time, yielding in order.

    ``embedder`` (one of ``taggers``, see :func:`choose_embedder`) runs through
    ``predict_with_embeddings`` instead of ``predict``: its logits and features come from the
    same forward pass, so no tagger runs twice; each frame gets its unit-length embedding.
    The visual tagger (:func:`visual_tagger`) also gives each frame its unit-length
    ``visual`` embedding.

    Streams: at most one batch of frames is held, whatever the video's length.
    """
    label_sets_of(taggers)  # fail early on clashing label sets
    visual = visual_tagger(taggers)
    if embedder is not None and not any(t is embedder for t in taggers):
        raise ValueError(f"the embedder {embedder.name!r} is not one of the taggers")
    for batch in batched(frames, batch_size):
        images = [f.image for f in batch]
        tagged = [TaggedFrame(f) for f in batch]
        for tagger in taggers:
            if tagger is embedder:
                logits, features = tagger.predict_with_embeddings(images)
                if features is None or features.shape[0] != len(batch):
                    raise TaggerError(f"{tagger.name}: no frame features for the embedding "
                                      f"({EMBEDDING_KEY})")
                for t, row in zip(tagged, unit_rows(features)):
                    t.embedding = row
            else:
                logits = tagger.predict(images)
            for name, values in logits.items():
                for t, row in zip(tagged, values):
                    t.logits[name] = row
            if tagger is visual:
                for t, row in zip(tagged, unit_rows(tagger.predict_visual(images))):
                    t.visual = row
        yield from tagged
