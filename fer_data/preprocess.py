"""The study's deterministic preprocessing (its section 3.2.3), split in two halves.

1. ``preprocess_images`` (runs ONCE per sweep, in ``fer_data.pipeline.prepare`` via Ray Data):
   resample 48x48 -> ``input_size`` (bilinear, identical to cv2 INTER_LINEAR; the study uses 64), optional Gaussian
   smoothing (Eq. 2, ``smoothing_sigma`` in pixels of the resized image; 0 = off), then per-image
   min-max stretch (Eq. 1). Smoothing comes before the stretch so every image spans exactly the full
   range. The result is stored as uint8 [S, S] (stretched to 0..255): 4x smaller than float32 in
   Ray's object store and shared by every trial; the quantisation step (1/255) is far below the
   noise of 8-bit source faces.
2. ``to_model_input`` (runs in the training worker, per batch, after augmentation): uint8 -> float32
   in [0, 1] (the min-max output of Eq. 1), shape [B, 1, S, S], and optional standardisation with
   the training split's mean/std (``Norm``, computed from train only, never val/test).

A constant image (max == min) maps to all zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

@dataclass(frozen=True)
class PreprocessConfig:
    input_size: int = 64  # side of the square model input in pixels (study: 64; 48 = no resampling)
    smoothing_sigma: float = 0.0  # Gaussian smoothing sigma in pixels; 0 = off
    standardize: bool = False  # subtract the train mean and divide by the train std (in the worker)

    def __post_init__(self):
        if not (isinstance(self.input_size, int) and 8 <= self.input_size <= 512):
            raise ValueError(f"PreprocessConfig.input_size must be an int in 8..512, got {self.input_size!r}")
        if not self.smoothing_sigma >= 0:
            raise ValueError(f"PreprocessConfig.smoothing_sigma must be >= 0, got {self.smoothing_sigma!r}")


@dataclass(frozen=True)
class Norm:
    """Training-split pixel statistics in the [0, 1] scale of ``to_model_input``."""

    mean: float = 0.0
    std: float = 1.0


def preprocess_images(images: np.ndarray, cfg: PreprocessConfig, *, chunk: int = 256) -> np.ndarray:
    """uint8 [N, H, W] -> uint8 [N, S, S]: resize, optional smoothing, per-image min-max stretch.

    Works ``chunk`` images at a time so the float32 temporaries stay in cache.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"preprocess_images expects uint8 [N, H, W], got {images.dtype} {images.shape}")
    out = np.empty((len(images), cfg.input_size, cfg.input_size), np.uint8)
    for i in range(0, len(images), chunk):
        out[i: i + chunk] = _preprocess_chunk(images[i: i + chunk], cfg)
    return out


def _preprocess_chunk(images: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    import torch

    s = cfg.input_size
    x = torch.from_numpy(images.astype(np.float32))  # a copy: Ray Data hands read-only blocks
    if x.shape[1:] != (s, s):
        # Bilinear with half-pixel centres and no antialiasing: the same numbers as cv2.resize(...,
        # INTER_LINEAR) on float32 (tests/test_data_preprocess.py checks), but one call per chunk.
        x = torch.nn.functional.interpolate(x[:, None], size=(s, s), mode="bilinear", align_corners=False)[:, 0]
    out = x.numpy()
    if cfg.smoothing_sigma > 0:
        for i in range(len(out)):  # cv2 is ~20 us per 64x64 image: a loop is fine here
            out[i] = cv2.GaussianBlur(out[i], (0, 0), sigmaX=cfg.smoothing_sigma, borderType=cv2.BORDER_REFLECT_101)
    lo = out.min(axis=(1, 2), keepdims=True)
    span = out.max(axis=(1, 2), keepdims=True) - lo
    scale = np.divide(255.0, span, out=np.zeros_like(span), where=span > 0)  # constant image -> 0
    out -= lo
    out *= scale
    return np.rint(out, out=out).astype(np.uint8)


def compute_norm(images_uint8: np.ndarray) -> Norm:
    """Mean/std of preprocessed training images in [0, 1] scale (float64 accumulation)."""
    x = np.asarray(images_uint8, np.float64) / 255.0
    return Norm(float(x.mean()), float(x.std()) or 1.0)


def to_model_input(batch, cfg: PreprocessConfig, norm: Norm | None = None):
    """uint8 [B, S, S] (numpy or torch) -> float32 [B, 1, S, S] in [0, 1], standardised if asked.

    Returns the same kind (numpy or torch) it was given; torch tensors stay on their device.
    """
    return standardize(to_unit(batch), cfg, norm)


def to_unit(batch):
    """The first step of `to_model_input`: uint8 [B, S, S] (numpy or torch) -> float32 [B, 1, S, S] in [0, 1].
    Training batches are augmented between this and `standardize`."""
    if isinstance(batch, np.ndarray):
        return batch.astype(np.float32)[:, None] / np.float32(255.0)
    import torch

    return batch.to(torch.float32).unsqueeze(1) / 255.0


def standardize(x01, cfg: PreprocessConfig, norm: Norm | None = None):
    """The last step of `to_model_input` on float [B, 1, S, S] in [0, 1] (numpy or torch): subtract the training
    split's mean and divide by its std when `cfg.standardize`, else unchanged."""
    if not cfg.standardize:
        return x01
    if norm is None:
        raise ValueError("standardize: cfg.standardize=True needs the training-split Norm")
    if isinstance(x01, np.ndarray):
        return (x01 - np.float32(norm.mean)) / np.float32(norm.std)
    return (x01 - norm.mean) / norm.std
