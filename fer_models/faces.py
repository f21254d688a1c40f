"""Read photos of any size or colour, find faces with OpenCV's Haar cascade, crop them FER-2013 style.

FER-2013 faces are 48x48 grayscale crops, roughly square around the face with a little forehead and
chin. To feed a trained model anything else we: read the image (any format Pillow reads, EXIF
rotation applied, alpha dropped) -> grayscale -> detect faces with the frontal-face Haar cascade that
ships inside OpenCV's wheel (``cv2.data.haarcascades``; no download) -> take a square box around each
face widened by ``margin`` on every side -> crop (replicating the border where the box leaves the
image) -> resize to 48x48. ``margin=0.1`` matches FER-2013's framing: on FER faces upscaled 4x the
cascade's box covers ~82% of the side, i.e. the FER crop is ~1.2x the cascade box.

The Haar cascade needs OpenCV 4.x: OpenCV 5 moved ``CascadeClassifier`` out of the main package, so
with ``opencv-python-headless>=5`` :func:`detect_faces` raises :class:`FaceDetectorUnavailable`.

Used by ``fer_models.predict`` and ``sweep.evaluate --crop-faces``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fer_data.classes import IMAGE_SIZE
from fer_data.errors import DataError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Small images are upscaled before detection: the cascade's 24x24 base window misses faces that
# fill a 48x48 image (measured: FER-2013 faces are found at 192 px, rarely at 48).
DETECT_MIN_SIDE = 192
# Very large photos are downscaled for detection only (speed); crops come from the full image.
DETECT_MAX_SIDE = 1280


class FaceDetectorUnavailable(RuntimeError):
    """OpenCV has no Haar-cascade detector (OpenCV 5 removed it from the main package)."""


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the original image: top-left (x, y), width w, height h."""

    x: int
    y: int
    w: int
    h: int

    def iou(self, other: Box) -> float:
        """Intersection over union with ``other`` (0..1)."""
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.w * self.h + other.w * other.h - inter
        return inter / union if union else 0.0

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image Pillow can open as RGB uint8 ``[H, W, 3]`` (EXIF orientation applied).

    Raises :class:`DataError` naming the file when it is missing or not an image.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16/32-bit grayscale: Pillow's convert("RGB") clips at 255, so scale to 8 bit first.
                arr = np.asarray(im, dtype=np.float64)
                hi = arr.max() or 1.0
                im = Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8))
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 ``[H, W]`` from ``[H, W]``, ``[H, W, 1]``, RGB ``[H, W, 3]`` or RGBA ``[H, W, 4]``."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        # Floats in [0, 1] or wider integer types: scale to 0..255 rather than wrap around.
        img = img.astype(np.float64)
        scale = 255.0 if img.max() <= 1.0 else 255.0 / max(img.max(), 1.0)
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2GRAY)
    raise ValueError(f"expected an image [H,W], [H,W,1], [H,W,3] or [H,W,4], got shape {img.shape}")


@lru_cache(maxsize=1)
def load_cascade() -> cv2.CascadeClassifier:
    """The frontal-face Haar cascade bundled with OpenCV (loaded once per process)."""
    if not hasattr(cv2, "CascadeClassifier"):
        raise FaceDetectorUnavailable(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved Haar cascades out "
            "of the main package); install opencv-python-headless<5, or pass --no-detect"
        )
    path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceDetectorUnavailable(f"{path}: OpenCV's bundled Haar cascade is missing or unreadable")
    return cascade


def detect_faces(
    gray: np.ndarray,
    *,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size_frac: float = 0.05,
) -> list[Box]:
    """Face boxes in ``gray`` (uint8 ``[H, W]``), largest first, in original pixel coordinates.

    ``min_size_frac``: smallest face side as a fraction of the image's shorter side (at least the
    cascade's 24 px window). ``scale_factor`` / ``min_neighbors`` are OpenCV's usual knobs.
    """
    gray = to_gray(gray)
    h, w = gray.shape
    # Detect on a resized copy: small images upscaled (the cascade misses tiny faces), huge ones
    # downscaled (speed); boxes are mapped back by dividing by `scale`.
    scale = 1.0
    if min(h, w) < DETECT_MIN_SIDE:
        scale = DETECT_MIN_SIDE / min(h, w)
    elif max(h, w) > DETECT_MAX_SIDE:
        scale = DETECT_MAX_SIDE / max(h, w)
    work = gray
    if scale != 1.0:
        interp = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        work = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=interp)
    min_side = max(24, int(min_size_frac * min(work.shape)))
    found = load_cascade().detectMultiScale(
        work, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_side, min_side)
    )
    boxes = [
        Box(round(x / scale), round(y / scale), round(bw / scale), round(bh / scale))
        for (x, y, bw, bh) in (found if len(found) else [])
    ]
    return sorted(boxes, key=lambda b: b.w * b.h, reverse=True)


def resize_face(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize a square grayscale crop to ``size`` x ``size`` (area filter down, cubic up)."""
    interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(gray, (size, size), interpolation=interp)


def crop_face(gray: np.ndarray, box: Box, *, margin: float = 0.1, size: int = IMAGE_SIZE) -> np.ndarray:
    """Square crop around ``box`` widened by ``margin`` of its side on every side, as uint8 ``[size, size]``.

    Parts of the square outside the image are filled by replicating the border (a face at the
    edge of a photo stays centred, as in FER-2013).
    """
    gray = to_gray(gray)
    side = max(box.w, box.h) * (1.0 + 2.0 * margin)
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x0 + s - w, y0 + s - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = gray[y0 + pad : y0 + pad + s, x0 + pad : x0 + pad + s]
    return resize_face(crop, size)


def center_square(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """The whole image treated as a face: centre square crop, resized to ``size`` x ``size`` uint8."""
    gray = to_gray(gray)
    h, w = gray.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return resize_face(gray[y0 : y0 + s, x0 : x0 + s], size)


def image_to_faces(
    path: str | Path, *, detect: bool = True, margin: float = 0.1
) -> tuple[np.ndarray, list[Box], np.ndarray]:
    """Read ``path`` and return ``(rgb image, boxes, faces uint8 [F, 48, 48])``.

    With ``detect=False`` the whole image is one face (box = the centre square). ``F`` may be 0.
    """
    rgb = read_image(path)
    gray = to_gray(rgb)
    if not detect:
        h, w = gray.shape
        s = min(h, w)
        boxes = [Box((w - s) // 2, (h - s) // 2, s, s)]
        return rgb, boxes, center_square(gray)[None]
    boxes = detect_faces(gray)
    faces = np.stack([crop_face(gray, b, margin=margin) for b in boxes]) if boxes else np.zeros(
        (0, IMAGE_SIZE, IMAGE_SIZE), np.uint8
    )
    return rgb, boxes, faces
