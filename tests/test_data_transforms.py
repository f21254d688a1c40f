"""Splits (official + leaky audit), balancing, preprocessing and augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fer_data import (AugmentConfig, BalanceConfig, PreprocessConfig, augment_batch, balance, build_augmenter,
                      compute_norm, make_splits, make_synthetic, preprocess_images, to_model_input)


@pytest.fixture(scope="module")
def syn():
    return make_synthetic(n_train=700, n_val=140, n_test=140, seed=1)


def _digest_set(x):
    return {im.tobytes() for im in x}


# ------------------------------------------------------------------------------------- splits

def test_official_split_is_the_usage_column(syn):
    s = make_splits(syn)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (700, 140, 140)
    np.testing.assert_array_equal(s.test_x, syn.images[syn.usage == "PrivateTest"])
    assert s.audit["protocol"] == "official" and s.audit["test_exact_copies_in_train_fraction"] == 0.0


def test_leaky_protocol_puts_copies_of_test_in_train(syn):
    s = make_splits(syn, "leaky-oversample-before-split", seed=0)
    frac = s.audit["test_exact_copies_in_train_fraction"]
    train = _digest_set(s.train_x)
    assert frac == pytest.approx(np.mean([im.tobytes() in train for im in s.test_x]))
    assert frac > 0.2  # oversampled minority faces land on both sides
    assert s.audit["pooled_rows_after_oversampling"] == 7 * np.bincount(syn.labels).max()
    total = sum(s.audit["rows"].values())
    assert total == s.audit["pooled_rows_after_oversampling"]
    assert s.audit["rows"]["test"] == pytest.approx(0.1 * total, abs=2)
    with pytest.raises(ValueError, match="valid: official, leaky-oversample-before-split"):
        make_splits(syn, "random")


def test_real_file_official_audit_reports_real_duplicates(fer_arrays):
    s = make_splits(fer_arrays)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (28709, 3589, 3589)
    train = _digest_set(s.train_x)
    expected = np.mean([im.tobytes() in train for im in s.test_x])  # independent of image_digests
    assert s.audit["test_exact_copies_in_train_fraction"] == pytest.approx(expected)
    assert 0 < expected < 0.2  # FER-2013 has a few cross-split exact copies (288 of 3589)
    leaky = make_splits(fer_arrays, "leaky-oversample-before-split")
    assert leaky.audit["test_exact_copies_in_train_fraction"] > 2 * expected


# ---------------------------------------------------------------------------------- balancing

def test_balancing_methods(syn):
    s = make_splits(syn)
    counts = np.bincount(s.train_y, minlength=7)
    x, y, w = balance(s.train_x, s.train_y, BalanceConfig("none"))
    assert x is s.train_x and w is None
    x, y, w = balance(s.train_x, s.train_y, BalanceConfig("oversample"), seed=0)
    assert np.bincount(y).tolist() == [counts.max()] * 7 and w is None
    assert _digest_set(x) == _digest_set(s.train_x)  # copies only
    x, y, w = balance(s.train_x, s.train_y, BalanceConfig("smote"), seed=0)
    assert np.bincount(y).tolist() == [counts.max()] * 7 and x.dtype == np.uint8 and x.shape[1:] == (48, 48)
    assert len(_digest_set(x) - _digest_set(s.train_x)) > 0  # new, interpolated images
    x, y, w = balance(s.train_x, s.train_y, BalanceConfig("class_weight"))
    assert x is s.train_x
    np.testing.assert_allclose(w, len(y) / (7 * counts), rtol=1e-6)
    with pytest.raises(ValueError, match="valid: none, oversample, smote, class_weight"):
        BalanceConfig("undersample")


# ------------------------------------------------------------------------------ preprocessing

def test_preprocess_matches_cv2_and_stretches(syn):
    x = syn.images[:300]
    y = preprocess_images(x, PreprocessConfig(input_size=64))
    assert y.shape == (300, 64, 64) and y.dtype == np.uint8
    ref = np.stack([cv2.resize(im.astype(np.float32), (64, 64), interpolation=cv2.INTER_LINEAR) for im in x])
    lo, hi = ref.min((1, 2), keepdims=True), ref.max((1, 2), keepdims=True)
    want = np.rint((ref - lo) / (hi - lo) * 255)
    assert np.abs(y - want).max() <= 1 and (y == want).mean() > 0.999  # float rounding order only
    assert (y.min((1, 2)) == 0).all() and (y.max((1, 2)) == 255).all()  # Eq. 1 per image
    assert preprocess_images(x, PreprocessConfig(input_size=48)).shape == (300, 48, 48)
    smooth = preprocess_images(x, PreprocessConfig(smoothing_sigma=1.5))
    assert np.abs(np.diff(smooth.astype(float), axis=2)).mean() < np.abs(np.diff(y.astype(float), axis=2)).mean()
    assert preprocess_images(np.full((2, 48, 48), 9, np.uint8), PreprocessConfig()).max() == 0


def test_to_model_input_numpy_and_torch(syn):
    cfg = PreprocessConfig(standardize=True)
    y = preprocess_images(syn.images[:200], cfg)
    norm = compute_norm(y)
    t = to_model_input(torch.from_numpy(y), cfg, norm)
    assert t.dtype == torch.float32 and tuple(t.shape) == (200, 1, 64, 64)
    assert abs(float(t.mean())) < 1e-3 and abs(float(t.std()) - 1) < 1e-2
    n = to_model_input(y, PreprocessConfig())
    assert n.dtype == np.float32 and n.shape == (200, 1, 64, 64) and n.min() == 0.0 and n.max() == 1.0
    with pytest.raises(ValueError, match="needs the training-split Norm"):
        to_model_input(y, cfg)


# ------------------------------------------------------------------------------- augmentation

SWITCHES = ["rotation_deg", "hflip_p", "scale", "brightness_contrast", "noise_std", "occlusion_p"]


def test_augment_seeded_and_each_switch_works(syn):
    x = preprocess_images(syn.images[:64], PreprocessConfig())
    a1 = augment_batch(x, build_augmenter(AugmentConfig(), seed=7))
    a2 = augment_batch(x, build_augmenter(AugmentConfig(), seed=7))
    a3 = augment_batch(x, build_augmenter(AugmentConfig(), seed=8))
    assert a1.dtype == np.uint8 and a1.shape == x.shape
    np.testing.assert_array_equal(a1, a2)
    assert (a1 != a3).mean() > 0.5
    assert build_augmenter(AugmentConfig.none(), 0) is None
    np.testing.assert_array_equal(augment_batch(x, None), x)
    for name in SWITCHES:  # each switch alone changes images; strength 1.0 for the probabilities
        kw = {k: 0.0 for k in SWITCHES}
        kw[name] = 1.0 if name.endswith("_p") else getattr(AugmentConfig(), name)
        out = augment_batch(x, build_augmenter(AugmentConfig(**kw), seed=0))
        assert (out != x).any(axis=(1, 2)).mean() > 0.5, name
    flipped = augment_batch(x, build_augmenter(AugmentConfig(**{**{k: 0.0 for k in SWITCHES}, "hflip_p": 1.0}), 0))
    np.testing.assert_array_equal(flipped, x[:, :, ::-1])
    with pytest.raises(ValueError, match="hflip_p must be <= 1"):
        AugmentConfig(hflip_p=2)
