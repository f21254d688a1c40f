"""Class balancing of the TRAINING split only (the study's sections 3.2.1 and 3.2.4).

* ``none``: unchanged.
* ``oversample``: imbalanced-learn's RandomOverSampler (copies of minority images).
* ``smote``: imbalanced-learn's SMOTE on the flattened 48x48 pixels (new images interpolated
  between a minority image and one of its k nearest same-class neighbours), rounded back to uint8.
* ``class_weight``: data unchanged; returns sklearn's ``compute_class_weight("balanced")`` weights
  (n_samples / (n_classes * count)) for a weighted loss. Classes absent from train get weight 1.

``prepare`` calls this on train only; val and test keep their real distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import NUM_CLASSES

BALANCE_METHODS = ("none", "oversample", "smote", "class_weight")


@dataclass(frozen=True)
class BalanceConfig:
    method: str = "none"  # one of BALANCE_METHODS
    smote_k: int = 5  # SMOTE neighbours (lowered automatically for a class with fewer images)

    def __post_init__(self):
        if self.method not in BALANCE_METHODS:
            raise ValueError(f"unknown balance method {self.method!r}; valid: {', '.join(BALANCE_METHODS)}")
        if not (isinstance(self.smote_k, int) and self.smote_k >= 1):
            raise ValueError(f"BalanceConfig.smote_k must be an int >= 1, got {self.smote_k!r}")


def balance(x: np.ndarray, y: np.ndarray, cfg: BalanceConfig, seed: int = 0):
    """Return ``(x, y, class_weights)``; x uint8 [N, H, W], y int64 [N]; weights float32 [7] or None."""
    if cfg.method == "none":
        return x, y, None
    if cfg.method == "class_weight":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(y)
        w = np.ones(NUM_CLASSES, np.float32)
        w[present] = compute_class_weight("balanced", classes=present, y=y)
        return x, y, w
    if cfg.method == "oversample":
        from imblearn.over_sampling import RandomOverSampler

        # Resample indices, then gather: same as resampling the pixels, without a float copy.
        idx, y2 = RandomOverSampler(random_state=seed).fit_resample(np.arange(len(y)).reshape(-1, 1), y)
        return x[idx.ravel()], y2.astype(np.int64), None
    from imblearn.over_sampling import SMOTE

    k = min(cfg.smote_k, _min_count(y) - 1)
    if k < 1:
        raise ValueError("SMOTE needs at least 2 training images in every class present")
    flat = x.reshape(len(x), -1).astype(np.float32)
    x2, y2 = SMOTE(k_neighbors=k, random_state=seed).fit_resample(flat, y)
    x2 = np.clip(np.rint(x2), 0, 255).astype(np.uint8).reshape(-1, *x.shape[1:])
    return x2, y2.astype(np.int64), None


def _min_count(y: np.ndarray) -> int:
    counts = np.bincount(y)
    return int(counts[counts > 0].min())
