"""Label sets: an ordered vocabulary, how its logits become probabilities, and its role.

The role says what a set names: ``object`` (things in the picture: COCO), ``scene`` (the kind
of place: Places365, or the ImageNet stand-in used offline), or ``other``. The query language's
``object:`` and ``scene:`` fields, the web UI's label lists and suggestions all read it here.

A set can mix roles: ImageNet-1k, the scene stand-in offline, names mostly objects and animals;
only its classes that are places (``data/imagenet_places.tsv``, chosen by WordNet category)
answer ``scene:`` (:func:`label_role`); the others are reached as ``imagenet1k:NAME``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Activation = Literal["sigmoid", "softmax"]
Role = Literal["object", "scene", "other"]

# The role of the label sets tvindex's taggers emit, by set name. ImageNet-1k stands in for
# Places365 as the scene teacher where no Places365 weights can be had (see README).
ROLES: dict[str, Role] = {"coco80": "object", "places365": "scene", "imagenet1k": "scene"}
# Scene sets whose labels are not all places: the data file listing the ones that are.
PLACE_SUBSETS: dict[str, str] = {"imagenet1k": "imagenet_places.tsv"}
_DATA = Path(__file__).parent / "data"


@functools.cache
def place_labels(label_set: str) -> frozenset[str] | None:
    """The labels of ``label_set`` that are places, when only some are (``PLACE_SUBSETS``);
    None when the set's role applies to all its labels."""
    file = PLACE_SUBSETS.get(label_set)
    if file is None:
        return None
    lines = (_DATA / file).read_text(encoding="utf-8").splitlines()
    return frozenset(ln.split("\t")[2] for ln in lines if ln.strip() and not ln.startswith("#"))


def label_role(label_set: str, name: str) -> Role:
    """The role of one label: its set's role, except in sets that mix places with other
    things (``PLACE_SUBSETS``), where only the listed places are ``scene`` and the rest
    ``other``."""
    places = place_labels(label_set)
    if places is None:
        return role_of(label_set)
    return "scene" if name in places else "other"


def role_of(name: str) -> Role:
    """The role of a label set by name: ``ROLES``, else ``other``."""
    return ROLES.get(name, "other")


def sets_with_role(names, role: Role) -> tuple[str, ...]:
    """The names among ``names`` whose role is ``role``, in the given order."""
    return tuple(n for n in names if role_of(n) == role)


@dataclass(frozen=True)
class LabelSet:
    """An ordered vocabulary and how its logits become probabilities.

    ``sigmoid``: independent labels (objects); ``softmax``: one distribution (scenes).
    ``role`` follows from the name (``role_of``); it is not part of the fingerprint.
    """

    name: str
    activation: Activation
    labels: tuple[str, ...]

    @property
    def role(self) -> Role:
        return role_of(self.name)

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
