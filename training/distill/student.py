"""Building a student for training: backbone initialisation from ImageNet weights, freezing,
and the metadata that makes its checkpoint self-describing. The network itself and the
checkpoint format live with the tagger (``indexer.taggers.student``), which needs no training
code to run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from indexer.taggers.base import TaggerError
from indexer.taggers.student import StudentNet
from indexer.taggers.timm_classifier import map_state_dict
from indexer.weights import ModelResolver
from training.distill.config import StudentConfig
from tvindex.core.labels import LabelSet
from tvindex.settings import Settings


def _classifier_size(state: dict[str, torch.Tensor]) -> int:
    """Classes of the file's classifier: rows of its last 2-D tensor (the final linear layer)."""
    for value in reversed(list(state.values())):
        if value.ndim == 2:
            return int(value.shape[0])
    raise TaggerError("the weights file has no 2-D (linear) tensor to infer its classes from")


def pretrained_backbone(arch: str, weights: Path) -> nn.Module:
    """A timm backbone (no classifier) initialised from an ImageNet weights file.

    Names may differ from timm's (the shared Lite0 file uses lukemelas-style keys): then the
    file is loaded into a full model by position, as the ``timm-classifier`` tagger does, and
    the classifier is dropped.
    """
    import timm

    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    backbone = timm.create_model(arch, pretrained=False, num_classes=0)
    own = backbone.state_dict()
    if set(own) <= set(state):
        backbone.load_state_dict({k: state[k] for k in own})
        return backbone
    full = timm.create_model(arch, pretrained=False, num_classes=_classifier_size(state))
    full.load_state_dict(map_state_dict(full, state))
    full.reset_classifier(0)
    return full


def create_student(cfg: StudentConfig, label_sets: Sequence[LabelSet],
                   settings: Settings) -> StudentNet:
    """The student described by ``cfg``, one new head per label set."""
    backbone = None
    if cfg.init_weights:
        path = ModelResolver.from_settings(settings).resolve(cfg.init_weights, config_key="student.init_weights")
        backbone = pretrained_backbone(cfg.arch, path)
    try:
        model = StudentNet(cfg.arch, [(ls.name, len(ls)) for ls in label_sets],
                           drop_rate=cfg.drop_rate, backbone=backbone)
    except RuntimeError as exc:  # timm: unknown model
        raise TaggerError(f"student.arch: {exc}") from exc
    freeze(model, cfg.freeze)
    return model


def freeze(model: StudentNet, prefixes: Sequence[str]) -> list[str]:
    """Stop gradients for backbone parameters whose names start with one of ``prefixes``;
    returns the frozen names. Raises when a prefix matches nothing (a typo would otherwise
    silently train everything)."""
    frozen = []
    for prefix in prefixes:
        hits = [n for n, p in model.backbone.named_parameters()
                if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            raise ValueError(f"student.freeze: {prefix!r} matches no backbone parameter")
        for n, p in model.backbone.named_parameters():
            if n in hits:
                p.requires_grad_(False)
        frozen += hits
    model.frozen_prefixes = tuple(prefixes)  # type: ignore[attr-defined]
    return frozen


def set_train_mode(model: StudentNet) -> None:
    """``model.train()``, but frozen modules keep their batch-norm statistics (eval mode)."""
    model.train()
    for name, module in model.backbone.named_modules():
        if any(name == p or name.startswith(p + ".")
               for p in getattr(model, "frozen_prefixes", ())):
            module.eval()


def checkpoint_meta(cfg: StudentConfig, label_sets: Sequence[LabelSet],
                    teachers: dict[str, dict[str, str]], targets: dict[str, str]
                    ) -> dict[str, Any]:
    """What the tagger needs to rebuild and run the student, in plain containers.

    ``teachers``: per label set, the teacher's {name, identity}; ``targets``: per label set,
    the loss's target space (``logits`` or ``minmax-scaled``).
    """
    return {
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "resize": cfg.resize,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "drop_rate": cfg.drop_rate,
        "label_sets": [{"name": ls.name, "activation": ls.activation, "labels": list(ls.labels),
                        "teacher": dict(teachers.get(ls.name, {})),
                        "target": targets.get(ls.name, "logits")} for ls in label_sets],
    }
