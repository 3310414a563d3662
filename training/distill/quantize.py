"""The exported student in INT8: onnxruntime's static quantisation, calibrated on real frames.

QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantised operator, which
onnxruntime's CPU provider fuses into integer kernels), weights signed 8-bit per output
channel, activations unsigned 8-bit per tensor (U8S8: the fast path on x86 with AVX2 or
VNNI). Activation ranges come from running the fp32 model on calibration frames preprocessed
exactly as the tagger does: the train split of a transfer set (frames the student was
trained on, so the test split stays unseen) or every image in a folder. The ranges are the
0.001-99.999 percentiles of each activation's histogram (``percentile``, the default): on the
production student min-max ranges cost 0.016 of scene nDCG@5 on the test split, percentiles
0.008 (entropy: as min-max).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.taggers.student_onnx import INPUT_NAME, read_sidecar, write_sidecar
from training.distill.export import (
    compare,
    onnx_outputs,
    output_names,
    preprocess_frames,
    torch_outputs,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _spread(items: list, limit: int) -> list:
    """At most ``limit`` items, evenly spaced over the list (deterministic)."""
    if len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def frames_from(source: str | Path, limit: int, split: str = "train"
                ) -> tuple[list[np.ndarray], str]:
    """Real frames for calibration or checking, and a description of where they came from.

    ``source``: a transfer set (``tvindex train extract --out``; its ``split`` rows, whole
    frames) or a folder of images (every image below it, in name order). At most ``limit``,
    evenly spaced over what is there.
    """
    from training.distill.transfer import TransferSet
    from training.distill.transfer.frames import read_image
    from training.distill.transfer.layout import INDEX_FILE

    root = Path(source)
    if (root / INDEX_FILE).is_file():
        rows = list(TransferSet(root).rows(split))
        rows = _spread(rows, limit)
        return [r.image() for r in rows], f"transfer set {root} ({split} split, {len(rows)} frames)"
    if not root.is_dir():
        raise ValueError(f"{root}: neither a transfer set nor a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) below it")
    paths = _spread(paths, limit)
    return [read_image(p) for p in paths], f"folder {root} ({len(paths)} images)"


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over a preprocessed array."""

    def __init__(self, x: np.ndarray, batch_size: int) -> None:
        self.x, self.batch_size = x, batch_size
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self.x), self.batch_size):
            yield {INPUT_NAME: self.x[start:start + self.batch_size]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def calibration_reader(x: np.ndarray, batch_size: int = 16):
    """A ``CalibrationDataReader`` over preprocessed calibration frames, in batches of one
    size (the histogram calibrators stack batches: the largest divisor of the frame count
    up to ``batch_size``)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(_Batches, CalibrationDataReader):
        pass

    size = next(b for b in range(min(batch_size, len(x)), 0, -1) if len(x) % b == 0)
    return Reader(x, size)


def quantize_int8(fp32: str | Path, out: str | Path, calibration: Sequence[np.ndarray],
                  calibration_from: str, *, checkpoint_model=None,
                  check_frames: Sequence[np.ndarray] = (), check_from: str = "",
                  method: str = "percentile", per_channel: bool = True,
                  keep_float: Sequence[str] = ()) -> dict[str, Any]:
    """Quantise the fp32 export ``fp32`` to ``out`` (+ sidecar), calibrated on ``calibration``
    frames; with ``checkpoint_model`` (the PyTorch student) the result is checked against it on
    ``check_frames``. ``keep_float``: operator types left in fp32 (e.g. ``Gemm``: the heads).
    Returns the report."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}")
    if not calibration:
        raise ValueError("no calibration frames")
    fp32, out = Path(fp32), Path(out)
    t0 = time.perf_counter()
    meta = read_sidecar(fp32)
    x = preprocess_frames(calibration, meta)
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="tvindex-int8-") as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # Shape inference and graph clean-up first, as onnxruntime recommends before
        # quantising (better fusion of the quantised graph).
        quant_pre_process(str(fp32), str(pre))
        import onnx

        excluded = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in keep_float]
        # onnxruntime's calibrators print progress on stdout, which is for reports (--json).
        with contextlib.redirect_stdout(sys.stderr):
            quantize_static(str(pre), str(q), calibration_reader(x), nodes_to_exclude=excluded,
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=methods[method],
                            extra_options={"ActivationSymmetric": False,
                                           "WeightSymmetric": True})
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(out.name + ".tmp")
        shutil.copyfile(q, part)
        part.replace(out)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "model_sha256",
                                                       "verification")}
    meta["precision"] = "int8"
    meta["quantization"] = {
        "how": "onnxruntime.quantization.quantize_static", "format": "QDQ",
        "weights": "int8 symmetric" + (" per channel" if per_channel else " per tensor"),
        "activations": "uint8 asymmetric per tensor", "calibration": method,
        "kept_float": sorted(keep_float),
        "calibration_frames": len(x), "calibration_from": calibration_from,
        "fp32_model_sha256": read_sidecar(fp32)["model_sha256"]}
    report: dict[str, Any] = {"model": str(out), "precision": "int8",
                              "bytes": out.stat().st_size, "quantization": meta["quantization"]}
    if checkpoint_model is not None and len(check_frames):
        cx = preprocess_frames(check_frames, meta)
        n_heads = len(meta["label_sets"])
        meta["verification"] = {
            "frames": len(cx), "frames_from": check_from,
            "against": "PyTorch student (fp32, CPU)",
            "outputs": compare(torch_outputs(checkpoint_model, cx),
                               onnx_outputs(out, cx, n_heads), output_names(n_heads))}
        report["verification"] = meta["verification"]
    write_sidecar(out, meta)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def int8_path(fp32: str | Path) -> Path:
    """``var/models/student.onnx`` -> ``var/models/student.int8.onnx``."""
    fp32 = Path(fp32)
    stem = fp32.name.removesuffix(".onnx")
    return fp32.with_name(f"{stem}.int8.onnx")
