"""The CNN taggers' shared preprocessing (indexer.taggers.preprocess)."""

from __future__ import annotations

import numpy as np

from indexer.taggers.preprocess import resize_to_input, to_chw_float


def test_to_chw_float_equals_the_plain_formula_bit_for_bit():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(5)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    plain = (np.stack(images).astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) \
        / np.asarray(std, np.float32)
    got = to_chw_float(images, mean, std)
    assert got.dtype == np.float32 and got.shape == (5, 3, 24, 24)
    assert got.flags["C_CONTIGUOUS"]
    assert np.array_equal(got, plain.transpose(0, 3, 1, 2))
    unit = np.stack(images).astype(np.float32) / 255.0
    assert np.array_equal(to_chw_float(images), unit.transpose(0, 3, 1, 2))


def test_resize_to_input_rules():
    frame = np.zeros((72, 128, 3), np.uint8)
    for rule in ("stretch", "center_crop", "letterbox"):
        assert resize_to_input(frame, 32, rule).shape == (32, 32, 3)
