"""A synthetic FER-shaped dataset generated in memory: for smoke runs and fast tests only.

Same shapes and dtypes as FER-2013 (uint8 48x48, labels 0..6, the three usages) with FER's class
imbalance and a learnable signal: class ``c`` is a horizontal grating of ``c + 2`` cycles (random
phase, contrast and brightness, plus noise). Horizontal gratings survive a horizontal flip and a
+-10 degree rotation, so the signal survives the study's augmentation. Never used in place of a
missing FER-2013 file: only when asked for by name (``load_dataset("synthetic")``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .classes import IMAGE_SIZE, NUM_CLASSES
from .sources import FerArrays

# FER-2013 Training class frequencies (README beside the real file), so balancing has work to do.
_FER_TRAIN_COUNTS = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965], np.float64)


def make_synthetic(n_train: int = 700, n_val: int = 140, n_test: int = 140, seed: int = 0,
                   noise: float = 30.0) -> FerArrays:
    """Generate ``n_train + n_val + n_test`` faces-shaped images; deterministic in ``seed``.

    Every split gets at least 6 images of every class (SMOTE needs k+1 = 6 neighbours).
    ``noise`` is the std of the additive Gaussian noise in grey levels.
    """
    rng = np.random.default_rng(seed)
    p = _FER_TRAIN_COUNTS / _FER_TRAIN_COUNTS.sum()
    labels, usage = [], []
    for n, name in ((n_train, "Training"), (n_val, "PublicTest"), (n_test, "PrivateTest")):
        if n < 6 * NUM_CLASSES:
            raise ValueError(f"make_synthetic: each split needs >= {6 * NUM_CLASSES} images, got {name}={n}")
        y = np.concatenate([np.repeat(np.arange(NUM_CLASSES), 6), rng.choice(NUM_CLASSES, n - 6 * NUM_CLASSES, p=p)])
        labels.append(rng.permutation(y))
        usage += [name] * n
    y = np.concatenate(labels).astype(np.int64)
    n = len(y)
    rows = np.arange(IMAGE_SIZE, dtype=np.float64)[None, :, None]  # [1, H, 1]
    cycles = (y + 2)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    contrast = rng.uniform(40, 90, (n, 1, 1))
    bright = rng.uniform(90, 160, (n, 1, 1))
    img = bright + contrast * np.sin(2 * np.pi * cycles * rows / IMAGE_SIZE + phase)
    img = img + rng.normal(0, noise, (n, IMAGE_SIZE, IMAGE_SIZE))
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    h = hashlib.sha256(images.tobytes() + y.tobytes()).hexdigest()
    src = f"synthetic(n_train={n_train}, n_val={n_val}, n_test={n_test}, seed={seed})"
    return FerArrays(images, y, np.array(usage, "<U11"), h, src, "synthetic")
