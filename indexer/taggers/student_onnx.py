"""The distilled student exported to ONNX, run on onnxruntime: the ``student-onnx`` tagger.

``tvindex train export --format onnx [--int8 --calibration DIR]`` (``training.distill.export``)
writes the model (one file, weights inside) and a JSON sidecar beside it (``FILE.onnx.json``)
that holds everything else this tagger needs: input size, resize rule, normalisation, the
label sets with the output that carries each, the embedding's size, and the checksums of the
ONNX file and of the PyTorch checkpoint it came from. The graph takes the tagger's normalised
input ``[B, 3, S, S]`` float32 (dynamic batch) and returns one logits tensor per label set and
the pooled penultimate features, exactly the PyTorch student's outputs
(``indexer.taggers.student``), so the two students' catalogues are comparable.

onnxruntime runs on the CPU, or with the CUDA provider when ``taggers.device`` asks for (or
``auto`` finds) one. Frames are preprocessed as the PyTorch student does them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.taggers.base import RuntimeContext, Tagger, TaggerError
from indexer.taggers.preprocess import resize_to_input, to_chw_float
from indexer.taggers.registry import register_tagger
from indexer.weights import ModelNotFoundError, sha256_of
from tvindex.core.labels import LabelSet

SIDECAR_FORMAT = "tvindex-student-onnx"
SIDECAR_VERSION = 1
INPUT_NAME = "input"
FEATURES_OUTPUT = "features"
# What makes the default model (for error messages).
HOW_TO_EXPORT = ("tvindex train export --format onnx --int8 --calibration var/transfer/offline "
                 "(after `tvindex train fit --config config/train/student.yaml`)")
_REQUIRED = ("image_size", "resize", "mean", "std", "feature_dim", "label_sets", "model_sha256")


def sidecar_path(model: str | Path) -> Path:
    """Where the JSON that describes ``model`` lives: ``FILE.onnx`` -> ``FILE.onnx.json``."""
    model = Path(model)
    return model.with_name(model.name + ".json")


def logits_output(index: int) -> str:
    """The graph output that carries the ``index``-th label set's logits (label-set names may
    hold characters an output name should not)."""
    return f"logits_{index}"


def read_sidecar(model: str | Path) -> dict[str, Any]:
    """The sidecar of ``model``, checked (format, version, required keys); TaggerError names
    what is wrong."""
    path = sidecar_path(model)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaggerError(f"{model}: no sidecar {path.name} beside it (the export writes both; "
                          f"re-run `{HOW_TO_EXPORT}`)") from None
    except (OSError, ValueError) as exc:
        raise TaggerError(f"{path}: not a readable JSON sidecar ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise TaggerError(f"{path}: not a tvindex student-onnx sidecar (no format marker)")
    if int(data.get("version", 0)) > SIDECAR_VERSION:
        raise TaggerError(f"{path}: sidecar version {data['version']} is newer than this tvindex "
                          f"understands ({SIDECAR_VERSION})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise TaggerError(f"{path}: sidecar lacks {missing}")
    return data


def write_sidecar(model: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``meta`` (plain JSON) as ``model``'s sidecar, atomically, with the format marker
    and the ONNX file's sha256 (the file must already be in place)."""
    missing = [k for k in _REQUIRED if k not in meta and k != "model_sha256"]
    if missing:
        raise ValueError(f"sidecar metadata lacks {missing}")
    path = sidecar_path(model)
    data = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **dict(meta),
            "model_sha256": sha256_of(Path(model))}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for ``taggers.device``: auto -> CUDA when onnxruntime
    has it (a GPU build) else CPU; cuda / cuda:N without it is an error."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cpu" or (device == "auto" and not has_cuda):
        return ["CPUExecutionProvider"]
    if not has_cuda:
        raise TaggerError(f"taggers.device is {device!r} but this onnxruntime has no CUDA "
                          f"provider (available: {', '.join(available)}); install "
                          "onnxruntime-gpu or set taggers.device: cpu")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def open_session(path: str | Path, device: str = "cpu", threads: int | None = None):
    """An onnxruntime session for ``path`` with every graph optimisation on; ``threads``:
    intra-op threads (None: onnxruntime's default, one per physical core).

    Its threads sleep when they run out of work instead of spinning (onnxruntime's default
    spins): when indexing, the decode workers share the cores with the tagger, and spinning
    took cycles they needed. A 1-hour keyframes catalogue with 2 decode workers on 2 cores
    indexed a median 11 % faster without it (3-15 %, 7 interleaved rounds); the tagger
    alone ran as fast (within the rounds' spread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = providers_for(device)
    if device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise TaggerError(f"{path}: onnxruntime cannot load it ({exc})") from exc


@register_tagger("student-onnx")
class StudentOnnxTagger(Tagger):
    """The exported student on onnxruntime: one run gives every label set's logits and the
    frame embedding. ``identity()`` names the ONNX file's checksum, so an export with other
    weights (or INT8 instead of fp32) makes indexed episodes stale."""

    def __init__(self, cfg, ctx: RuntimeContext) -> None:
        model = getattr(cfg, "model", None)
        if not model:
            raise TaggerError("taggers.student-onnx.model is not set")
        try:
            path = ctx.models.resolve(model, config_key="taggers.student-onnx.model")
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{exc}. The ONNX student is made by `{HOW_TO_EXPORT}` "
                                     "(see README, 'Student network')") from None
        meta = read_sidecar(path)
        digest = sha256_of(path)
        if digest != meta["model_sha256"]:
            raise TaggerError(f"{path}: the file's sha256 is not the one its sidecar names "
                              f"({sidecar_path(path).name}): export them again together")
        self.model_path = path
        self.meta = meta
        self.weights_id = digest[:16]
        self.image_size = int(meta["image_size"])
        self.resize = str(meta["resize"])
        self.mean, self.std = tuple(meta["mean"]), tuple(meta["std"])
        self.label_sets = tuple(LabelSet(ls["name"], ls["activation"], tuple(ls["labels"]))
                                for ls in meta["label_sets"])
        self.outputs = [str(ls.get("output", logits_output(i)))
                        for i, ls in enumerate(meta["label_sets"])]
        self.embedding_dim = int(meta["feature_dim"])
        self.batch_size = ctx.batch_size
        self.threads = getattr(cfg, "threads", None)
        self.session = open_session(path, ctx.device, self.threads)
        names = {o.name for o in self.session.get_outputs()}
        wanted = [*self.outputs, FEATURES_OUTPUT]
        if not set(wanted) <= names:
            raise TaggerError(f"{path}: the graph lacks outputs {sorted(set(wanted) - names)}")
        self.precision = str(meta.get("precision", "fp32"))

    def identity(self) -> str:
        # The checksum names the file (fp32 and INT8 differ); the input size is the file's own.
        return f"{super().identity()}:{self.image_size}"

    def to_input(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> the graph's normalised [B, 3, S, S] float32 input."""
        images = [resize_to_input(f, self.image_size, self.resize) for f in frames]
        return to_chw_float(images, self.mean, self.std)

    def run_batch(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One preprocessed batch -> ({label set: logits}, features)."""
        values = self.session.run([*self.outputs, FEATURES_OUTPUT], {INPUT_NAME: x})
        logits = {ls.name: np.asarray(v, np.float32)
                  for ls, v in zip(self.label_sets, values[:-1])}
        return logits, np.asarray(values[-1], np.float32)

    def predict(self, frames: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return self.predict_with_embeddings(frames)[0]

    def predict_with_embeddings(self, frames: Sequence[np.ndarray]
                                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        logits: dict[str, list[np.ndarray]] = {ls.name: [] for ls in self.label_sets}
        feats: list[np.ndarray] = []
        for start in range(0, len(frames), self.batch_size):
            out, f = self.run_batch(self.to_input(frames[start:start + self.batch_size]))
            for name, value in out.items():
                logits[name].append(value)
            feats.append(f)
        result = {ls.name: (np.concatenate(logits[ls.name]) if logits[ls.name]
                            else np.zeros((0, len(ls)), np.float32)) for ls in self.label_sets}
        features = (np.concatenate(feats) if feats
                    else np.zeros((0, self.embedding_dim), np.float32))
        return result, features

    def features(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> pooled penultimate features [B, F] float32 (as the PyTorch student's)."""
        return self.predict_with_embeddings(frames)[1]
