"""The tagger seam: a tagger turns a batch of RGB frames into logits over named label sets.

Teachers and the student are taggers. Implementations register themselves by name with
:func:`register_tagger` (the way timm's ``@register_model`` does) and are built with
:func:`create_tagger` from the settings; nothing in the pipeline branches on tagger type.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from tvindex.settings import Settings

Activation = Literal["sigmoid", "softmax"]


@dataclass(frozen=True)
class LabelSet:
    """An ordered vocabulary and how its logits become probabilities.

    ``sigmoid``: independent labels (objects); ``softmax``: one distribution (scenes).
    """

    name: str
    activation: Activation
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Logits [..., n] -> probabilities [..., n] (float32)."""
        x = np.asarray(logits, dtype=np.float32)
        if self.activation == "sigmoid":
            return (1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))).astype(np.float32)
        z = x - x.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def fingerprint(self) -> str:
        """Short hash of name, activation and label order: equal sets have equal prints."""
        text = "\n".join((self.name, self.activation, *self.labels))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_id(path) -> str:
    """Short content hash of a weights file, for ``Tagger.weights_id``."""
    from indexer.weights import sha256_of

    return sha256_of(path)[:16]


class TaggerError(RuntimeError):
    """A tagger cannot be built or run (bad settings, unreadable weights)."""


class Tagger(ABC):
    """Base class. Subclasses set ``label_sets`` in ``__init__`` and implement ``predict``."""

    name: ClassVar[str] = ""
    label_sets: tuple[LabelSet, ...] = ()
    # Short content hash of the weights in use (set by subclasses; part of identity()).
    weights_id: str = ""
    # Size of the pooled penultimate features ``predict_with_embeddings`` returns; 0 for
    # taggers that have none (detectors).
    embedding_dim: int = 0

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

    def identity(self) -> str:
        """A string that changes whenever the model's outputs could change (architecture,
        weights, label sets). Used to tell whether an indexed episode is stale."""
        sets = ",".join(ls.fingerprint() for ls in self.label_sets)
        return f"{self.name}:{self.weights_id}:{sets}"

    def label_set(self, name: str) -> LabelSet:
        for ls in self.label_sets:
            if ls.name == name:
                return ls
        raise KeyError(name)


_REGISTRY: dict[str, type[Tagger]] = {}


def register_tagger(name: str) -> Callable[[type[Tagger]], type[Tagger]]:
    """Class decorator: make a tagger available to configuration under ``name``."""

    def wrap(cls: type[Tagger]) -> type[Tagger]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"tagger {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_taggers() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def create_tagger(name: str, settings: Settings) -> Tagger:
    """Build the tagger registered as ``name`` from its settings block."""
    _import_builtin()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise TaggerError(
            f"unknown tagger {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return cls(settings)  # type: ignore[call-arg]


def _import_builtin() -> None:
    # Importing the modules registers them; heavy libraries load inside each tagger's __init__.
    from indexer.taggers import (  # noqa: F401
        places365,
        student,
        timm_classifier,
        tflite_detector,
        yolo,
    )
