"""COCO SSD-MobileNet-v2 (TFLite, uint8) as a frame tagger, with the thesis's tagging rule.

The thesis (5.1.1, figure 5.6) tags a frame with, for each class, the maximum class logit over
all candidate boxes before non-max suppression. In this graph the candidates are the 1917
anchors: the tensor ``concat`` [1, 1917, 91] holds their raw class logits (uint8, dequantised
with its scale and zero point) and feeds ``convert_scores`` (a sigmoid) and the post-processing
op. We read ``concat`` instead of the 20 post-processed boxes. Column 0 is background and is
dropped; the label file numbers classes in COCO's 91-id scheme (with gaps), so columns map to
``coco80`` by sorting those ids: column = file id + 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from indexer.taggers.base import RuntimeContext, Tagger, TaggerError, file_id
from indexer.taggers.labels import COCO80, COCO80_NAMES
from indexer.taggers.registry import register_tagger
from tvindex.core.labels import LabelSet
from tvindex.settings import TfliteDetectorSettings

RAW_LOGITS_TENSOR = "concat"


def read_coco91_labels(path: Path) -> dict[int, str]:
    """Lines 'ID  name' -> {id: name} (COCO 91-id scheme, 0-based, with gaps)."""
    labels: dict[int, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        head, _, name = line.strip().partition(" ")
        if not head.isdigit() or not name.strip():
            raise TaggerError(f"{path}:{n}: expected 'ID name', got {line!r}")
        labels[int(head)] = name.strip()
    return labels


def coco80_columns(labels: dict[int, str]) -> np.ndarray:
    """Indices into the 91 class columns, in coco80 order (column = id + 1, background = 0)."""
    ids = sorted(labels)
    if len(ids) != len(COCO80_NAMES):
        raise TaggerError(f"expected 80 COCO labels, the label file has {len(ids)}")
    mismatched = [(labels[i], want) for i, want in zip(ids, COCO80_NAMES) if labels[i] != want]
    if mismatched:
        raise TaggerError(f"label file does not follow COCO order: {mismatched[:3]}")
    return np.asarray(ids, dtype=np.int64) + 1


def max_over_anchors(raw_logits: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """[B, anchors, 91] logits -> [B, 80]: per class, the max over anchors (thesis fig. 5.6)."""
    return raw_logits[:, :, columns].max(axis=1)


@register_tagger("tflite-detector")
class TfliteDetectorTagger(Tagger):
    def __init__(self, cfg: TfliteDetectorSettings, ctx: RuntimeContext) -> None:
        model_path = ctx.models.resolve(cfg.weights, config_key="taggers.tflite-detector.weights")
        labels_path = ctx.models.resolve(cfg.labels, config_key="taggers.tflite-detector.labels")
        self.columns = coco80_columns(read_coco91_labels(labels_path))
        self.label_sets: tuple[LabelSet, ...] = (COCO80,)
        self.weights_id = file_id(model_path)
        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():
            # preserve_all_tensors is what makes the intermediate logits readable.
            warnings.simplefilter("ignore", UserWarning)
            self.interpreter = Interpreter(
                str(model_path), num_threads=cfg.threads, experimental_preserve_all_tensors=True
            )
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.input_size = int(inp["shape"][1])
        self.input_dtype = inp["dtype"]
        raw = [d for d in self.interpreter.get_tensor_details() if d["name"] == RAW_LOGITS_TENSOR]
        if not raw or raw[0]["shape"][-1] != 91:
            raise TaggerError(f"{model_path}: no [1, anchors, 91] tensor named {RAW_LOGITS_TENSOR!r}")
        self.raw_index = raw[0]["index"]
        self.raw_scale, self.raw_zero = raw[0]["quantization"]

    def raw_logits(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> dequantised per-anchor class logits [anchors, 91]."""
        # Stretched to the square input, not letterboxed: the TF Object Detection API trained
        # it on stretched images, and on the shared footage stretching found person and bicycle
        # together in the bikes.mp4 cyclist frames where letterboxing missed the bicycle.
        image = cv2.resize(frame, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
        self.interpreter.set_tensor(self.input_index, image[None].astype(self.input_dtype))
        self.interpreter.invoke()
        q = self.interpreter.get_tensor(self.raw_index)[0].astype(np.float32)
        if self.raw_scale:
            q = (q - self.raw_zero) * self.raw_scale
        return q

    def predict(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        if not len(frames):
            return {"coco80": np.zeros((0, 80), np.float32)}
        raw = np.stack([self.raw_logits(f) for f in frames])
        return {"coco80": max_over_anchors(raw, self.columns).astype(np.float32)}
