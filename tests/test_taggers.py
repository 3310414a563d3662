"""Taggers: every registered tagger's label sets and output shapes, and each extraction rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.taggers import TaggerError, list_taggers, tagger_from_settings
from indexer.taggers.labels import COCO80_NAMES
from indexer.taggers.places365 import build_network, read_categories
from indexer.taggers.tflite_detector import coco80_columns, max_over_anchors, read_coco91_labels
from indexer.taggers.yolo import max_over_candidates, raw_class_logits
from tvindex.core.labels import LabelSet
from tvindex.settings import load_settings

PLACES_LINES = [f"/{n[0]}/{n} {i}" for i, n in enumerate(
    ["airfield", "arena/hockey", "beach", "kitchen", "television_studio"])]


def write_places_checkpoint(folder: Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """A checkpoint in CSAIL's official format: {'state_dict': {'module.<key>': tensor}}."""
    torch.manual_seed(seed)
    net = build_network("resnet18", num_classes=len(PLACES_LINES)).eval()
    ckpt = {"epoch": 90, "arch": "resnet18", "best_prec1": 54.7,
            "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
    path = folder / "resnet18_places365.pth.tar"
    torch.save(ckpt, path)
    (folder / "categories_places365.txt").write_text("\n".join(PLACES_LINES) + "\n")
    return path, net


def settings_for(name: str, tmp_path: Path, shared: Path | None):
    """Settings that build ``name`` here. A newly registered tagger must get an entry."""
    env = {}
    overrides: dict = {"taggers.batch_size": 3}
    if name == "yolo":
        overrides["taggers.yolo.weights"] = "yolov8n.yaml"  # architecture, random weights
        overrides["taggers.yolo.image_size"] = 160
    elif name == "places365":
        write_places_checkpoint(tmp_path)
        env["TVINDEX_MODEL_DIR"] = str(tmp_path)
    elif name == "student":
        from test_student import write_student_checkpoint  # a tiny checkpoint, real format

        overrides["taggers.student.checkpoint"] = str(write_student_checkpoint(tmp_path))
    elif name == "student-onnx":
        from test_student_onnx import tiny_onnx_student  # exported once per session

        overrides["taggers.student-onnx.model"] = str(tiny_onnx_student(tmp_path))
    elif name == "openclip":
        from test_openclip import clip_settings  # a tiny random OpenCLIP, as a weights file

        return clip_settings(tmp_path, **{"taggers.batch_size": 3})
    elif name in ("tflite-detector", "timm-classifier"):
        if shared is None or not (shared / "models").is_dir():
            pytest.skip("needs the shared models (../shared/models)")
        env["TVINDEX_MODEL_DIR"] = str(shared / "models")
    else:
        pytest.fail(f"tagger {name!r} has no test configuration: add it to settings_for()")
    return load_settings(overrides=overrides, environ=env)


def _shared() -> Path | None:
    from conftest import SHARED

    return SHARED


@pytest.mark.parametrize("name", list_taggers())
def test_every_tagger_label_sets_and_shapes(name: str, tmp_path: Path):
    tagger = tagger_from_settings(name, settings_for(name, tmp_path, _shared()))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
              for h, w in [(144, 176), (272, 640), (300, 300), (90, 160)]]
    if tagger.visual_dim:  # openclip: no labels, image embeddings for visual: terms
        assert tagger.label_sets == () and tagger.predict(frames) == {}
        visual = tagger.predict_visual(frames)
        assert visual.shape == (4, tagger.visual_dim) and visual.dtype == np.float32
        assert np.isfinite(visual).all() and not np.allclose(visual[0], visual[1])
        assert tagger.predict_visual([]).shape == (0, tagger.visual_dim)
        assert name in tagger.identity()
        return
    assert tagger.label_sets, "a tagger emits at least one label set"
    out = tagger.predict(frames)
    assert set(out) == {ls.name for ls in tagger.label_sets}
    for ls in tagger.label_sets:
        assert isinstance(ls, LabelSet) and ls.activation in ("sigmoid", "softmax")
        assert len(set(ls.labels)) == len(ls.labels), "label names are unique"
        assert out[ls.name].shape == (4, len(ls)) and out[ls.name].dtype == np.float32
        assert np.isfinite(out[ls.name]).all()
        p = ls.probabilities(out[ls.name])
        assert ((p >= 0) & (p <= 1)).all()
        if ls.activation == "softmax":
            np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert tagger.predict([])[tagger.label_sets[0].name].shape == (0, len(tagger.label_sets[0]))
    assert name in tagger.identity()


EMBEDDING_DIMS = {"yolo": 0, "tflite-detector": 0, "timm-classifier": 1280, "places365": 512,
                  "openclip": 0}


@pytest.mark.parametrize("name", list_taggers())
def test_every_tagger_predict_with_embeddings(name: str, tmp_path: Path):
    """One forward pass gives predict's logits exactly, and [B, embedding_dim] features
    (None for detectors, which have none)."""
    tagger = tagger_from_settings(name, settings_for(name, tmp_path, _shared()))
    if name == "student":
        assert tagger.embedding_dim == tagger.model.feature_dim > 0
    elif name == "student-onnx":
        assert tagger.embedding_dim == tagger.meta["feature_dim"] > 0
    else:
        assert tagger.embedding_dim == EMBEDDING_DIMS[name]
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
              for h, w in [(144, 176), (272, 640), (300, 300), (90, 160)]]  # 2 batches of 3
    logits, features = tagger.predict_with_embeddings(frames)
    expected = tagger.predict(frames)
    assert set(logits) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(logits[key], value)
    if tagger.embedding_dim == 0:
        assert features is None
        assert tagger.predict_with_embeddings([])[1] is None
        return
    assert features.shape == (4, tagger.embedding_dim) and features.dtype == np.float32
    assert np.isfinite(features).all() and (np.linalg.norm(features, axis=1) > 0).all()
    assert not np.allclose(features[0], features[1])
    empty_logits, empty = tagger.predict_with_embeddings([])
    assert empty.shape == (0, tagger.embedding_dim)
    assert empty_logits[tagger.label_sets[0].name].shape == (0, len(tagger.label_sets[0]))


def test_expected_label_set_sizes(tmp_path: Path):
    shared = _shared()
    sizes = {"yolo": {"coco80": 80}, "places365": {"places365": len(PLACES_LINES)},
             "tflite-detector": {"coco80": 80}, "timm-classifier": {"imagenet1k": 1000}}
    for name, expect in sizes.items():
        if name in ("tflite-detector", "timm-classifier") and shared is None:
            continue
        folder = tmp_path / name
        folder.mkdir()
        tagger = tagger_from_settings(name, settings_for(name, folder, shared))
        assert {ls.name: len(ls) for ls in tagger.label_sets} == expect


def test_unknown_tagger_lists_available():
    with pytest.raises(TaggerError, match="available: .*tflite-detector"):
        tagger_from_settings("nope", load_settings(environ={}))


# --- the max-over-candidates rule (thesis 5.1.1, figure 5.6) ------------------------------

def test_yolo_rule_on_hand_checked_example():
    # [B=1, classes=3, candidates=4]; per class the max over the 4 boxes, written by hand.
    scores = torch.tensor([[[-0.11, -0.01, -1.11, 6.58],
                            [-4.60, 6.11, -4.65, -4.40],
                            [-3.87, -3.89, -3.22, -1.37]]])
    assert max_over_candidates(scores).tolist() == [[pytest.approx(6.58), pytest.approx(6.11),
                                                     pytest.approx(-1.37)]]


def test_yolo_tagger_takes_max_of_raw_head_logits(tmp_path: Path):
    tagger = tagger_from_settings("yolo", settings_for("yolo", tmp_path, None))
    frame = np.random.default_rng(1).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    x = tagger.to_tensor([frame])
    with torch.inference_mode():
        head_out = tagger.model(x)
    raw = raw_class_logits(head_out)[0].numpy()  # [80, anchors], pre-sigmoid, pre-NMS
    decoded = head_out[0][0, 4:].numpy()  # Ultralytics' own sigmoid(scores) per anchor
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), decoded, atol=1e-5)
    # The tagger's logit for each class is the largest over every anchor, by a plain loop.
    by_hand = [max(raw[c, a] for a in range(raw.shape[1])) for c in range(raw.shape[0])]
    np.testing.assert_allclose(tagger.predict([frame])["coco80"][0], by_hand, rtol=1e-5)
    assert raw.shape[1] == (160 // 8) ** 2 + (160 // 16) ** 2 + (160 // 32) ** 2


def test_ssd_rule_on_hand_checked_example():
    labels = {i: n for i, n in zip([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12] + list(range(13, 91)),
                                   COCO80_NAMES)}  # 91-id scheme has gaps (11 missing here)
    labels = dict(list(labels.items())[:80])
    cols = coco80_columns(labels)
    assert cols[0] == 1 and cols[10] == 11 and cols[11] == 13  # background dropped, gap skipped
    raw = np.full((1, 3, 91), -9.0, np.float32)
    raw[0, :, 0] = 50.0  # background must never leak into a class
    raw[0, 0, 1], raw[0, 2, 1] = 2.5, 4.0  # person: max over anchors is 4.0
    raw[0, 1, 13] = 1.5  # column 13 = id 12 = stop sign (coco80 index 11)
    out = max_over_anchors(raw, cols)
    assert out.shape == (1, 80)
    assert out[0, 0] == 4.0 and out[0, 11] == 1.5 and out[0, 10] == -9.0


@pytest.mark.media
def test_ssd_reads_pre_nms_logits_and_finds_dog_bicycle_car(model_dir: Path, media_dir: Path,
                                                            tmp_path: Path):
    tagger = tagger_from_settings("tflite-detector", settings_for("tflite-detector", tmp_path,
                                                           model_dir.parent))
    assert read_coco91_labels(model_dir / "coco_labels.txt")[89] == "toothbrush"
    image = np.asarray(Image.open(media_dir / "images" / "dog.jpg").convert("RGB"))
    raw = tagger.raw_logits(image)
    assert raw.shape == (1917, 91)
    # The tensor we read feeds the graph's own sigmoid: they agree to quantisation error.
    scores = tagger.interpreter.get_tensor(
        next(d["index"] for d in tagger.interpreter.get_tensor_details()
             if d["name"] == "convert_scores"))[0].astype(np.float32) / 256.0
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), scores, atol=0.01)
    logits = tagger.predict([image])["coco80"][0]
    np.testing.assert_allclose(logits, raw[:, tagger.columns].max(axis=0))
    top5 = {COCO80_NAMES[i] for i in np.argsort(-logits)[:5]}
    assert {"dog", "bicycle", "car"} <= top5


# --- Places365 official checkpoint format -----------------------------------------------

def test_places365_checkpoint_round_trip(tmp_path: Path):
    _, net = write_places_checkpoint(tmp_path, seed=3)
    tagger = tagger_from_settings("places365", load_settings(environ={"TVINDEX_MODEL_DIR": str(tmp_path)}))
    assert tagger.label_sets[0].labels == ("airfield", "arena/hockey", "beach", "kitchen",
                                           "television_studio")
    frame = np.random.default_rng(2).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    x = tagger.to_tensor([frame])
    with torch.inference_mode():
        expected = net(x).numpy()
    np.testing.assert_allclose(tagger.predict([frame])["places365"], expected, rtol=1e-4,
                               atol=1e-5)
    # The features are the pooled avgpool output that fc sees (512 for resnet18).
    pooled = {}
    net.avgpool.register_forward_hook(lambda m, i, o: pooled.setdefault("x", o.flatten(1)))
    with torch.inference_mode():
        net(x)
    _, features = tagger.predict_with_embeddings([frame])
    assert features.shape == (1, 512)
    np.testing.assert_allclose(features, pooled["x"].numpy(), rtol=1e-4, atol=1e-5)


def test_places365_bad_files_are_clear_errors(tmp_path: Path):
    (tmp_path / "resnet18_places365.pth.tar").write_bytes(b"not a checkpoint")
    (tmp_path / "categories_places365.txt").write_text("\n".join(PLACES_LINES))
    s = load_settings(environ={"TVINDEX_MODEL_DIR": str(tmp_path)})
    with pytest.raises(TaggerError, match="not a readable PyTorch checkpoint"):
        tagger_from_settings("places365", s)
    bad = tmp_path / "cats.txt"
    bad.write_text("airfield zero\n")
    with pytest.raises(TaggerError, match="expected '/x/name INDEX'"):
        read_categories(bad)


# --- timm classifier on the real EfficientNet-Lite0 ImageNet weights --------------------

@pytest.mark.media
def test_timm_lite0_recognises_a_dog(model_dir: Path, media_dir: Path, tmp_path: Path):
    tagger = tagger_from_settings("timm-classifier", settings_for("timm-classifier", tmp_path,
                                                           model_dir.parent))
    image = np.asarray(Image.open(media_dir / "images" / "dog.jpg").convert("RGB"))
    logits = tagger.predict([image])["imagenet1k"][0]
    # ImageNet classes 151..268 are dog breeds.
    assert 151 <= int(np.argmax(logits)) <= 268


def test_yolo_import_leaves_pillow_open_alone():
    """Ultralytics replaces PIL.Image.open on import (to pip-install a HEIF plugin on the
    first unidentified file); the yolo tagger's import puts Pillow's own function back, so an
    unreadable upload is refused by Pillow and nothing tries to install packages."""
    import io

    from PIL import Image, UnidentifiedImageError

    from indexer.taggers.yolo import ultralytics_tasks

    before = Image.open
    ultralytics_tasks()
    assert Image.open is before
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"hello, this is not a picture\n" * 20))
