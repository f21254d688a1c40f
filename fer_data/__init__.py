"""FER-2013 data layer: readers for the three real layouts, validation, content-hash cache,
synthetic data, splits (official + the leaky audit protocol), preprocessing, augmentation,
class balancing, and (in ``fer_data.pipeline``, the only module that imports Ray) the shared
Ray Data pipeline.

    python -m fer_data inspect ../shared/datasets/fer2013/icml_face_data.csv.gz
"""

from __future__ import annotations

import os

from .augment import AugmentConfig, augment_batch, augment_images, build_augmenter, draw_params
from .balance import BALANCE_METHODS, BalanceConfig, balance
from .classes import CLASS_NAMES, NUM_CLASSES, SPLITS, USAGE_TO_SPLIT, USAGES
from .errors import DataError
from .preprocess import (Norm, PreprocessConfig, compute_norm, preprocess_images, standardize, to_model_input,
                         to_unit)
from .sources import FerArrays, default_cache_dir, load_fer2013
from .splits import PROTOCOLS, Splits, copy_fraction, image_digests, make_splits
from .synthetic import make_synthetic

SYNTHETIC = "synthetic"


def load_dataset(spec, *, resize: bool = False, cache_dir: str | os.PathLike | None = None) -> FerArrays:
    """``"synthetic"`` -> :func:`make_synthetic`; anything else is a FER-2013 path for
    :func:`load_fer2013` (never silently replaced by synthetic data)."""
    if isinstance(spec, str) and spec == SYNTHETIC:
        return make_synthetic()
    return load_fer2013(spec, resize=resize, cache_dir=cache_dir)


__all__ = [
    "AugmentConfig", "BALANCE_METHODS", "BalanceConfig", "CLASS_NAMES", "DataError", "FerArrays", "NUM_CLASSES",
    "Norm", "PROTOCOLS", "PreprocessConfig", "SPLITS", "SYNTHETIC", "Splits", "USAGES", "USAGE_TO_SPLIT",
    "augment_batch", "augment_images", "balance", "build_augmenter", "compute_norm", "copy_fraction",
    "default_cache_dir", "draw_params", "image_digests", "load_dataset", "load_fer2013", "make_splits",
    "make_synthetic", "preprocess_images", "standardize", "to_model_input", "to_unit",
]
