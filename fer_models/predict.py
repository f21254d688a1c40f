"""Predict emotions on photos: find faces, crop, preprocess exactly as in training, classify.

Run::

    python -m fer_models.predict photo.jpg [more.png ...] --checkpoint CKPT
        [--json] [--annotate OUT.png] [--no-detect] [--margin 0.1] [--export onnx OUT.onnx]

``CKPT`` is a checkpoint directory written by ``fer_models.checkpoint.save_checkpoint``
(``model.safetensors`` + ``meta.json``) or a folder holding exactly one such directory (a trial
folder). Loading never unpickles: weights come from safetensors, and a tampered or
wrong-architecture checkpoint is refused.

Each image: faces are found with OpenCV's Haar cascade (``fer_models.faces``), each is cropped with
a small margin to a 48x48 grayscale face (FER-2013's format) and then goes through the same
deterministic preprocessing the model was trained with (the config saved in the checkpoint's
``meta.json``). ``--no-detect`` treats the whole image (its centre square) as one face. Output: one
line per face with the probabilities of the 7 classes in canonical order (``fer_data.CLASS_NAMES``),
or JSON with ``--json``. ``--annotate OUT.png`` writes the image with boxes and top labels (with
several images: ``OUT_<n>_<image stem>.png``). ``--export onnx OUT.onnx`` also writes the model as
ONNX and checks onnxruntime matches PyTorch within 1e-4 on the faces found.

Exit codes: 0 every image had at least one face; 3 some image had no face (it is reported as
``no face found``, JSON ``"faces": []``; other images are still processed); 1 an error (unreadable
image, bad checkpoint, failed ONNX parity) with a one-line message on stderr; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from fer_data.classes import CLASS_NAMES
from fer_data.errors import DataError
from fer_models import faces as facelib

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_FACE = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------
# Checkpoint + preprocessing adapters (shared with sweep.evaluate)


def find_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory at ``path``: itself when it holds ``meta.json``, else the single
    directory below it (up to 4 levels) that holds ``meta.json`` + ``model.safetensors``."""
    from fer_models.checkpoint import CheckpointError

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint directory")
    if p.is_file():
        p = p.parent  # accept a path to model.safetensors or meta.json
    if (p / "meta.json").exists():
        return p
    found = sorted(
        m.parent for m in p.rglob("meta.json") if (m.parent / "model.safetensors").exists() and len(m.relative_to(p).parts) <= 5
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(f"{p}: no checkpoint (meta.json + model.safetensors) in this folder")
    raise CheckpointError(f"{p}: {len(found)} checkpoints found, pass one of: {', '.join(map(str, found[:5]))}")


def load_model(path: str | Path) -> tuple[nn.Module, dict]:
    """``(model in eval mode, meta)`` from a checkpoint directory (see :func:`find_checkpoint_dir`).

    Raises ``fer_models.checkpoint.CheckpointError`` (one line) for a missing, tampered or
    mismatched checkpoint.
    """
    from fer_models.checkpoint import CheckpointError, load_checkpoint

    d = find_checkpoint_dir(path)
    model, meta = load_checkpoint(d)
    cfg, _ = preprocess_config(meta)  # fail at load, not at the first image
    size = meta.get("input_size", cfg.input_size)
    if size != cfg.input_size:
        raise CheckpointError(f"{d / 'meta.json'}: model input_size {size} != preprocess input_size {cfg.input_size}")
    return model.eval(), meta


_NORM_REPR = re.compile(r"^Norm\(mean=([-+0-9.eE]+), std=([-+0-9.eE]+)\)$")


def preprocess_config(meta: dict):
    """``(PreprocessConfig, Norm | None)`` from a checkpoint's meta.

    ``meta["preprocess"]`` may be a bare ``PreprocessConfig`` dict or the sweep's whole data section
    (extra keys such as ``protocol`` do not affect inference and are ignored), but every
    ``PreprocessConfig`` field must be there: a default silently filled in would change the input.
    ``meta["norm"]`` (needed when ``standardize``) is ``{"mean", "std"}`` or ``Norm``'s repr (what
    ``json.dumps(default=str)`` makes of the dataclass), parsed with a regex, never evaluated.
    """
    import dataclasses

    from fer_data.preprocess import Norm, PreprocessConfig
    from fer_models.checkpoint import CheckpointError

    pre = meta.get("preprocess")
    names = [f.name for f in dataclasses.fields(PreprocessConfig)]
    if not isinstance(pre, dict) or any(n not in pre for n in names):
        raise CheckpointError(f"meta.json: 'preprocess' must hold {names}, got {pre!r}")
    try:
        cfg = PreprocessConfig(**{n: pre[n] for n in names})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"meta.json: bad preprocess config: {e}") from None
    if not cfg.standardize:
        return cfg, None
    raw = meta.get("norm")
    if isinstance(raw, dict) and {"mean", "std"} <= set(raw):
        return cfg, Norm(float(raw["mean"]), float(raw["std"]))
    m = _NORM_REPR.match(raw) if isinstance(raw, str) else None
    if m:
        return cfg, Norm(float(m.group(1)), float(m.group(2)))
    raise CheckpointError(f"meta.json: preprocess.standardize is true but 'norm' is {raw!r} (need {{'mean': .., 'std': ..}})")


def preprocess_faces(faces48: np.ndarray, meta: dict) -> torch.Tensor:
    """uint8 faces ``[N, 48, 48]`` -> the float model input ``[N, 1, S, S]`` exactly as in training.

    The checkpoint's saved preprocessing (:func:`preprocess_config`) through fer_data's own
    ``preprocess_images`` + ``to_model_input``, so training and inference cannot drift apart.
    """
    from fer_data.preprocess import preprocess_images, to_model_input

    cfg, norm = preprocess_config(meta)
    faces48 = np.asarray(faces48, dtype=np.uint8)
    if faces48.ndim != 3 or faces48.shape[1:] != (48, 48):
        raise ValueError(f"expected uint8 faces [N, 48, 48], got {faces48.shape}")
    return to_model_input(torch.from_numpy(preprocess_images(faces48, cfg)), cfg, norm)


@torch.no_grad()
def predict_proba(model: nn.Module, meta: dict, faces48: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``[N, 7]`` (softmax, canonical class order) for uint8 faces ``[N, 48, 48]``."""
    out = []
    for i in range(0, len(faces48), batch_size):
        x = preprocess_faces(faces48[i : i + batch_size], meta)
        out.append(torch.softmax(model(x).float(), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


# --------------------------------------------------------------------------------------------
# Per-image prediction, output, annotation


@dataclass
class ImageResult:
    image: str
    boxes: list[facelib.Box]
    probs: np.ndarray  # [F, 7]
    faces48: np.ndarray  # [F, 48, 48] uint8 (kept for the ONNX parity check)
    rgb: np.ndarray  # [H, W, 3] uint8 (kept for --annotate)

    def to_json(self) -> dict:
        return {
            "image": self.image,
            "faces": [
                {
                    "box": box.as_list(),
                    "label": CLASS_NAMES[int(np.argmax(p))],
                    "probs": {name: round(float(v), 6) for name, v in zip(CLASS_NAMES, p)},
                }
                for box, p in zip(self.boxes, self.probs)
            ],
        }

    def to_text(self) -> str:
        if not self.boxes:
            return f"{self.image}: no face found"
        lines = [f"{self.image}: {len(self.boxes)} face{'s' if len(self.boxes) > 1 else ''}"]
        for i, (b, p) in enumerate(zip(self.boxes, self.probs), 1):
            probs = " ".join(f"{n}={v:.3f}" for n, v in zip(CLASS_NAMES, p))
            lines.append(
                f"  face {i} [x={b.x} y={b.y} w={b.w} h={b.h}]: {CLASS_NAMES[int(np.argmax(p))]} ({p.max():.3f})  {probs}"
            )
        return "\n".join(lines)


def predict_image(model: nn.Module, meta: dict, path: str | Path, *, detect: bool = True, margin: float = 0.1) -> ImageResult:
    """Find, crop and classify every face in the image at ``path``."""
    rgb, boxes, faces48 = facelib.image_to_faces(path, detect=detect, margin=margin)
    return ImageResult(str(path), boxes, predict_proba(model, meta, faces48), faces48, rgb)


def annotate(result: ImageResult, out: str | Path) -> Path:
    """Write ``result.rgb`` with a box and ``Label p`` above each face to ``out`` (format by suffix)."""
    bgr = cv2.cvtColor(result.rgb, cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    thick = max(1, round(min(h, w) / 200))
    for b, p in zip(result.boxes, result.probs):
        cv2.rectangle(bgr, (b.x, b.y), (b.x + b.w, b.y + b.h), (0, 255, 0), thick)
        text = f"{CLASS_NAMES[int(np.argmax(p))]} {p.max():.2f}"
        scale = max(0.3, b.w / 160)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = b.y - base - 2 if b.y - th - base - 2 >= 0 else b.y + b.h + th + 2  # below the box at the top edge
        cv2.rectangle(bgr, (b.x, ty - th - 2), (b.x + tw + 2, ty + base), (0, 255, 0), -1)
        cv2.putText(bgr, text, (b.x + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), bgr):
        raise DataError(f"{out}: could not write the annotated image (unknown suffix?)")
    return out


def annotate_paths(out: str | Path, images: list[str]) -> list[Path]:
    """Where ``--annotate OUT`` writes each image: ``OUT`` for one image, ``OUT_<n>_<stem>`` for several."""
    out = Path(out)
    if len(images) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}_{Path(img).stem}{out.suffix}") for i, img in enumerate(images, 1)]


# --------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fer_models.predict",
        description="Detect faces and predict FER-2013 emotions with a trained checkpoint.",
        epilog="Exit codes: 0 ok; 3 some image had no face; 1 error; 2 bad arguments.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size, colour or grayscale)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint directory (model.safetensors + meta.json)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.add_argument("--annotate", metavar="OUT.png", help="write the image with face boxes and top labels")
    p.add_argument("--no-detect", action="store_true", help="treat the whole image (centre square) as one face")
    p.add_argument("--margin", type=float, default=0.1, help="crop margin around each face box, fraction of its side (default 0.1)")
    p.add_argument("--export", nargs=2, metavar=("FORMAT", "OUT"), help="also export the model: 'onnx OUT.onnx' (parity checked)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.export and args.export[0].lower() != "onnx":
        print(f"error: --export {args.export[0]}: the only format is 'onnx'", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.margin <= 1:
        print(f"error: --margin {args.margin}: must be in [0, 1]", file=sys.stderr)
        return EXIT_USAGE
    from fer_models.checkpoint import CheckpointError
    from fer_models.onnx_export import OnnxParityError, check_parity, export_onnx

    try:
        model, meta = load_model(args.checkpoint)
        results = [predict_image(model, meta, img, detect=not args.no_detect, margin=args.margin) for img in args.images]
        if args.annotate:
            for res, out in zip(results, annotate_paths(args.annotate, args.images)):
                annotate(res, out)
        export_line = None
        if args.export:
            faces = np.concatenate([r.faces48 for r in results])
            if not len(faces):  # no face anywhere: check parity on the whole images instead (still real inputs)
                faces = np.stack([facelib.center_square(facelib.to_gray(r.rgb)) for r in results])
            x = preprocess_faces(faces, meta)
            path = export_onnx(model, x.shape[-1], args.export[1], channels=x.shape[1], example=x[:1])
            diff = check_parity(model, path, x)
            export_line = {"onnx": str(path), "parity_max_abs_diff": diff, "parity_inputs": len(x)}
    except (CheckpointError, DataError, facelib.FaceDetectorUnavailable, OnnxParityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR

    if args.json:
        doc = {"checkpoint": str(args.checkpoint), "classes": list(CLASS_NAMES), "images": [r.to_json() for r in results]}
        if export_line:
            doc["export"] = export_line
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            print(r.to_text())
        if export_line:
            print(
                f"exported {export_line['onnx']}: onnxruntime matches PyTorch, max |diff| "
                f"{export_line['parity_max_abs_diff']:.2e} on {export_line['parity_inputs']} faces"
            )
    return EXIT_NO_FACE if any(not r.boxes for r in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
