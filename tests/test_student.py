"""The student network, its self-describing checkpoint and the ``student`` tagger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.taggers import TaggerError, tagger_from_settings
from indexer.taggers.student import (
    StudentNet,
    build_student,
    preprocess,
    read_checkpoint,
    write_checkpoint,
)
from tvindex.core.labels import LabelSet
from tvindex.settings import load_settings

OBJECTS = LabelSet("objects", "sigmoid", ("person", "bicycle", "car", "dog"))
SCENES = LabelSet("scenes", "softmax", ("street", "studio", "beach"))
TINY_ARCH = "test_efficientnet"  # timm's 99k-parameter EfficientNet for tests


def write_student_checkpoint(folder: Path, label_sets=(OBJECTS, SCENES), seed: int = 0,
                             image_size: int = 32, name: str = "student.pt") -> Path:
    """A tiny random student checkpoint in the real format (what training writes)."""
    torch.manual_seed(seed)
    model = StudentNet(TINY_ARCH, [(ls.name, len(ls)) for ls in label_sets], drop_rate=0.0)
    meta = {"arch": TINY_ARCH, "image_size": image_size, "resize": "stretch",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "drop_rate": 0.0,
            "label_sets": [{"name": ls.name, "activation": ls.activation,
                            "labels": list(ls.labels), "teacher": {"name": "hand", "identity": "x"},
                            "target": "logits"} for ls in label_sets]}
    return write_checkpoint(folder / name, model, meta)


def student_settings(checkpoint: Path, **extra):
    return load_settings(overrides={"taggers.student.checkpoint": str(checkpoint),
                                    "taggers.device": "cpu", **extra}, environ={})


def test_checkpoint_is_self_describing(tmp_path: Path):
    path = write_student_checkpoint(tmp_path)
    data = read_checkpoint(path)
    assert data["format"] == "tvindex-student" and data["feature_dim"] > 0
    torch.load(path, weights_only=True)  # plain containers only
    model = build_student(data).eval()
    x = torch.zeros(2, 3, 32, 32)
    out = model(x)
    assert out["objects"].shape == (2, 4) and out["scenes"].shape == (2, 3)
    assert model.forward_features(x).shape == (2, data["feature_dim"])


def test_student_tagger_runs_from_the_checkpoint_alone(tmp_path: Path):
    path = write_student_checkpoint(tmp_path)
    tagger = tagger_from_settings("student", student_settings(path))
    assert [ls.name for ls in tagger.label_sets] == ["objects", "scenes"]
    assert tagger.label_set("scenes").activation == "softmax"
    frames = [np.full((90, 160, 3), v, np.uint8) for v in (0, 128, 255)]
    out = tagger.predict(frames)
    assert out["objects"].shape == (3, 4) and out["scenes"].shape == (3, 3)
    # Same numbers as the network on the documented preprocessing.
    model = build_student(read_checkpoint(path)).eval()
    x = torch.from_numpy(np.stack([preprocess(f, 32) for f in frames]).astype(np.float32))
    x = (x / 255.0 - 0.5) / 0.5
    with torch.inference_mode():
        expected = model(x.permute(0, 3, 1, 2).contiguous())
    np.testing.assert_allclose(out["objects"], expected["objects"].numpy(), rtol=1e-4, atol=1e-5)
    feats = tagger.features(frames)
    assert feats.shape == (3, model.feature_dim) and feats.dtype == np.float32
    assert tagger.features([]).shape == (0, model.feature_dim)


def test_identity_changes_with_weights_and_input_size(tmp_path: Path):
    a = write_student_checkpoint(tmp_path, seed=0, name="a.pt")
    b = write_student_checkpoint(tmp_path, seed=1, name="b.pt")
    ta, tb = (tagger_from_settings("student", student_settings(p)) for p in (a, b))
    assert ta.identity() != tb.identity()
    bigger = tagger_from_settings("student", student_settings(a, **{"taggers.student.image_size": 48}))
    assert bigger.image_size == 48 and bigger.identity() != ta.identity()


def test_missing_or_bad_checkpoint_is_a_clear_error(tmp_path: Path):
    from indexer.weights import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="tvindex train fit"):
        tagger_from_settings("student", student_settings(tmp_path / "nope" / "student.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TaggerError, match="not a readable student checkpoint"):
        tagger_from_settings("student", student_settings(bad))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(TaggerError, match="not a tvindex student checkpoint"):
        tagger_from_settings("student", student_settings(tmp_path / "other.pt"))


def test_preprocess_modes_keep_size():
    frame = np.random.default_rng(0).integers(0, 255, (272, 640, 3), dtype=np.uint8)
    for mode in ("stretch", "center_crop", "letterbox"):
        assert preprocess(frame, 64, mode).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="resize must be one of"):
        preprocess(frame, 64, "zoom")


@pytest.mark.media
def test_backbone_starts_from_the_shared_lite0_weights(model_dir: Path):
    """The lukemelas-keyed Lite0 file maps by position onto timm's backbone: the student's
    pooled features equal the ImageNet teacher's penultimate features."""
    import timm

    from indexer.taggers.timm_classifier import map_state_dict
    from training.distill.student import pretrained_backbone

    weights = model_dir / "efficientnet-lite0-57934424.pth"
    backbone = pretrained_backbone("tf_efficientnet_lite0", weights).eval()
    teacher = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    teacher.load_state_dict(map_state_dict(teacher, torch.load(weights, weights_only=True)))
    teacher.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        np.testing.assert_allclose(backbone(x).numpy(),
                                   teacher.forward_head(teacher.forward_features(x),
                                                        pre_logits=True).numpy(), atol=1e-5)


@pytest.mark.media
def test_demo_catalogue_indexes_and_tags_with_the_student(tmp_path: Path, shared_dir: Path):
    """`tvindex index --tagger student` and `tvindex tag --tagger student`, end to end on the
    demo catalogue, with a tiny student emitting the teachers' coco80 set and a scene set."""
    import json
    import os
    import subprocess
    import sys

    from indexer.taggers.labels import COCO80
    from search.backends.sqlite.store import SqliteStore

    repo = Path(__file__).resolve().parent.parent
    ckpt = write_student_checkpoint(tmp_path, label_sets=(COCO80, SCENES), image_size=48)
    env = dict(os.environ, TVINDEX_SHARED_DIR=str(shared_dir),
               TVINDEX__TAGGERS__STUDENT__CHECKPOINT=str(ckpt))
    data = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "tvindex.cli", "--config", str(repo / "demo" / "config.yaml"),
         "index", str(repo / "demo" / "catalogue.csv"), "--tagger", "student", "--data-dir",
         str(data), "--no-progress", "--json"], check=False, env=env, capture_output=True,
        text=True, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["indexed"] == 11 and not report["failed"]
    store = SqliteStore(data / "catalogue.sqlite")
    assert {s.status for s in store.episode_states()} == {"indexed"}
    tag = subprocess.run(
        [sys.executable, "-m", "tvindex.cli", "tag", str(shared_dir / "media/video/bikes.mp4"),
         "--tagger", "student", "--every", "5", "--json", "--no-progress"],
        check=False, env=env, capture_output=True, text=True, timeout=300, cwd=repo)
    assert tag.returncode == 0, tag.stderr
    out = json.loads(tag.stdout)
    assert out["taggers"] == ["student"] and set(out["label_sets"]) == {"coco80", "scenes"}
    assert len(out["frames"]) == 2 and len(out["frames"][0]["labels"]["coco80"]) == 5
