"""The distilled student: one timm backbone, one linear head per teacher label set.

The checkpoint is self-describing, so this tagger needs no other file: backbone name, input
size and resize rule, normalisation, label sets (names, activations, labels), the teachers it
learned from, the loss it was trained with, its metrics, and the weights. ``training.distill``
writes it; :func:`read_checkpoint` / :func:`build_student` read it.

The network also exposes its pooled penultimate features (``forward_features``: [B, F]), the
frame embedding later issues build on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indexer.taggers.base import RuntimeContext, TaggerError, file_id
from indexer.taggers.preprocess import resize_to_input
from indexer.taggers.registry import register_tagger
from indexer.taggers.torch_tagger import TorchTagger
from indexer.weights import ModelNotFoundError
from tvindex.core.labels import LabelSet
from tvindex.settings import StudentSettings

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "tvindex-student"
CHECKPOINT_VERSION = 1
RESIZE_MODES = ("stretch", "center_crop", "letterbox")
# What `tvindex train fit` must be run with to make the default checkpoint (for error messages).
HOW_TO_TRAIN = "tvindex train fit --config config/train/student.yaml"


class StudentNet(nn.Module):
    """timm backbone (classifier removed, global pooling kept) + one linear head per label set.

    ``forward(x)``: x [B, 3, S, S] normalised float -> {label set: logits [B, n]}.
    ``forward_features(x)``: pooled penultimate features [B, F] (F = ``feature_dim``).
    Heads are an ``nn.ModuleList`` in label-set order (label-set names may hold characters
    a ``ModuleDict`` key may not).
    """

    def __init__(self, arch: str, heads: Sequence[tuple[str, int]], drop_rate: float = 0.2,
                 backbone: nn.Module | None = None) -> None:
        super().__init__()
        import timm

        self.arch = arch
        self.head_names = tuple(name for name, _ in heads)
        if len(set(self.head_names)) != len(self.head_names):
            raise ValueError(f"head names repeat: {self.head_names}")
        self.backbone = backbone if backbone is not None else timm.create_model(
            arch, pretrained=False, num_classes=0)
        self.feature_dim = int(self.backbone.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, n) for _, n in heads)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.dropout(features)
        return {name: head(f) for name, head in zip(self.head_names, self.heads)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_heads(self.forward_features(x))


def preprocess(frame: np.ndarray, size: int, resize: str = "stretch") -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [size, size, 3] uint8, by the checkpoint's resize rule.

    ``stretch`` (default) keeps the whole frame, as the SSD teacher sees it: objects at the
    edges of a wide broadcast frame stay in view. ``center_crop`` is the ImageNet/Places rule,
    ``letterbox`` pads with grey.
    """
    return resize_to_input(frame, size, resize)


def label_sets_from_meta(meta: Mapping[str, Any]) -> tuple[LabelSet, ...]:
    return tuple(LabelSet(ls["name"], ls["activation"], tuple(ls["labels"]))
                 for ls in meta["label_sets"])


def write_checkpoint(path: str | Path, model: StudentNet, meta: Mapping[str, Any]) -> Path:
    """Save ``meta`` (JSON-like: str, numbers, lists, dicts) and the weights, atomically.

    ``meta`` must hold: arch, image_size, resize, mean, std, label_sets (each name,
    activation, labels; optionally teacher and target). Plain containers only, so the file
    loads with ``torch.load(weights_only=True)``.
    """
    missing = {"arch", "image_size", "resize", "mean", "std", "label_sets"} - set(meta)
    if missing:
        raise ValueError(f"checkpoint metadata lacks {sorted(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **dict(meta),
               "feature_dim": model.feature_dim,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a student checkpoint (raises TaggerError with the reason)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TaggerError(f"{path}: not a readable student checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise TaggerError(f"{path}: not a tvindex student checkpoint (no format marker)")
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise TaggerError(f"{path}: checkpoint version {data['version']} is newer than this "
                          f"tvindex understands ({CHECKPOINT_VERSION})")
    return data


def build_student(data: Mapping[str, Any]) -> StudentNet:
    """The network described by a checkpoint's metadata, with its weights loaded."""
    heads = [(ls["name"], len(ls["labels"])) for ls in data["label_sets"]]
    try:
        model = StudentNet(data["arch"], heads, drop_rate=float(data.get("drop_rate", 0.0)))
        model.load_state_dict(data["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise TaggerError(f"student checkpoint does not fit its architecture "
                          f"{data.get('arch')!r}: {exc}") from exc
    return model


@register_tagger("student")
class StudentTagger(TorchTagger):
    """The distilled student as a tagger: one forward pass for every teacher's label set."""

    def __init__(self, cfg: StudentSettings, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        try:
            path = ctx.models.resolve(cfg.checkpoint, config_key="taggers.student.checkpoint")
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{exc}. A student checkpoint is made by training: "
                                     f"`{HOW_TO_TRAIN}` (see README, 'Student network')") from None
        data = read_checkpoint(path)
        self.checkpoint = path
        self.meta = {k: v for k, v in data.items() if k != "state_dict"}
        self.image_size = int(cfg.image_size or data["image_size"])
        self.resize = str(data["resize"])
        self.mean, self.std = tuple(data["mean"]), tuple(data["std"])
        self.label_sets = label_sets_from_meta(data)
        for ls in data["label_sets"]:
            if ls.get("target", "logits") != "logits":
                log.warning("%s: head %s was trained on %s targets; its probabilities are not "
                            "calibrated (rankings are)", path.name, ls["name"], ls["target"])
        self.model = self._finish_model(build_student(data))
        self.weights_id = file_id(path)
        self.embedding_dim = int(self.model.feature_dim)

    def identity(self) -> str:
        # The input size changes the outputs, and may be overridden in settings.
        return f"{super().identity()}:{self.image_size}"

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return preprocess(frame, self.image_size, self.resize)

    def forward_outputs(self, batch: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        features = self.model.forward_features(batch)
        return self.model.forward_heads(features), features

    def features(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> pooled penultimate features [B, F] float32 (the raw frame embeddings;
        the same pass as ``predict_with_embeddings``)."""
        return self.predict_with_embeddings(frames)[1]
