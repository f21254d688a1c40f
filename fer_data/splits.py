"""Train/validation/test splits, and the deliberately leaky protocol used to audit the study.

* ``official`` (the default): Training -> train, PublicTest -> val, PrivateTest -> test. Model
  selection uses val only; test is touched once at the end.
* ``leaky-oversample-before-split``: what the study appears to have done, kept only to measure how
  much it inflates accuracy. All rows are pooled, randomly oversampled (imbalanced-learn's
  RandomOverSampler) and only THEN split 80/10/10 at random (stratified), so copies of the same
  face land in train and test. Never a default.

Both record in ``Splits.audit`` the fraction of test (and val) images that have an exact byte copy
in train. FER-2013 itself has a few cross-split duplicates; the official protocol reports them as
they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .classes import NUM_CLASSES
from .sources import FerArrays

PROTOCOLS = ("official", "leaky-oversample-before-split")


@dataclass(frozen=True)
class Splits:
    """Images uint8 [N, 48, 48] and labels int64 [N] per split, plus the leakage audit."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    audit: dict = field(default_factory=dict)
    # True where a test face has an exact byte copy in train: the leak's reach, face by face.
    test_copy_in_train: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def image_digests(images: np.ndarray) -> np.ndarray:
    """A 16-byte blake2b digest of each image's bytes (``S16`` [N]): equal digest = exact copy."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat], dtype="S16")


def copy_fraction(x: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of images in ``x`` that have an exact byte copy in ``ref``."""
    if len(x) == 0:
        return 0.0
    return float(np.isin(image_digests(x), image_digests(ref)).mean())


def make_splits(arrays: FerArrays, protocol: str = "official", seed: int = 0) -> Splits:
    """Split ``arrays`` under ``protocol`` (see the module docstring); ``seed`` drives the leaky one."""
    if protocol == "official":
        parts = {}
        for usage, name in (("Training", "train"), ("PublicTest", "val"), ("PrivateTest", "test")):
            m = arrays.usage == usage
            parts[name] = (arrays.images[m], arrays.labels[m])
        extra: dict = {}
    elif protocol == "leaky-oversample-before-split":
        from imblearn.over_sampling import RandomOverSampler
        from sklearn.model_selection import train_test_split

        # Oversample row indices (not pixels): same result as oversampling the images, no copy.
        idx, y = RandomOverSampler(random_state=seed).fit_resample(
            np.arange(len(arrays.labels)).reshape(-1, 1), arrays.labels)
        idx = idx.ravel()
        tr, rest = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
        va, te = train_test_split(rest, test_size=0.5, stratify=arrays.labels[rest], random_state=seed)
        parts = {name: (arrays.images[i], arrays.labels[i]) for name, i in (("train", tr), ("val", va), ("test", te))}
        extra = {"pooled_rows": int(len(arrays.labels)), "pooled_rows_after_oversampling": int(len(idx))}
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    train_d = image_digests(parts["train"][0])
    test_copy = np.isin(image_digests(parts["test"][0]), train_d)
    audit = {
        "protocol": protocol,
        "seed": seed,
        "rows": {k: int(len(v[1])) for k, v in parts.items()},
        "counts": {k: np.bincount(v[1], minlength=NUM_CLASSES).tolist() for k, v in parts.items()},
        "test_exact_copies_in_train_fraction": float(test_copy.mean()) if len(test_copy) else 0.0,
        "val_exact_copies_in_train_fraction": float(np.isin(image_digests(parts["val"][0]), train_d).mean())
        if len(parts["val"][1]) else 0.0,
        **extra,
    }
    return Splits(*parts["train"], *parts["val"], *parts["test"], audit=audit, test_copy_in_train=test_copy)
