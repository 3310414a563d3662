"""The ``taggers.student-onnx`` section: the distilled student exported to ONNX and run on
onnxruntime (``indexer/taggers/student_onnx.py``; README, "Student network")."""

from __future__ import annotations

from pydantic import Field

from tvindex.settings.base import _Section


class StudentOnnxSettings(_Section):
    # The ONNX file written by `tvindex train export --format onnx [--int8]`; its JSON sidecar
    # (FILE.json) must sit beside it. Resolved like the student's checkpoint.
    model: str = "var/models/student.int8.onnx"
    # onnxruntime intra-op threads; null = onnxruntime's default (one per physical core).
    threads: int | None = Field(None, ge=1, le=256)
