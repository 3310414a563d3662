"""Frames -> taggers, streamed in batches: the step every consumer of tags shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from indexer.media import Frame
from indexer.taggers.base import LabelSet, Tagger


@dataclass
class TaggedFrame:
    """A sampled frame with the logits of every active label set ({name: [n] float32})."""

    frame: Frame
    logits: dict[str, np.ndarray] = field(default_factory=dict)


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


def batched(items: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def tag_frames(
    frames: Iterable[Frame], taggers: Sequence[Tagger], batch_size: int = 16
) -> Iterator[TaggedFrame]:
    """Run every tagger over the frames, ``batch_size`` frames at a time, yielding in order.

    Streams: at most one batch of frames is held, whatever the video's length.
    """
    label_sets_of(taggers)  # fail early on clashing label sets
    for batch in batched(frames, batch_size):
        images = [f.image for f in batch]
        tagged = [TaggedFrame(f) for f in batch]
        for tagger in taggers:
            for name, logits in tagger.predict(images).items():
                for t, row in zip(tagged, logits):
                    t.logits[name] = row
        yield from tagged
