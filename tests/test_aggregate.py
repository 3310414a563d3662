import numpy as np
import pytest

from tvindex.core.labels import LabelSet
from tvindex.core.stats import (
    EmbeddingAccumulator,
    StatsAccumulator,
    aggregate,
    combine,
    combine_embeddings,
    ranking,
    threshold_for,
)


def test_mean_and_coverage_by_hand():
    probs = np.array([[0.9, 0.1, 0.5],
                      [0.7, 0.3, 0.4],
                      [0.2, 0.6, 0.5],
                      [0.8, 0.0, 0.6]], np.float32)
    st = aggregate(probs, threshold=0.5)
    np.testing.assert_allclose(st.score, [0.65, 0.25, 0.5], atol=1e-6)
    # share of frames with p >= 0.5: 3/4, 1/4, 3/4
    np.testing.assert_allclose(st.coverage, [0.75, 0.25, 0.75])
    assert st.n_frames == 4
    assert ranking(st).tolist() == [0, 2, 1]
    assert ranking(st, 1).tolist() == [0]


def test_softmax_set_score_is_mean_of_softmax():
    ls = LabelSet("scenes", "softmax", ("a", "b"))
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], np.float32)  # softmax: .5/.5, .75/.25
    st = aggregate(ls.probabilities(logits), threshold=0.6)
    np.testing.assert_allclose(st.score, [0.625, 0.375], atol=1e-6)
    np.testing.assert_allclose(st.coverage, [0.5, 0.0])


def test_streaming_equals_batch_and_combine_is_exact():
    rng = np.random.default_rng(0)
    a, b = rng.random((7, 5)), rng.random((3, 5))
    acc = StatsAccumulator(5, 0.3)
    for row in a:
        acc.add(row)
    np.testing.assert_allclose(acc.result().score, aggregate(a, 0.3).score, rtol=1e-6)
    both = combine([aggregate(a, 0.3), aggregate(b, 0.3)])
    whole = aggregate(np.vstack([a, b]), 0.3)
    np.testing.assert_allclose(both.score, whole.score, rtol=1e-6)
    np.testing.assert_allclose(both.coverage, whole.coverage, rtol=1e-6)
    assert both.n_frames == 10
    with pytest.raises(ValueError):
        StatsAccumulator(3, 0.5).result()


def test_threshold_per_set_then_per_activation():
    t = {"default_sigmoid": 0.5, "default_softmax": 0.2, "coco80": 0.4}
    assert threshold_for(LabelSet("coco80", "sigmoid", ("x",)), t) == 0.4
    assert threshold_for(LabelSet("other", "sigmoid", ("x",)), t) == 0.5
    assert threshold_for(LabelSet("places365", "softmax", ("x",)), t) == 0.2


def test_embedding_means_stream_and_combine_by_frame_weights():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 6))
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    shots = [unit[:2], unit[2:3], unit[3:9]]
    episode = EmbeddingAccumulator(6)
    means = []
    for shot in shots:
        acc = EmbeddingAccumulator(6)
        for row in shot:  # frame by frame
            acc.add(row)
            episode.add(row)
        means.append(acc.result())
        assert acc.n == len(shot)
    whole = episode.result()
    assert whole.dtype == np.float32 and whole.shape == (6,)
    np.testing.assert_allclose(whole, unit.astype(np.float64).mean(axis=0), rtol=0, atol=1e-7)
    assert np.linalg.norm(whole) < 1.0  # a mean of unit vectors, not renormalised
    # shots -> episode by frame-weighted means, exactly (up to float32 rounding)
    combined = combine_embeddings(zip(means, [len(s) for s in shots]))
    np.testing.assert_allclose(combined, whole, rtol=0, atol=2e-7)
    by_hand = (2 * means[0].astype(np.float64) + means[1] + 6 * means[2].astype(np.float64)) / 9
    np.testing.assert_allclose(combined, by_hand, rtol=0, atol=1e-7)
    batch = EmbeddingAccumulator(6)
    batch.add(unit)
    np.testing.assert_array_equal(batch.result(), whole)
    with pytest.raises(ValueError, match="no frames"):
        EmbeddingAccumulator(6).result()
    with pytest.raises(ValueError, match="size 5, expected 6"):
        EmbeddingAccumulator(6).add(np.zeros(5))
    with pytest.raises(ValueError, match="no frames"):
        combine_embeddings([(means[0], 0)])
