"""Training-time augmentation with albumentations 2.x (the study's section 3.2.2).

Each transform is an ablation switch whose strength is a parameter; 0 turns it off:
rotation (+-degrees), horizontal flip (probability), slight scaling (+-fraction),
brightness/contrast (+-fraction), Gaussian noise (max std as a fraction of 255) and synthetic
occlusion (probability of 1-3 random grey-level rectangles, each up to a quarter of the side,
standing in for glasses, hands or masks). It runs per epoch inside the training workers on the
preprocessed uint8 images, on the training split only; val/test are never augmented.

Seeded: ``build_augmenter(cfg, seed)`` returns a pipeline whose random stream is fixed by ``seed``,
so the same seed gives the same augmented batch.

    aug = build_augmenter(AugmentConfig(), seed=0)
    batch = augment_batch(images_uint8, aug)  # uint8 [B, S, S] -> uint8 [B, S, S]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0  # max |rotation| in degrees (study: +-10); 0 = off
    hflip_p: float = 0.5  # probability of a horizontal flip; 0 = off
    scale: float = 0.1  # max relative zoom in/out (0.1 = 90%..110%); 0 = off
    brightness_contrast: float = 0.2  # max relative brightness and contrast change; 0 = off
    noise_std: float = 0.02  # max std of additive Gaussian noise, fraction of 255; 0 = off
    occlusion_p: float = 0.2  # probability of synthetic occlusion patches; 0 = off

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"AugmentConfig.{name} must be a number >= 0, got {value!r}")
        for name in ("hflip_p", "occlusion_p", "scale", "brightness_contrast", "noise_std"):
            if getattr(self, name) > 1:
                raise ValueError(f"AugmentConfig.{name} must be <= 1, got {getattr(self, name)!r}")
        if self.rotation_deg > 180:
            raise ValueError(f"AugmentConfig.rotation_deg must be <= 180, got {self.rotation_deg!r}")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """Every transform off."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def is_identity(self) -> bool:
        return not any(asdict(self).values())


def build_augmenter(cfg: AugmentConfig, seed: int = 0):
    """An ``albumentations.Compose`` for grayscale uint8 [S, S] images, or None when all are off."""
    import albumentations as A
    import cv2

    if cfg.is_identity:
        return None
    t = []
    if cfg.rotation_deg or cfg.scale:
        t.append(A.Affine(rotate=(-cfg.rotation_deg, cfg.rotation_deg), scale=(1 - cfg.scale, 1 + cfg.scale),
                          interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_REFLECT_101, p=1.0))
    if cfg.hflip_p:
        t.append(A.HorizontalFlip(p=cfg.hflip_p))
    if cfg.brightness_contrast:
        t.append(A.RandomBrightnessContrast(brightness_limit=cfg.brightness_contrast,
                                            contrast_limit=cfg.brightness_contrast, p=1.0))
    if cfg.noise_std:
        t.append(A.GaussNoise(std_range=(0.0, cfg.noise_std), p=1.0))
    if cfg.occlusion_p:
        t.append(A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.25),
                                 hole_width_range=(0.1, 0.25), fill="random_uniform", p=cfg.occlusion_p))
    return A.Compose(t, seed=seed)


def augment_batch(images: np.ndarray, augmenter) -> np.ndarray:
    """Augment uint8 [B, S, S] image by image; returns a new uint8 [B, S, S] array.

    ``augmenter=None`` (all transforms off) returns a copy. Accepts a torch tensor too (returned as
    numpy): call it on the CPU batch before ``to_model_input``.
    """
    x = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"augment_batch expects uint8 [B, S, S], got {x.dtype} {x.shape}")
    if augmenter is None:
        return x.copy()
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = augmenter(image=x[i])["image"].reshape(x.shape[1:])
    return out
