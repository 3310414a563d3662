"""Frame embeddings (issue 8): which tagger embeds, one forward pass per tagger, unit-length
frame embeddings, and their means per shot and episode."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.frame_tagging import choose_embedder, tag_frames
from indexer.indexing import EpisodeBuilder, config_version
from indexer.media import Frame, Sampler
from indexer.taggers import Tagger, TaggerError, tagger_from_settings
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord
from tvindex.core.stats import combine_embeddings
from tvindex.core.vectors import unit_rows
from tvindex.settings import load_settings

# --- fakes: the rule and the streaming need no real model ---------------------------------


class FakeTagger(Tagger):
    """Logits and features computed from the frame's pixels; counts its calls."""

    def __init__(self, name: str, dim: int, label_set: str | None = None) -> None:
        self.name = name  # instances shadow the registry's ClassVar
        self.embedding_dim = dim
        self.label_sets = (LabelSet(label_set or f"{name}-set", "sigmoid", ("a", "b", "c")),)
        self.weights_id = f"w-{name}"
        self.calls = {"predict": 0, "predict_with_embeddings": 0}

    def _logits(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        m = np.array([f.reshape(-1, 3).mean(axis=0) for f in frames], np.float32)
        return (m / 64.0 - 2.0).reshape(len(frames), 3)

    def predict(self, frames):
        self.calls["predict"] += 1
        return {self.label_sets[0].name: self._logits(frames)}

    def predict_with_embeddings(self, frames):
        self.calls["predict_with_embeddings"] += 1
        if self.embedding_dim == 0:
            return {self.label_sets[0].name: self._logits(frames)}, None
        feats = np.stack([np.resize(f.reshape(-1, 3).mean(axis=0) + np.arange(3) + 1.0,
                                    self.embedding_dim) * (i + 1)
                          for i, f in enumerate(frames)]).astype(np.float32)
        return {self.label_sets[0].name: self._logits(frames)}, feats


def settings(**overrides):
    return load_settings(overrides={"taggers.device": "cpu", **overrides}, environ={})


def version_of(taggers, s) -> str:
    """config_version of these taggers under settings ``s``, composed as `tvindex index` does."""
    return config_version(taggers, choose_embedder(taggers, s.taggers.embedding), s.sampling,
                          s.aggregation)


def builder_of(taggers, s) -> EpisodeBuilder:
    """The episode builder for settings ``s``, composed as `tvindex index` does."""
    return EpisodeBuilder(taggers, Sampler.from_section(s.sampling), s.aggregation,
                          embedder=choose_embedder(taggers, s.taggers.embedding),
                          batch_size=s.taggers.batch_size)


def test_auto_prefers_the_student_then_the_first_with_features():
    det, timm = FakeTagger("tflite-detector", 0), FakeTagger("timm-classifier", 8)
    places, student = FakeTagger("places365", 4), FakeTagger("student", 6)
    auto = settings()
    assert auto.taggers.embedding == "auto"
    spec = auto.taggers.embedding
    assert choose_embedder([det, timm, places, student], spec) is student
    assert choose_embedder([det, places, timm], spec) is places  # taggers.active order
    assert choose_embedder([det, timm], spec) is timm
    assert choose_embedder([det], spec) is None  # nothing embeds: no embeddings, no error
    assert choose_embedder([], spec) is None


def test_named_and_none_embedder():
    det, timm, student = (FakeTagger("tflite-detector", 0), FakeTagger("timm-classifier", 8),
                          FakeTagger("student", 6))
    def spec(name: str) -> str:
        return settings(**{"taggers.embedding": name}).taggers.embedding

    assert choose_embedder([det, timm, student], spec("timm-classifier")) is timm
    assert choose_embedder([det, timm, student], spec("none")) is None
    with pytest.raises(TaggerError, match=r"taggers\.embedding: 'places365' is not an active"):
        choose_embedder([det, timm], spec("places365"))
    with pytest.raises(TaggerError, match=r"taggers\.embedding: .*'tflite-detector' has no frame "
                                          r"features"):
        choose_embedder([det, timm], spec("tflite-detector"))


def test_tag_frames_runs_each_tagger_once_and_embeds_unit_length():
    det, timm = FakeTagger("tflite-detector", 0), FakeTagger("timm-classifier", 8)
    rng = np.random.default_rng(0)
    frames = [Frame(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), i * 0.5, i)
              for i in range(5)]
    out = list(tag_frames(frames, [det, timm], batch_size=2, embedder=timm))
    assert [t.frame.index for t in out] == list(range(5))
    # 3 batches; the embedder only through predict_with_embeddings, the detector only predict
    assert det.calls == {"predict": 3, "predict_with_embeddings": 0}
    assert timm.calls == {"predict": 0, "predict_with_embeddings": 3}
    for t in out:
        assert set(t.logits) == {"tflite-detector-set", "timm-classifier-set"}
        assert t.embedding.shape == (8,) and t.embedding.dtype == np.float32
        assert np.linalg.norm(t.embedding) == pytest.approx(1.0, abs=1e-6)
    _, raw = timm.predict_with_embeddings([f.image for f in frames[:2]])
    np.testing.assert_allclose(out[1].embedding, raw[1] / np.linalg.norm(raw[1]), rtol=1e-6)
    # No embedder: no embeddings, predict only.
    assert all(t.embedding is None for t in tag_frames(frames, [det, timm], 2))
    with pytest.raises(ValueError, match="not one of the taggers"):
        list(tag_frames(frames, [det], 2, embedder=timm))
    with pytest.raises(TaggerError, match="no frame features"):
        list(tag_frames(frames, [det], 2, embedder=det))


def test_unit_rows_guards_zero_vectors():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]], np.float32)
    u = unit_rows(x)
    assert u.dtype == np.float32 and np.isfinite(u).all()
    np.testing.assert_allclose(u[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(u[1], [0.0, 0.0])


def test_config_version_follows_the_resolved_embedder():
    det, timm, student = (FakeTagger("tflite-detector", 0), FakeTagger("timm-classifier", 8),
                          FakeTagger("student", 6, label_set="s"))
    taggers = [det, timm, student]
    auto = version_of(taggers, settings())
    assert version_of(taggers, settings(**{"taggers.embedding": "none"})) != auto
    assert version_of(taggers, settings(**{"taggers.embedding": "timm-classifier"})) != auto
    # auto resolves to the student: naming it is the same configuration
    assert version_of(taggers, settings(**{"taggers.embedding": "student"})) == auto
    with pytest.raises(TaggerError, match=r"taggers\.embedding"):
        version_of(taggers, settings(**{"taggers.embedding": "yolo"}))


# --- a short indexing run on real footage -------------------------------------------------

def _episode(video_dir: Path, end_s: float | None = None) -> EpisodeRecord:
    return EpisodeRecord("bikes", "p", "Bikes", str(video_dir / "bikes.mp4"), end_s=end_s)


def _frames_per_segment(tags) -> list[int]:
    return [next(iter(seg.stats.values())).n_frames for seg in tags.segments]


def _check_means(tags) -> None:
    n = _frames_per_segment(tags)
    assert sum(n) == next(iter(tags.stats.values())).n_frames
    for seg in tags.segments:
        assert seg.embedding.dtype == np.float32 and np.isfinite(seg.embedding).all()
        assert np.linalg.norm(seg.embedding) <= 1.0 + 1e-6  # a mean of unit vectors
    assert tags.embedding.dtype == np.float32
    # The episode's mean is the frame-weighted mean of its shots' means (float32 rounding).
    weighted = combine_embeddings((seg.embedding, k) for seg, k in zip(tags.segments, n))
    np.testing.assert_allclose(tags.embedding, weighted, rtol=0, atol=2e-7)
    by_hand = sum(seg.embedding.astype(np.float64) * k for seg, k in zip(tags.segments, n)) / sum(n)
    np.testing.assert_allclose(tags.embedding, by_hand, rtol=0, atol=2e-7)


@pytest.mark.media
def test_shot_and_episode_means_with_multi_frame_shots(video_dir: Path):
    """Shots of several frames (fake taggers on real decoded frames): each shot's embedding
    is the mean of its frames' unit embeddings, the episode's the frame-weighted mean."""
    det, emb = FakeTagger("tflite-detector", 0), FakeTagger("timm-classifier", 5)
    s = settings(**{"sampling.mode": "shots", "sampling.frames_per_shot": 3,
                    "taggers.batch_size": 4})
    builder = builder_of([det, emb], s)
    assert builder.embedder is emb
    tags = builder.tag(_episode(video_dir), "fp", "v")
    n = _frames_per_segment(tags)
    assert len(tags.segments) >= 2 and max(n) > 1
    assert tags.embedding_model == emb.identity()
    _check_means(tags)
    # Recompute from the frames themselves: shot means of unit rows.
    frames = list(builder.frames(_episode(video_dir)))
    _, raw = emb.predict_with_embeddings([f.image for f in frames])
    unit = unit_rows(raw)
    keys = [f.shot.index for f in frames]
    for seg, key in zip(tags.segments, dict.fromkeys(keys)):
        rows = unit[[i for i, k in enumerate(keys) if k == key]]
        np.testing.assert_allclose(seg.embedding, rows.mean(axis=0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(tags.embedding, unit.mean(axis=0), rtol=0, atol=1e-7)
    # Without an embedder nothing is embedded.
    none = builder_of([det, emb], settings(**{"sampling.mode": "interval",
                                              "sampling.every_s": 4,
                                              "taggers.embedding": "none"}))
    t = none.tag(_episode(video_dir), "fp", "v")
    assert t.embedding is None and t.embedding_model == ""
    assert all(seg.embedding is None for seg in t.segments)


@pytest.mark.media
def test_indexing_bikes_with_the_teachers_embeds_with_the_classifier(video_dir: Path,
                                                                     model_dir: Path):
    s = load_settings(overrides={"taggers.device": "cpu", "sampling.mode": "interval",
                                 "sampling.every_s": 2.0,
                                 "taggers.active": ["tflite-detector", "timm-classifier"]},
                      environ={"TVINDEX_MODEL_DIR": str(model_dir)})
    taggers = [tagger_from_settings(n, s) for n in s.taggers.active]
    builder = builder_of(taggers, s)
    assert builder.embedder is taggers[1]
    tags = builder.tag(_episode(video_dir), "fp", version_of(taggers, s))
    assert len(tags.segments) >= 4
    assert tags.embedding_model == taggers[1].identity()
    assert tags.embedding.shape == (1280,)
    for seg in tags.segments:  # one frame per interval segment: a unit vector
        assert seg.embedding.shape == (1280,)
        assert np.linalg.norm(seg.embedding) == pytest.approx(1.0, abs=1e-5)
    _check_means(tags)
    # Shots of a 10 s street video are alike, but not identical.
    cos = tags.segments[0].embedding @ tags.segments[-1].embedding
    assert 0.0 < cos < 0.9999


# --- the real classifier's features -------------------------------------------------------

@pytest.mark.media
def test_timm_classifier_features_tell_images_apart(model_dir: Path, media_dir: Path):
    s = load_settings(overrides={"taggers.device": "cpu"},
                      environ={"TVINDEX_MODEL_DIR": str(model_dir)})
    tagger = tagger_from_settings("timm-classifier", s)
    assert tagger.embedding_dim == 1280
    dog, kite = (np.asarray(Image.open(media_dir / "images" / n).convert("RGB"))
                 for n in ("dog.jpg", "kite.jpg"))
    logits, f = tagger.predict_with_embeddings([dog, kite, dog])
    assert f.shape == (3, 1280) and f.dtype == np.float32 and np.isfinite(f).all()
    np.testing.assert_array_equal(logits["imagenet1k"],
                                  tagger.predict([dog, kite, dog])["imagenet1k"])
    np.testing.assert_allclose(f[0], f[2], rtol=1e-5, atol=1e-5)  # same image, same batch
    _, again = tagger.predict_with_embeddings([dog])
    _, again2 = tagger.predict_with_embeddings([dog])
    np.testing.assert_array_equal(again, again2)  # deterministic
    u = unit_rows(f)
    assert u[0] @ u[1] < 0.95  # a dog is not a kite
    assert not np.allclose(f[0], f[1], atol=1e-3)


@pytest.mark.media
def test_auto_picks_the_student_over_the_classifier(model_dir: Path, tmp_path: Path):
    from test_student import write_student_checkpoint

    ckpt = write_student_checkpoint(tmp_path)
    s = load_settings(overrides={"taggers.device": "cpu", "taggers.student.checkpoint": str(ckpt),
                                 "taggers.active": ["timm-classifier", "student"]},
                      environ={"TVINDEX_MODEL_DIR": str(model_dir)})
    taggers = [tagger_from_settings(n, s) for n in s.taggers.active]
    assert choose_embedder(taggers, s.taggers.embedding) is taggers[1]
    named = s.model_copy(deep=True)
    named.taggers.embedding = "timm-classifier"
    assert choose_embedder(taggers, named.taggers.embedding) is taggers[0]
    assert version_of(taggers, named) != version_of(taggers, s)
