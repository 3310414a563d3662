"""The tagger seam: a tagger turns a batch of RGB frames into logits over named label sets.

Teachers and the student are taggers. A tagger is built from its own settings section and a
:class:`RuntimeContext` (device, batch size, model resolver); ``registry.py`` finds the class
by name and ``create_tagger`` builds it. Nothing in the pipeline branches on tagger type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from indexer.weights import ModelResolver, sha256_of
from tvindex.core.labels import LabelSet


def file_id(path) -> str:
    """Short content hash of a weights file, for ``Tagger.weights_id``."""
    return sha256_of(path)[:16]


def tagger_identity(name: str, weights_id: str, label_sets: Sequence[LabelSet] = ()) -> str:
    """:meth:`Tagger.identity`'s string, for whatever else must name a tagger's model the
    same way (the openclip text encoder answers with its tagger's)."""
    sets = ",".join(ls.fingerprint() for ls in label_sets)
    return f"{name}:{weights_id}:{sets}"


@dataclass(frozen=True)
class RuntimeContext:
    """What every tagger may need besides its own section: where it runs and how it finds
    weights. ``device``: auto, cpu, cuda or cuda:N; ``batch_size``: frames per forward pass;
    ``mixed_precision``: autocast on CUDA."""

    device: str = "auto"
    batch_size: int = 16
    mixed_precision: bool = True
    models: ModelResolver = field(default_factory=ModelResolver)

    @classmethod
    def from_settings(cls, settings) -> RuntimeContext:
        """From a whole ``tvindex.settings.Settings`` (at the composition root only)."""
        t = settings.taggers
        return cls(t.device, t.batch_size, t.mixed_precision, ModelResolver.from_settings(settings))


class TaggerError(RuntimeError):
    """A tagger cannot be built or run (bad settings, unreadable weights)."""


class Tagger(ABC):
    """Base class. Subclasses take ``(cfg, ctx)``: their settings section (None for a tagger
    without one) and a :class:`RuntimeContext`; they set ``label_sets`` in ``__init__`` and
    implement ``predict``."""

    name: ClassVar[str] = ""
    label_sets: tuple[LabelSet, ...] = ()
    # Short content hash of the weights in use (set by subclasses; part of identity()).
    weights_id: str = ""
    # Size of the pooled penultimate features ``predict_with_embeddings`` returns; 0 for
    # taggers that have none (detectors).
    embedding_dim: int = 0
    # Size of the image embeddings ``predict_visual`` returns, in a space shared with a text
    # encoder (CLIP: the openclip tagger); 0 for every other tagger. They are kept apart
    # from ``embedding_dim``'s features: visual: query terms search them, nothing else.
    visual_dim: int = 0

    @abstractmethod
    def predict(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Frames (each [H, W, 3] uint8 RGB, any size) -> {label set name: logits [B, n] float32}.

        Logits, not probabilities: use ``LabelSet.probabilities`` to convert.
        """

    def predict_with_embeddings(self, frames: Sequence[np.ndarray]
                                ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """``predict``'s logits and, from the same forward pass, the pooled penultimate
        features [B, embedding_dim] float32 (raw, not normalised); None when the tagger has
        no features (``embedding_dim == 0``)."""
        return self.predict(frames), None

    def predict_visual(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> image embeddings [B, visual_dim] float32 (raw; ``tag_frames`` normalises
        them). Only taggers with ``visual_dim > 0`` have them."""
        raise TaggerError(f"{self.name}: no visual embeddings (visual_dim is 0)")

    def identity(self) -> str:
        """A string that changes whenever the model's outputs could change (architecture,
        weights, label sets). Used to tell whether an indexed episode is stale."""
        return tagger_identity(self.name, self.weights_id, self.label_sets)

    def label_set(self, name: str) -> LabelSet:
        for ls in self.label_sets:
            if ls.name == name:
                return ls
        raise KeyError(name)


@dataclass(frozen=True)
class TaggerSpec:
    """What aggregating a tagger's output and versioning a catalogue need of it, without its
    model: its name, label sets, identity and embedding sizes. Made where the tagger was
    built (:meth:`of`) and sent to a process that aggregates but does not tag (the Ray
    engine's driver), which uses it wherever a built tagger's description is read."""

    name: str
    label_sets: tuple[LabelSet, ...]
    tagger_identity: str
    embedding_dim: int = 0
    visual_dim: int = 0

    @classmethod
    def of(cls, tagger: Tagger) -> TaggerSpec:
        return cls(tagger.name, tuple(tagger.label_sets), tagger.identity(),
                   tagger.embedding_dim, tagger.visual_dim)

    def identity(self) -> str:
        return self.tagger_identity
