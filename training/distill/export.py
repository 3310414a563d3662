"""The trained student to ONNX for the ``student-onnx`` tagger (``tvindex train export``).

The graph is the student's whole inference: the normalised input ``[B, 3, S, S]`` float32
(batch dynamic, size fixed at the checkpoint's) to one logits tensor per label set and the
pooled penultimate features, the outputs the PyTorch tagger gives. It is made by
``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript): on EfficientNet-Lite that
gives a clean graph of ~95 nodes (convolutions with batch norm folded in, Clip for ReLU6, the
TF "same" padding folded into each convolution), where the TorchScript exporter leaves some
630 nodes of shape arithmetic for the dynamic padding. The weights are kept inside the one
file, so its checksum names the model.

Every export is checked: onnx's checker, then onnxruntime against PyTorch on the frames given
(real frames from the transfer set or a folder of images, preprocessed as the tagger does);
the largest absolute difference of each output goes into the sidecar and the report.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indexer.taggers.preprocess import resize_to_input, to_chw_float
from indexer.taggers.student import StudentNet, build_student, read_checkpoint
from indexer.taggers.student_onnx import (
    FEATURES_OUTPUT,
    INPUT_NAME,
    logits_output,
    open_session,
    write_sidecar,
)
from indexer.weights import sha256_of

EXPORTER = "torch.onnx.export(dynamo=True)"
# Checkpoint keys copied into the sidecar (JSON-plain; the weights stay out).
_META_KEYS = ("arch", "image_size", "resize", "mean", "std", "loss", "transfer", "metrics",
              "feature_dim", "label_sets")


class _InferenceGraph(nn.Module):
    """The student as the tagger runs it: input -> (logits per label set..., features)."""

    def __init__(self, model: StudentNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.model.forward_features(x)
        heads = self.model.forward_heads(features)
        return (*(heads[name] for name in self.model.head_names), features)


def output_names(n_heads: int) -> list[str]:
    return [logits_output(i) for i in range(n_heads)] + [FEATURES_OUTPUT]


def preprocess_frames(frames: Sequence[np.ndarray], meta: dict[str, Any]) -> np.ndarray:
    """Frames -> the graph's input, exactly as the student taggers preprocess them."""
    size, resize = int(meta["image_size"]), str(meta["resize"])
    return to_chw_float([resize_to_input(f, size, resize) for f in frames],
                        tuple(meta["mean"]), tuple(meta["std"]))


def torch_outputs(model: StudentNet, x: np.ndarray, batch_size: int = 32) -> list[np.ndarray]:
    """The PyTorch student's outputs on a preprocessed batch, in the graph's output order."""
    graph = _InferenceGraph(model).eval()
    parts: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out = graph(torch.from_numpy(x[start:start + batch_size]))
            parts.append([o.float().numpy() for o in out])
    return [np.concatenate(p) for p in zip(*parts)]


def onnx_outputs(path: Path, x: np.ndarray, n_heads: int, batch_size: int = 32
                 ) -> list[np.ndarray]:
    session = open_session(path, "cpu")
    names = output_names(n_heads)
    parts = [session.run(names, {INPUT_NAME: x[s:s + batch_size]})
             for s in range(0, len(x), batch_size)]
    return [np.concatenate(p) for p in zip(*parts)]


def compare(reference: list[np.ndarray], other: list[np.ndarray], names: Sequence[str]
            ) -> dict[str, dict[str, float]]:
    """Per output: the largest and the mean absolute difference, and (for logits) the share of
    frames whose top-1 label agrees."""
    out: dict[str, dict[str, float]] = {}
    for name, a, b in zip(names, reference, other):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        row = {"max_abs_diff": float(d.max()) if d.size else 0.0,
               "mean_abs_diff": float(d.mean()) if d.size else 0.0,
               "max_abs_value": float(np.abs(a).max()) if a.size else 0.0}
        if name != FEATURES_OUTPUT and len(a):
            row["top1_agreement"] = float((a.argmax(1) == b.argmax(1)).mean())
        out[name] = {k: float(f"{v:.4g}") for k, v in row.items()}
    return out


def export_graph(model: StudentNet, image_size: int, out: Path) -> None:
    """Write ``model``'s inference graph to ``out`` (one file, dynamic batch)."""
    import onnx

    graph = _InferenceGraph(model).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    with tempfile.TemporaryDirectory(prefix="tvindex-onnx-") as tmp:
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(graph, (example,), str(raw), dynamo=True, external_data=False,
                          input_names=[INPUT_NAME],
                          output_names=output_names(len(model.head_names)),
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                          verbose=False)
        onnx.checker.check_model(str(raw), full_check=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".tmp")
        shutil.copyfile(raw, part)
        part.replace(out)


def sidecar_meta(data: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's self-description, plus where it came from, for the sidecar."""
    meta = {k: data[k] for k in _META_KEYS if k in data}
    meta["label_sets"] = [{**dict(ls), "output": logits_output(i)}
                          for i, ls in enumerate(data["label_sets"])]
    meta["source_checkpoint"] = {"path": str(checkpoint), "sha256": sha256_of(checkpoint)}
    meta["exporter"] = {"how": EXPORTER, "torch": torch.__version__}
    return meta


def export_onnx(checkpoint: str | Path, out: str | Path, frames: Sequence[np.ndarray],
                frames_from: str = "") -> dict[str, Any]:
    """Export a student checkpoint to ``out`` (+ sidecar) and check it against PyTorch on
    ``frames``; returns the report (paths, seconds, differences per output)."""
    import onnx

    checkpoint, out = Path(checkpoint), Path(out)
    t0 = time.perf_counter()
    data = read_checkpoint(checkpoint)
    model = build_student(data).eval()
    meta = sidecar_meta(data, checkpoint)
    meta.setdefault("feature_dim", model.feature_dim)
    export_graph(model, int(data["image_size"]), out)
    names = output_names(len(model.head_names))
    x = preprocess_frames(frames, meta)
    diff = compare(torch_outputs(model, x), onnx_outputs(out, x, len(model.head_names)), names)
    proto = onnx.load(str(out), load_external_data=False)
    meta["exporter"]["opset"] = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    meta["precision"] = "fp32"
    meta["verification"] = {"frames": len(x), "frames_from": frames_from,
                            "against": "PyTorch student (fp32, CPU)", "outputs": diff}
    write_sidecar(out, meta)
    return {"model": str(out), "precision": "fp32", "bytes": out.stat().st_size,
            "nodes": len(proto.graph.node), "opset": meta["exporter"]["opset"],
            "exporter": EXPORTER, "checkpoint": str(checkpoint),
            "seconds": round(time.perf_counter() - t0, 1), "verification": meta["verification"]}


def random_frames(n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Stand-in frames when no real ones are at hand (tests; the report says so)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(90, 300), rng.integers(120, 400), 3), np.uint8)
            for _ in range(n)]


def onnx_path_settings(settings, model: str | Path):
    """``settings`` with the student-onnx tagger pointed at ``model``."""
    section = settings.taggers.student_onnx.model_copy(update={"model": str(model)})
    taggers = settings.taggers.model_copy(update={"student_onnx": section})
    return settings.model_copy(update={"taggers": taggers})

