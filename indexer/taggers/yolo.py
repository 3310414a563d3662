"""Ultralytics YOLO as a frame tagger, with the thesis's max-over-candidates rule.

Thesis 5.1.1 (figure 5.6): no non-max suppression; for each of the 80 classes take the maximum
class logit over all candidate boxes. In eval mode the Ultralytics ``Detect`` head returns
``(decoded, raw)`` where ``raw["scores"]`` is [B, nc, anchors] of class logits (the sigmoid is
applied only to the decoded copy). End-to-end heads (YOLOv10/26) nest that dict under
``one2many``/``one2one``; we take the one-to-many candidates, the pre-NMS set.
"""

from __future__ import annotations

import numpy as np
import torch

from indexer.taggers.base import RuntimeContext, TaggerError, file_id
from indexer.taggers.labels import COCO80
from indexer.taggers.preprocess import letterbox
from indexer.taggers.registry import register_tagger
from indexer.taggers.torch_tagger import TorchTagger
from indexer.weights import ModelResolver
from tvindex.core.labels import LabelSet
from tvindex.settings import YoloSettings


def raw_class_logits(head_output: object) -> torch.Tensor:
    """The Detect head's eval output -> raw class logits [B, nc, anchors]."""
    if not (isinstance(head_output, (tuple, list)) and len(head_output) == 2):
        raise TaggerError("unexpected YOLO output: expected (decoded, raw) from the Detect head")
    raw = head_output[1]
    if isinstance(raw, dict) and "one2many" in raw:
        raw = raw["one2many"]
    if not isinstance(raw, dict) or "scores" not in raw:
        raise TaggerError("unexpected YOLO output: no raw 'scores' in the Detect head output")
    return raw["scores"]


def max_over_candidates(scores: torch.Tensor) -> torch.Tensor:
    """[B, nc, anchors] logits -> [B, nc]: the max over all candidate boxes, per class."""
    return scores.amax(dim=2)


def ultralytics_tasks():
    """``ultralytics.nn.tasks``, imported without Ultralytics' process-wide side effect: on
    import it replaces ``PIL.Image.open`` with a wrapper that, the first time Pillow cannot
    identify a file, tries to pip-install a HEIF plugin. Our upload validation (query by
    example) must get Pillow's own answer, so Pillow's function is put back."""
    from PIL import Image

    original = Image.open
    try:
        from ultralytics.nn import tasks
    finally:
        Image.open = original
    return tasks


def load_yolo(weights: str, models: ModelResolver) -> torch.nn.Module:
    """A ``.yaml`` builds the architecture with random weights (Ultralytics' bundled model
    files, for tests); anything else is a checkpoint found by the model resolver."""
    tasks = ultralytics_tasks()
    if weights.endswith((".yaml", ".yml")):
        return tasks.DetectionModel(weights, nc=80, verbose=False)
    path = models.resolve(weights, config_key="taggers.yolo.weights")
    model, _ = tasks.load_checkpoint(path)
    return model


@register_tagger("yolo")
class YoloTagger(TorchTagger):
    def __init__(self, cfg: YoloSettings, ctx: RuntimeContext) -> None:
        super().__init__(ctx)
        self.image_size = cfg.image_size
        model = load_yolo(cfg.weights, ctx.models)
        names = getattr(model, "names", None)
        if isinstance(names, dict) and len(names) != 80:
            raise TaggerError(f"{cfg.weights}: a COCO model with 80 classes is needed, "
                              f"it has {len(names)}")
        self.model = self._finish_model(model)
        self.label_sets: tuple[LabelSet, ...] = (COCO80,)
        self.weights_id = cfg.weights if cfg.weights.endswith((".yaml", ".yml")) else file_id(
            ctx.models.resolve(cfg.weights))

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        return letterbox(frame, self.image_size)

    def forward_outputs(self, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], None]:
        # A detector: no pooled image features (embedding_dim stays 0).
        return {"coco80": max_over_candidates(raw_class_logits(self.model(batch)))}, None
