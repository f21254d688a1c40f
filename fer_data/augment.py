"""Training-time augmentation (the study's section 3.2.2): one policy, ``AugmentConfig``, applied as a few batched
tensor ops on the training device.

Each transform is an ablation switch whose strength is a parameter; 0 turns it off:
rotation (+-degrees), horizontal flip (probability), slight scaling (+-fraction),
brightness/contrast (+-fraction), Gaussian noise (max std as a fraction of 255) and synthetic
occlusion (probability of 1-3 rectangles of a random grey level, each 10-25% of the side,
standing in for glasses, hands or masks). Training split only; val/test are never augmented.

``augment_images(x, cfg, generator)`` draws every parameter per image from ``generator`` (a seeded
``torch.Generator`` on the images' device), then applies the geometry (rotation, scale, flip) as one sampling
grid + ``grid_sample`` for the whole batch, and the photometric transforms and occlusion as elementwise ops.
Per image, not per batch: a torchvision v2 transform draws one parameter set per call.
The parameter draws do not depend on which switches are on (all are drawn every time, in a fixed order;
only the noise field is drawn when noise is on), so two configs given the same generator differ only by the
transforms they switch (common random numbers).

albumentations (``build_augmenter`` + ``augment_batch``: one image at a time on the CPU) implements the same
policy with the same parameter ranges. It is the reference the tensor ops are checked against
(tests/test_augment_device.py compares what each transform does to the same faces) and the baseline of
benchmarks/augment_throughput.py; training does not use it.

    x = augment_images(faces_01, AugmentConfig(), generator)  # float [B, 1, S, S] in [0, 1], any device
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: fer_data itself loads without it
    import torch


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


MAX_HOLES = 3
HOLE_SIDE = (0.1, 0.25)  # an occlusion rectangle's side, as a fraction of the image side


def draw_params(cfg: AugmentConfig, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-image parameters of the policy for a batch of `n`, on the generator's device.

    Always the same draws in the same order whatever `cfg` switches on; a switched-off transform's
    parameters are its identity."""
    import torch

    # One draw for the whole batch, a column per parameter (a call per parameter costs more than its numbers).
    u = torch.rand(n, 8 + MAX_HOLES * 5, generator=generator, device=generator.device)  # uniform [0, 1)
    sym = u[:, :4] * 2 - 1  # uniform [-1, 1): rotation, scale, contrast, brightness
    return {
        "angle_deg": sym[:, 0] * cfg.rotation_deg,
        "scale": 1 + sym[:, 1] * cfg.scale,
        "contrast": 1 + sym[:, 2] * cfg.brightness_contrast,
        "brightness": sym[:, 3] * cfg.brightness_contrast,
        "noise_std": u[:, 4] * cfg.noise_std,
        "flip": u[:, 5] < cfg.hflip_p,
        "occlude": u[:, 6] < cfg.occlusion_p,
        "holes": 1 + (u[:, 7] * MAX_HOLES).long().clamp(max=MAX_HOLES - 1),  # 1..3
        "hole_box": u[:, 8:].view(n, MAX_HOLES, 5),  # height, width, top, left (fractions of their ranges), grey level
    }


def augment_images(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                   params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """float [B, 1, S, S] in [0, 1] -> a new augmented batch, same shape, device and range.

    `params` (from `draw_params`) replaces the parameter draws, for tests. The Gaussian noise field is drawn
    from `generator` after the parameters, only when noise is on. With every switch off the batch is returned
    unchanged and nothing is drawn."""
    import torch
    import torch.nn.functional as F

    if x.dim() != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise ValueError(f"augment_images expects float [B, 1, S, S], got {x.dtype} {tuple(x.shape)}")
    if cfg.is_identity:
        return x
    n, s = x.shape[0], x.shape[-1]
    p = draw_params(cfg, n, generator) if params is None else params

    def per_image(t):  # [B] -> [B, 1, 1, 1] in the images' dtype
        return t.to(x.dtype).view(-1, 1, 1, 1)

    if cfg.rotation_deg or cfg.scale:
        # Output pixel -> input pixel in grid_sample's [-1, 1] coordinates, -1 and 1 the centres of the edge
        # pixels (align_corners=True): rotate about the centre, zoom by `scale` (> 1 zooms in), mirror x when
        # flipped. Bilinear; outside the face, the face mirrored about its edge pixels' centres, which is
        # albumentations' BORDER_REFLECT_101 (align_corners=False would mirror about the edges: BORDER_REFLECT).
        # The grid is built as two [B, S, S] planes (x and y), each a row term plus a column term, and handed to
        # grid_sample as a [B, S, S, 2] view: a [B, S, S, 2] sum, F.affine_grid or a [S*S, 2] @ [B, 2, 2] matmul
        # take 3-6x as long on a CPU (2-element inner loops). Every op here counts: at batch 128 on a CPU, the
        # fixed cost of a torch call is ~1/10 of the whole.
        a = torch.deg2rad(p["angle_deg"])
        cos, sin = a.cos() / p["scale"], a.sin() / p["scale"]
        f = 1 - 2 * p["flip"].to(cos.dtype)
        m = torch.stack([cos * f, sin * f, -sin, cos], 1).to(x.dtype).view(n, 4, 1, 1)  # d/dx_out, d/dy_out
        c = torch.linspace(-1, 1, s, device=x.device, dtype=x.dtype)  # pixel centres
        planes = c.view(s, 1) * m[:, 2:] + c * m[:, :2]  # [B, 2, S (y), S (x)]
        x = F.grid_sample(x, planes.permute(0, 2, 3, 1), mode="bilinear", padding_mode="reflection",
                          align_corners=True)
    elif cfg.hflip_p:
        x = torch.where(p["flip"][:, None, None, None], x.flip(-1), x)  # exact: no resampling
    else:
        x = x.clone()  # the ops below work in place
    # From here on x is this function's own tensor: in place saves a pass over the batch per op.
    if cfg.brightness_contrast:
        x.mul_(per_image(p["contrast"])).add_(per_image(p["brightness"])).clamp_(0, 1)
    if cfg.noise_std:
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x.add_(noise.mul_(per_image(p["noise_std"]))).clamp_(0, 1)  # (addcmul_ broadcasts 5x slower on a CPU)
    if cfg.occlusion_p:
        # On a CPU only the occluded images (a fifth of the batch at the study's p = 0.2) are touched; on a GPU,
        # selecting them would cost a host sync per batch, so there the holes' masks cover the whole batch.
        occlude(x, p, only_hit=x.device.type == "cpu")
    return x


def occlude(x: torch.Tensor, p: dict[str, torch.Tensor], only_hit: bool) -> None:
    """Paint `p`'s occlusion holes into x (float [B, 1, S, S]) in place. `only_hit`: work on the occluded images
    alone (gathered, painted, written back) rather than masks over the whole batch; the same result either way."""
    import torch

    s = x.shape[-1]
    hit = p["occlude"].nonzero().squeeze(1) if only_hit else slice(None)
    box = p["hole_box"][hit].to(x.dtype)  # [images, holes, 5]
    lo, hi = HOLE_SIDE
    size = box[..., :2] * ((hi - lo) * s) + lo * s  # each hole's height and width in pixels
    start = box[..., 2:4] * (s - size)  # its top and left
    on = (torch.arange(MAX_HOLES, device=x.device) < p["holes"][hit, None]) & p["occlude"][hit, None]
    centre = torch.arange(s, device=x.device, dtype=x.dtype) + 0.5
    spans = ((centre >= start[..., None]) & (centre < (start + size)[..., None]) & on[..., None, None]).to(x.dtype)
    inside = spans[:, :, 0, :, None] * spans[:, :, 1, None, :]  # [images, holes, S, S]: 1 inside the hole, else 0
    sub = x[hit]  # a copy of the occluded images, or with only_hit False a view of the whole batch
    for k in range(MAX_HOLES):  # one grey level per hole (albumentations' "random_uniform"); later holes on top
        sub.lerp_(box[:, k, 4].view(-1, 1, 1, 1), inside[:, k, None])  # exact at weights 0 and 1
    if only_hit:
        x[hit] = sub


def build_augmenter(cfg: AugmentConfig, seed: int = 0):
    """The reference implementation: an ``albumentations.Compose`` for grayscale uint8 [S, S] images with the
    same parameter ranges as `augment_images`, or None when all are off."""
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
        t.append(A.CoarseDropout(num_holes_range=(1, MAX_HOLES), hole_height_range=HOLE_SIDE,
                                 hole_width_range=HOLE_SIDE, fill="random_uniform", p=cfg.occlusion_p))
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
