"""Paired seeds (every variant sees the same batches for a seed) and the per-face leak mask, without Ray."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_data import FerArrays, make_splits
from sweep.batches import epoch_stream, on_device, train_batches
from sweep.config import TrialConfig
from sweep.trial import copy_subsets


def _batches(cfg: TrialConfig, x, y, epoch: int):
    order, generator = epoch_stream(cfg.seed, epoch, 0, len(x))
    return list(train_batches(*on_device(x, y), order, batch_size=32, augment=cfg.augment, generator=generator,
                              preprocess=cfg.data.preprocess, norm=None))


def test_same_seed_gives_every_variant_identical_batches_and_another_seed_does_not():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (100, 24, 24), dtype=np.uint8)
    y = rng.integers(0, 7, 100).astype(np.int64)
    common = {"data.input_size": 24, "augment.occlusion_p": 0.5}  # every transform of the policy on
    a = TrialConfig.from_flat({**common, "model.name": "baseline", "seed": 3})
    b = TrialConfig.from_flat({**common, "model.name": "optimized", "model.dropout": 0.3, "seed": 3})
    c = TrialConfig.from_flat({**common, "model.name": "baseline", "seed": 4})
    for epoch in (0, 1):
        ba, bb, bc = _batches(a, x, y, epoch), _batches(b, x, y, epoch), _batches(c, x, y, epoch)
        assert len(ba) == len(bb) == 4
        for (xa, ya), (xb, yb) in zip(ba, bb):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
        assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(ba, bc))
    # augmentation is really on: the batches are not the raw faces in order
    order, _ = epoch_stream(3, 0, 0, len(x))
    raw = torch.from_numpy(x[order[:32].numpy()]).float()[:, None] / 255
    assert not torch.allclose(_batches(a, x, y, 0)[0][0], raw)
    # a resumed epoch replays its stream exactly
    assert all(torch.equal(p[0], q[0]) for p, q in zip(_batches(a, x, y, 1), _batches(a, x, y, 1)))


def _arrays(images, labels, usage):
    return FerArrays(np.asarray(images, np.uint8), np.asarray(labels, np.int64), np.asarray(usage), "x", "t", "csv")


def test_official_split_marks_exactly_the_test_faces_copied_in_train():
    faces = [np.full((48, 48), v, np.uint8) for v in range(6)]
    # train holds faces 0, 1, 2; test holds 1 (a copy), 3, 0 (a copy), 5
    arrays = _arrays([faces[0], faces[1], faces[2], faces[4], faces[1], faces[3], faces[0], faces[5]],
                     [0, 1, 2, 4, 1, 3, 0, 5],
                     ["Training"] * 3 + ["PublicTest"] + ["PrivateTest"] * 4)
    s = make_splits(arrays, "official")
    assert s.test_copy_in_train.tolist() == [True, False, True, False]
    assert s.audit["test_exact_copies_in_train_fraction"] == pytest.approx(0.5)


def test_copy_subsets_split_accuracy_and_macro_recall_by_the_mask():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 0, 0, 2])
    copy = np.array([True, True, True, False, False, False])
    out = copy_subsets(y_true, y_pred, copy)
    assert out["copy_in_train"] == {"n": 3, "acc": 1.0, "macro_recall": 1.0,
                                    "per_class_n": [2, 1, 0, 0, 0, 0, 0], "per_class_correct": [2, 1, 0, 0, 0, 0, 0]}
    assert out["no_copy_in_train"]["n"] == 3
    assert out["no_copy_in_train"]["acc"] == pytest.approx(1 / 3)
    assert out["no_copy_in_train"]["macro_recall"] == pytest.approx(0.25)  # class 1: 0/1, class 2: 1/2
    assert out["no_copy_in_train"]["per_class_n"] == [0, 1, 2, 0, 0, 0, 0]
    assert out["no_copy_in_train"]["per_class_correct"] == [0, 0, 1, 0, 0, 0, 0]
    empty = copy_subsets(y_true, y_pred, np.zeros(6, bool))["copy_in_train"]
    assert empty == {"n": 0, "acc": None, "macro_recall": None, "per_class_n": [0] * 7, "per_class_correct": [0] * 7}
    with pytest.raises(ValueError, match="6 test faces"):
        copy_subsets(y_true, y_pred, copy[:4])
