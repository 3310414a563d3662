"""The student exported to ONNX (``tvindex train export``) and the ``student-onnx`` tagger.

Quick tests export a tiny random student of the real format once per session through the real
CLI (fp32 and INT8, calibrated on a folder of drawn photos) and check: the export against
PyTorch, the sidecar, the tagger against the PyTorch student tagger, its identity and its
errors. The checks on the trained production student are ``slow``.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from indexer.taggers import TaggerError, tagger_from_settings
from indexer.taggers.student import build_student, read_checkpoint, write_checkpoint
from indexer.taggers.student_onnx import read_sidecar, sidecar_path
from indexer.weights import ModelNotFoundError
from tvindex.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _photo(path: Path, seed: int) -> None:
    """A drawn photo: a coloured background, a rectangle and a circle, noise."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(90, 200)), int(rng.integers(120, 260))
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    cv2.rectangle(img, (int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))),
                  (int(rng.integers(w // 2, w)), int(rng.integers(h // 2, h))), colour, -1)
    cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(5, 40)),
               tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img)


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, TVINDEX_DATA_DIR=str(cwd / "data"))
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@functools.lru_cache(maxsize=1)
def _tiny_export() -> tuple[Path, dict]:
    """Once per session: a tiny student (heads scaled so its logits vary from frame to frame)
    exported by the real CLI to fp32 and INT8, calibrated on 24 drawn photos."""
    from test_student import write_student_checkpoint

    root = Path(tempfile.mkdtemp(prefix="tvindex-test-onnx-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    photos = root / "photos"
    photos.mkdir()
    for i in range(24):
        _photo(photos / f"p{i:02d}.jpg", i)
    path = write_student_checkpoint(root, seed=3, image_size=48)
    data = read_checkpoint(path)
    model = build_student(data)
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(300.0)
    write_checkpoint(path, model, {k: v for k, v in data.items()
                                   if k not in ("state_dict", "format", "version",
                                                "feature_dim")})
    proc = cli("train", "export", str(path), "--format", "onnx", "--out",
               str(root / "student.onnx"), "--int8", "--calibration", str(photos),
               "--check", str(photos), "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root, json.loads(proc.stdout)


def tiny_onnx_student(folder: Path, precision: str = "fp32") -> Path:
    """Copy the session's tiny ONNX student (and its sidecar) into ``folder``; the path of the
    model (``fp32`` or ``int8``). Also used by tests/test_taggers.py."""
    root, _ = _tiny_export()
    name = "student.onnx" if precision == "fp32" else "student.int8.onnx"
    for src in (root / name, sidecar_path(root / name)):
        shutil.copyfile(src, folder / src.name)
    return folder / name


def onnx_settings(model: Path, **extra):
    return load_settings(overrides={"taggers.student-onnx.model": str(model),
                                    "taggers.device": "cpu", **extra}, environ={})


def frames(seed: int = 0, n: int = 7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(144, 176), (272, 640), (300, 300), (90, 160), (48, 48), (720, 1280), (200, 120)]
    return [rng.integers(0, 255, (*sizes[i % len(sizes)], 3), dtype=np.uint8) for i in range(n)]


# --- the export ------------------------------------------------------------------------------

def test_cli_export_writes_fp32_and_int8_checked_against_pytorch():
    root, report = _tiny_export()
    ckpt = root / "student.pt"
    assert report["checkpoint"] == str(ckpt)
    fp32, int8 = report["models"]
    assert fp32["precision"] == "fp32" and int8["precision"] == "int8"
    assert Path(fp32["model"]) == root / "student.onnx"
    assert Path(int8["model"]) == root / "student.int8.onnx"
    assert fp32["exporter"] == "torch.onnx.export(dynamo=True)" and fp32["opset"] >= 17
    for model in (fp32, int8):
        v = model["verification"]
        assert v["frames"] == 24 and "photos" in v["frames_from"]
        assert set(v["outputs"]) == {"logits_0", "logits_1", "features"}
    for name, o in fp32["verification"]["outputs"].items():
        assert o["max_abs_diff"] <= 1e-4 * max(1.0, o["max_abs_value"]), name
        assert o.get("top1_agreement", 1.0) == 1.0
    for name, o in int8["verification"]["outputs"].items():
        # 8 bits: within a few per cent of the output's range, the ranking mostly kept.
        assert 0 < o["max_abs_diff"] <= 0.08 * o["max_abs_value"], name
        assert o.get("top1_agreement", 1.0) >= 0.75, name
    q = int8["quantization"]
    assert q["format"] == "QDQ" and "per channel" in q["weights"]
    assert q["calibration_frames"] == 24 and "photos" in q["calibration_from"]
    assert int8["bytes"] < fp32["bytes"]


def test_sidecar_describes_the_model_and_its_source():
    root, _ = _tiny_export()
    ckpt = read_checkpoint(root / "student.pt")
    for name in ("student.onnx", "student.int8.onnx"):
        meta = read_sidecar(root / name)
        assert meta["model_sha256"] == _sha(root / name)
        assert meta["source_checkpoint"]["sha256"] == _sha(root / "student.pt")
        assert meta["image_size"] == 48 and meta["resize"] == "stretch"
        assert meta["mean"] == [0.5, 0.5, 0.5] and meta["std"] == [0.5, 0.5, 0.5]
        assert meta["feature_dim"] == ckpt["feature_dim"]
        assert [(ls["name"], ls["activation"], ls["labels"], ls["output"])
                for ls in meta["label_sets"]] == [
            (ls["name"], ls["activation"], ls["labels"], f"logits_{i}")
            for i, ls in enumerate(ckpt["label_sets"])]
    assert read_sidecar(root / "student.onnx")["precision"] == "fp32"
    int8 = read_sidecar(root / "student.int8.onnx")
    assert int8["precision"] == "int8"
    assert int8["quantization"]["fp32_model_sha256"] == _sha(root / "student.onnx")


def test_int8_needs_calibration_frames(tmp_path: Path):
    proc = cli("train", "export", str(tmp_path / "none.pt"), "--int8", cwd=tmp_path)
    assert proc.returncode != 0
    assert "--int8 needs --calibration" in proc.stderr
    assert not (tmp_path / "var").exists()


# --- the tagger ------------------------------------------------------------------------------

def test_onnx_tagger_gives_the_pytorch_students_outputs(tmp_path: Path):
    model = tiny_onnx_student(tmp_path)
    root, _ = _tiny_export()
    onnx_tagger = tagger_from_settings("student-onnx", onnx_settings(model, **{
        "taggers.batch_size": 3}))
    torch_tagger = tagger_from_settings("student", load_settings(overrides={
        "taggers.student.checkpoint": str(root / "student.pt"), "taggers.device": "cpu",
        "taggers.batch_size": 4}, environ={}))
    assert onnx_tagger.label_sets == torch_tagger.label_sets
    assert onnx_tagger.embedding_dim == torch_tagger.embedding_dim > 0
    batch = frames()  # 7 frames: batches of 3, 3, 1 (the batch axis is dynamic)
    logits, feats = onnx_tagger.predict_with_embeddings(batch)
    ref_logits, ref_feats = torch_tagger.predict_with_embeddings(batch)
    for ls in onnx_tagger.label_sets:
        assert logits[ls.name].shape == (7, len(ls)) and logits[ls.name].dtype == np.float32
        np.testing.assert_allclose(logits[ls.name], ref_logits[ls.name], atol=1e-4, rtol=1e-4)
        assert (logits[ls.name].argmax(1) == ref_logits[ls.name].argmax(1)).all()
    np.testing.assert_allclose(feats, ref_feats, atol=1e-5, rtol=1e-4)
    assert not np.allclose(logits[onnx_tagger.label_sets[0].name][0],
                           logits[onnx_tagger.label_sets[0].name][1])


def test_session_threads_sleep_instead_of_spinning(tmp_path: Path):
    """The decode workers share the cores with the tagger: its idle threads must not spin."""
    from indexer.taggers.student_onnx import open_session

    options = open_session(tiny_onnx_student(tmp_path), "cpu", 2).get_session_options()
    for pool in ("intra_op", "inter_op"):
        assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2


def test_identity_names_the_onnx_files_checksum(tmp_path: Path):
    fp32 = tagger_from_settings("student-onnx", onnx_settings(tiny_onnx_student(tmp_path)))
    int8 = tagger_from_settings("student-onnx",
                                onnx_settings(tiny_onnx_student(tmp_path, "int8")))
    assert _sha(fp32.model_path)[:16] in fp32.identity()
    assert fp32.identity().startswith("student-onnx:")
    assert fp32.identity() != int8.identity()
    assert int8.precision == "int8" and fp32.precision == "fp32"


def test_missing_model_says_how_to_export(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match="tvindex train export --format onnx"):
        tagger_from_settings("student-onnx", onnx_settings(tmp_path / "absent.onnx"))


def test_sidecar_must_be_present_and_match(tmp_path: Path):
    model = tiny_onnx_student(tmp_path)
    side = sidecar_path(model)
    meta = json.loads(side.read_text())
    meta["model_sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    with pytest.raises(TaggerError, match="sha256 is not the one its sidecar names"):
        tagger_from_settings("student-onnx", onnx_settings(model))
    side.unlink()
    with pytest.raises(TaggerError, match="no sidecar"):
        tagger_from_settings("student-onnx", onnx_settings(model))
    side.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TaggerError, match="not a tvindex student-onnx sidecar"):
        tagger_from_settings("student-onnx", onnx_settings(model))


def test_cuda_without_a_cuda_provider_is_refused(tmp_path: Path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(TaggerError, match="no CUDA provider"):
        tagger_from_settings("student-onnx", onnx_settings(tiny_onnx_student(tmp_path),
                                                           **{"taggers.device": "cuda"}))


def test_auto_embedding_prefers_the_onnx_student_like_the_pytorch_one(tmp_path: Path):
    from conftest import SHARED

    from indexer.embedder import embedder_candidates
    from indexer.frame_tagging import choose_embedder

    active = ["tflite-detector", "timm-classifier", "student-onnx"]
    assert embedder_candidates(active, "auto") == ["student-onnx", *active[:2]]
    assert embedder_candidates(["timm-classifier", "student"], "auto") == [
        "student", "timm-classifier"]
    onnx_tagger = tagger_from_settings("student-onnx", onnx_settings(tiny_onnx_student(tmp_path)))
    if SHARED is None or not (SHARED / "models").is_dir():
        pytest.skip("needs the shared models (../shared/models) for a teacher with features")
    teacher = tagger_from_settings("timm-classifier", load_settings(
        overrides={"taggers.device": "cpu"}, environ={"TVINDEX_MODEL_DIR": str(SHARED / "models")}))
    assert teacher.embedding_dim > 0
    assert choose_embedder([teacher, onnx_tagger], "auto") is onnx_tagger


def test_threads_setting_is_validated():
    from tvindex.settings import ConfigError

    with pytest.raises(ConfigError, match="threads"):
        load_settings(overrides={"taggers.student-onnx.threads": 0}, environ={})
    s = load_settings(overrides={"taggers.student-onnx.threads": 2}, environ={})
    assert s.taggers.for_tagger("student-onnx").threads == 2


# --- the production student (slow: minutes on 2 cores) ---------------------------------------

PRODUCTION = REPO / "var" / "models" / "student.pt"
TRANSFER = REPO / "var" / "transfer" / "offline"


@pytest.mark.slow
def test_production_student_onnx_quality_within_001_of_pytorch(tmp_path: Path):
    """fp32 and INT8 exports of the trained student: nDCG@5 on the test split within 0.01 of
    the PyTorch student on both heads (the issue's acceptance)."""
    if not PRODUCTION.is_file() or not (TRANSFER / "index.json").is_file():
        pytest.skip("needs the trained student (var/models/student.pt) and its transfer set "
                    "(var/transfer/offline): README, 'Student network'")
    from training.distill.deploy import export_student
    from training.distill.evaluate import checkpoint_path_settings, evaluate_tagger
    from training.distill.export import onnx_path_settings
    from training.distill.transfer import TransferSet

    settings = load_settings(overrides={"taggers.device": "cpu"}, environ={})
    report = export_student(settings, PRODUCTION, tmp_path / "student.onnx", int8=True,
                            calibration=TRANSFER, calibration_frames=128, check_frames=32)
    fp32_check = report["models"][0]["verification"]["outputs"]
    assert all(o["max_abs_diff"] < 1e-3 for o in fp32_check.values()), fp32_check
    ts = TransferSet(TRANSFER)
    ref = evaluate_tagger(tagger_from_settings("student", checkpoint_path_settings(
        settings, PRODUCTION)), ts, "test")
    for model in ("student.onnx", "student.int8.onnx"):
        got = evaluate_tagger(tagger_from_settings("student-onnx", onnx_path_settings(
            settings, tmp_path / model)), ts, "test")
        for head in ("coco80", "imagenet1k"):
            a, b = ref["heads"][head]["all"]["ndcg@5"], got["heads"][head]["all"]["ndcg@5"]
            assert abs(a - b) <= 0.01, (model, head, a, b)
