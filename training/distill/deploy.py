"""``tvindex train export``: a student checkpoint to ONNX (``export``) and INT8 (``quantize``),
both checked against PyTorch on real frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.taggers.student import build_student, read_checkpoint
from training.distill.export import export_onnx, random_frames
from training.distill.quantize import frames_from, int8_path, quantize_int8


def export_student(settings, checkpoint: str | Path | None, out: str | Path, *,
                   int8: bool = False, calibration: str | Path | None = None,
                   calibration_frames: int = 256, calibration_method: str = "percentile",
                   check: str | Path | None = None, check_frames: int = 64) -> dict[str, Any]:
    """``tvindex train export``: the checkpoint (default ``taggers.student.checkpoint``) to
    ONNX at ``out``, and with ``int8`` to ``NAME.int8.onnx`` too. Both are checked against
    PyTorch on real frames: ``check``, else the validation split of the transfer set the
    student was trained on, else the calibration folder; random frames only when none of these
    exists (the report says which)."""
    from indexer.weights import ModelResolver

    if checkpoint is None:
        checkpoint = ModelResolver.from_settings(settings).resolve(
            settings.taggers.student.checkpoint, config_key="taggers.student.checkpoint")
    checkpoint = Path(checkpoint)
    data = read_checkpoint(checkpoint)
    root = (data.get("transfer") or {}).get("root")
    trained_on = Path(root) if root and (Path(root) / "index.json").is_file() else None
    source = check or trained_on or calibration
    if source is not None:
        frames, where = frames_from(source, check_frames, "val")
    else:
        frames, where = random_frames(check_frames), "random frames (no real frames at hand)"
    models = [export_onnx(checkpoint, out, frames, where)]
    if int8:
        if calibration is None:
            raise ValueError("INT8 needs calibration frames (--calibration DIR)")
        cal, cal_from = frames_from(calibration, calibration_frames, "train")
        models.append(quantize_int8(out, int8_path(out), cal, cal_from,
                                    checkpoint_model=build_student(data).eval(),
                                    check_frames=frames, check_from=where,
                                    method=calibration_method))
    return {"checkpoint": str(checkpoint), "models": models}
