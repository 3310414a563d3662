"""Any timm image classifier with a local weights file, as a frame tagger (softmax logits).

Here: EfficientNet-Lite0 trained on ImageNet-1k (``../shared/models``), the stand-in scene
teacher on machines without Places365 weights. Its file uses lukemelas-style key names whose
order matches timm's ``tf_efficientnet_lite0`` one-to-one, so when names differ we map by
position after checking every shape.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.taggers.base import RuntimeContext, TaggerError, file_id
from indexer.taggers.labels import imagenet1k, read_label_file
from indexer.taggers.preprocess import center_crop
from indexer.taggers.registry import register_tagger
from indexer.taggers.torch_tagger import TorchTagger
from tvindex.core.labels import LabelSet
from tvindex.settings import TimmClassifierSettings


def map_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return ``state`` keyed by the model's own names: as is when the names match, else by
    position (same count, same shapes, in order)."""
    own = model.state_dict()
    if set(state) == set(own):
        return state
    if len(state) != len(own):
        raise TaggerError(f"weights have {len(state)} tensors, the model {len(own)}")
    mapped = {}
    for (theirs, value), (mine, ref) in zip(state.items(), own.items()):
        if tuple(value.shape) != tuple(ref.shape):
            raise TaggerError(f"weight {theirs} {tuple(value.shape)} does not fit {mine} "
                              f"{tuple(ref.shape)}")
        mapped[mine] = value
    return mapped


@register_tagger("timm-classifier")
class TimmClassifierTagger(TorchTagger):
    def __init__(self, cfg: TimmClassifierSettings, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        import timm

        self.mean, self.std, self.image_size = cfg.mean, cfg.std, cfg.image_size
        if cfg.labels:
            names = read_label_file(ctx.models.resolve(cfg.labels, config_key="taggers.timm-classifier.labels"))
            label_set = LabelSet(cfg.label_set, "softmax", names)
        elif cfg.label_set == "imagenet1k":
            label_set = imagenet1k()
        else:
            raise TaggerError("taggers.timm-classifier.labels: a label file is needed for label "
                              f"set {cfg.label_set!r} (only imagenet1k has built-in names)")
        weights = ctx.models.resolve(cfg.weights, config_key="taggers.timm-classifier.weights")
        try:
            model = timm.create_model(cfg.arch, pretrained=False, num_classes=len(label_set))
        except RuntimeError as exc:
            raise TaggerError(f"taggers.timm-classifier.arch: {exc}") from exc
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(map_state_dict(model, state))
        self.model = self._finish_model(model)
        self.label_sets = (label_set,)
        self.weights_id = file_id(weights)
        # What forward_head(pre_logits=True) returns: num_features, or the width of a head's
        # own hidden layer where it has one (MobileNetV3's conv_head).
        self.embedding_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return center_crop(frame, self.image_size)

    def forward_outputs(self, batch: torch.Tensor
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        # model(x) is forward_head(forward_features(x)); the backbone runs once, and the
        # pooled pre-logits features are the head's input (pooling twice is negligible, and
        # keeps the logits exactly model(x) whatever the head does before its classifier).
        f = self.model.forward_features(batch)
        logits = self.model.forward_head(f)
        return {self.label_sets[0].name: logits}, self.model.forward_head(f, pre_logits=True)
