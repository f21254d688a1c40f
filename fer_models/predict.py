"""Predict emotions on photos: find faces, crop, preprocess exactly as in training, classify.

Run::

    python -m fer_models.predict photo.jpg [more.png ...] --checkpoint CKPT
        [--json] [--annotate OUT.png] [--no-detect] [--margin 0.1] [--export onnx OUT.onnx] [--force]

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

Outputs never replace an existing file unless ``--force``, and never an input (an image, a file of
the checkpoint) even then; each is written to a temporary name beside it and renamed into place, and
every output path is checked (writable, not a directory, a suffix OpenCV can write) before anything runs.

Exit codes: 0 every image had at least one face; 3 some image had no face or could not be read (it
is reported as ``no face found``, JSON ``"faces": []``, or as a one-line ``error:`` on stderr, JSON
``"error"``; other images are still processed); 1 an error (no image readable, bad checkpoint,
failed ONNX parity) with a one-line message on stderr; 2 bad arguments or an output path refused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import sys
import warnings
from collections.abc import Callable, Iterable
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
    mismatched checkpoint, or one whose preprocessing is invalid (checked before the model is built).
    """
    from fer_models.checkpoint import CheckpointError, load_checkpoint

    def check(meta: dict, meta_path: Path) -> None:
        cfg, _ = preprocess_config(meta, source=meta_path)  # fail at load, not at the first image
        size = meta.get("input_size", cfg.input_size)
        if size != cfg.input_size:
            raise CheckpointError(f"{meta_path}: model input_size {size} != preprocess input_size {cfg.input_size}")

    model, meta = load_checkpoint(find_checkpoint_dir(path), check=check)
    return model.eval(), meta


_NORM_REPR = re.compile(r"^Norm\(mean=([-+0-9.eE]+), std=([-+0-9.eE]+)\)$")


def preprocess_config(meta: dict, source: str | Path = "meta.json"):
    """``(PreprocessConfig, Norm | None)`` from a checkpoint's meta (``source`` names it in errors).

    ``meta["preprocess"]`` may be a bare ``PreprocessConfig`` dict or the sweep's whole data section
    (extra keys such as ``protocol`` do not affect inference and are ignored), but every
    ``PreprocessConfig`` field must be there: a default silently filled in would change the input.
    ``meta["norm"]`` (needed when ``standardize``) is ``{"mean", "std"}`` or ``Norm``'s repr (what
    ``json.dumps(default=str)`` makes of the dataclass), parsed with a regex, never evaluated; its
    mean must be finite and its std finite and > 0 (std 0 would turn every input into inf/NaN).
    """
    import dataclasses

    from fer_data.preprocess import Norm, PreprocessConfig
    from fer_models.checkpoint import CheckpointError

    pre = meta.get("preprocess")
    names = [f.name for f in dataclasses.fields(PreprocessConfig)]
    if not isinstance(pre, dict) or any(n not in pre for n in names):
        raise CheckpointError(f"{source}: 'preprocess' must hold {names}, got {pre!r}")
    try:
        cfg = PreprocessConfig(**{n: pre[n] for n in names})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: bad preprocess config: {e}") from None
    sigma = cfg.smoothing_sigma
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma <= cfg.input_size:
        # cv2 sizes the Gaussian kernel from sigma: a huge one would allocate without bound
        raise CheckpointError(f"{source}: preprocess.smoothing_sigma must be a number in 0..{cfg.input_size}, got {sigma!r}")
    if not isinstance(cfg.standardize, bool):
        raise CheckpointError(f"{source}: preprocess.standardize must be true or false, got {cfg.standardize!r}")
    if not cfg.standardize:
        return cfg, None
    raw = meta.get("norm")
    mean = std = None
    if isinstance(raw, dict) and {"mean", "std"} <= set(raw):
        mean, std = raw["mean"], raw["std"]
    elif isinstance(raw, str) and (m := _NORM_REPR.match(raw)):
        mean, std = m.group(1), m.group(2)
    else:
        raise CheckpointError(f"{source}: preprocess.standardize is true but 'norm' is {raw!r} (need {{'mean': .., 'std': ..}})")
    try:
        if isinstance(mean, bool) or isinstance(std, bool):
            raise TypeError
        mean, std = float(mean), float(std)
    except (TypeError, ValueError):
        raise CheckpointError(f"{source}: 'norm' mean and std must be numbers, got {raw!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise CheckpointError(f"{source}: 'norm' needs a finite mean and a finite std > 0, got mean={mean!r} std={std!r}")
    return cfg, Norm(mean, std)


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
# Outputs that never clobber (shared with sweep.evaluate)


class OutputError(ValueError):
    """An output path refused before anything is written; the message (one line) names the path."""


def _same_path(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are the same file (hard links, symlinks) or resolve to the same path."""
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare as written
        return os.path.abspath(a) == os.path.abspath(b)


def _check_writable(out: Path) -> None:
    """Refuse a directory, a non-regular file (a device would be replaced), a path under a file, or a
    folder where no file can be created (read-only, /proc): probed by creating and removing a file."""
    if out.is_dir():
        raise OutputError(f"{out}: is a directory; give a file name")
    if out.exists() and not out.is_file():
        raise OutputError(f"{out}: exists and is not a regular file")
    anc = out.parent
    while not anc.exists():
        if anc == anc.parent:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{out}: cannot write under {anc}: not a directory")
    probe = anc / f".{out.name}.{secrets.token_hex(4)}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{out}: cannot write in {anc} ({e.strerror or e})") from None


def check_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path] = (), *, force: bool = False,
                  is_input: Callable[[Path], str | None] | None = None) -> list[Path]:
    """Check output paths before any work: writable, each named once, none an input (refused even
    with ``force``; ``is_input(existing output)`` may name further inputs, e.g. a dataset's images,
    by returning what it is) and, without ``force``, none existing. Raises :class:`OutputError`."""
    outs, ins = [Path(o) for o in outputs], [Path(i) for i in inputs]
    for i, out in enumerate(outs):
        _check_writable(out)
        for other in outs[:i]:
            if _same_path(out, other):
                raise OutputError(f"{out}: the same path as another output ({other})")
        for inp in ins:
            if _same_path(out, inp):
                raise OutputError(f"{out}: is an input ({inp}); refusing to overwrite it, even with --force")
        if out.exists() and is_input is not None and (what := is_input(out)):
            raise OutputError(f"{out}: is {what}; refusing to overwrite it, even with --force")
        if out.exists() and not force:
            raise OutputError(f"{out}: exists; pass --force to replace it")
    return outs


def write_output(out: str | Path, write: bytes | str | Callable[[Path], None]) -> Path:
    """Write to a temporary file beside ``out`` (same suffix, so writers that go by it still work),
    then rename it onto ``out`` (os.replace): readers never see a half-written file, and a failure
    leaves the old file as it was. ``write`` is the content or a function writing the given path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.tmp{out.suffix}")
    try:
        if callable(write):
            write(tmp)
        else:
            data = write.encode() if isinstance(write, str) else write
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666: the umask applies, as for open()
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return out


def image_suffix_error(path: str | Path) -> str | None:
    """Why OpenCV cannot write an image at ``path`` (by its suffix), or None when it can."""
    p = Path(path)
    if not p.suffix:
        return f"{p}: no file extension; use .png or .jpg"
    if not cv2.haveImageWriter(str(p)):
        return f"{p}: OpenCV cannot write '{p.suffix}' images; use .png or .jpg"
    return None


@contextlib.contextmanager
def image_read_guard(path: str | Path):
    """Turn Pillow's decompression-bomb warning and error into a one-line DataError for ``path``:
    an image over Pillow's pixel limit is refused instead of decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(f"{path}: cannot read image ({e})") from None


# --------------------------------------------------------------------------------------------
# Per-image prediction, output, annotation


@dataclass
class ImageResult:
    image: str
    boxes: list[facelib.Box]
    probs: np.ndarray  # [F, 7]
    faces48: np.ndarray  # [F, 48, 48] uint8 (kept for the ONNX parity check)
    rgb: np.ndarray  # [H, W, 3] uint8 (kept for --annotate)
    error: str | None = None  # the image could not be read: the one-line reason

    @classmethod
    def unreadable(cls, image: str, error: str) -> ImageResult:
        empty = np.zeros((0, len(CLASS_NAMES)), np.float32)
        return cls(image, [], empty, np.zeros((0, 48, 48), np.uint8), np.zeros((0, 0, 3), np.uint8), error)

    def to_json(self) -> dict:
        if self.error:
            return {"image": self.image, "error": self.error, "faces": []}
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
        if self.error:
            return f"{self.image}: unreadable (see the error above)"
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
    with image_read_guard(path):
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
    if err := image_suffix_error(out):
        raise DataError(err)
    ok, buf = cv2.imencode(out.suffix, bgr)
    if not ok:
        raise DataError(f"{out}: OpenCV could not encode the annotated image")
    return write_output(out, buf.tobytes())


def annotate_paths(out: str | Path, images: list[str]) -> list[Path]:
    """Where ``--annotate OUT`` writes each image: ``OUT`` for one image, ``OUT_<n>_<stem>`` for several."""
    out = Path(out)
    if len(images) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i}_{Path(img).stem}{out.suffix}") for i, img in enumerate(images, 1)]


# --------------------------------------------------------------------------------------------
# CLI


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one ``error:`` line (exit 2), like every other refusal here."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m fer_models.predict",
        description="Detect faces and predict FER-2013 emotions with a trained checkpoint.",
        epilog="Exit codes: 0 ok; 3 some image had no face or was unreadable; 1 error; 2 bad arguments or output refused.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size, colour or grayscale)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint directory (model.safetensors + meta.json)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    p.add_argument("--annotate", metavar="OUT.png", help="write the image with face boxes and top labels")
    p.add_argument("--no-detect", action="store_true", help="treat the whole image (centre square) as one face")
    p.add_argument("--margin", type=float, default=0.1, help="crop margin around each face box, fraction of its side (default 0.1)")
    p.add_argument("--export", nargs=2, metavar=("FORMAT", "OUT"), help="also export the model: 'onnx OUT.onnx' (parity checked)")
    p.add_argument("--force", action="store_true", help="replace existing output files (never an input or a checkpoint file)")
    return p


def _checkpoint_files(ckpt_arg: str, ckpt_dir: Path) -> list[Path]:
    """Files an output must never replace: every file of the checkpoint directory (and the path given)."""
    files = [p for p in ckpt_dir.iterdir() if p.is_file()]
    return files + ([Path(ckpt_arg)] if Path(ckpt_arg).is_file() else [])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.export and args.export[0].lower() != "onnx":
        print(f"error: --export {args.export[0]}: the only format is 'onnx'", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.margin <= 1:
        print(f"error: --margin {args.margin}: must be in [0, 1]", file=sys.stderr)
        return EXIT_USAGE
    if args.annotate and (err := image_suffix_error(args.annotate)):
        print(f"error: --annotate {err}", file=sys.stderr)
        return EXIT_USAGE
    from fer_models.checkpoint import CheckpointError
    from fer_models.onnx_export import OnnxParityError, check_parity, export_onnx

    try:
        ckpt_dir = find_checkpoint_dir(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    annotate_outs = annotate_paths(args.annotate, args.images) if args.annotate else []
    export_out = Path(args.export[1]) if args.export else None
    try:
        check_outputs([*annotate_outs, *([export_out] if export_out else [])],
                      [*args.images, *_checkpoint_files(args.checkpoint, ckpt_dir)], force=args.force)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    try:
        model, meta = load_model(ckpt_dir)
        results = []
        for img in args.images:
            try:
                results.append(predict_image(model, meta, img, detect=not args.no_detect, margin=args.margin))
            except DataError as e:  # this image only: report it and go on with the others
                print(f"error: {e}", file=sys.stderr)
                results.append(ImageResult.unreadable(str(img), str(e)))
        readable = [r for r in results if r.error is None]
        if not readable:
            if len(results) > 1:
                print(f"error: none of the {len(results)} images could be read", file=sys.stderr)
            return EXIT_ERROR
        out = None
        try:
            for res, out in zip(results, annotate_outs):
                if res.error is None:
                    annotate(res, out)
        except OSError as e:  # an output that became unwritable after the checks
            print(f"error: {out}: cannot write ({e.strerror or e})", file=sys.stderr)
            return EXIT_USAGE
        export_line = None
        if export_out:
            faces = np.concatenate([r.faces48 for r in readable])
            if not len(faces):  # no face anywhere: check parity on the whole images instead (still real inputs)
                faces = np.stack([facelib.center_square(facelib.to_gray(r.rgb)) for r in readable])
            x = preprocess_faces(faces, meta)
            diff = None

            def export_and_check(tmp: Path) -> None:  # parity is checked before the file takes its name
                nonlocal diff
                export_onnx(model, x.shape[-1], tmp, channels=x.shape[1], example=x[:1])
                diff = check_parity(model, tmp, x)

            try:
                write_output(export_out, export_and_check)
            except OSError as e:
                print(f"error: {export_out}: cannot write ({e.strerror or e})", file=sys.stderr)
                return EXIT_USAGE
            export_line = {"onnx": str(export_out), "parity_max_abs_diff": diff, "parity_inputs": len(x)}
    except (CheckpointError, DataError, facelib.FaceDetectorUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OnnxParityError as e:  # the message names the temporary file, which is gone: name the output
        print(f"error: {export_out}: not written: {str(e).split(': ', 1)[-1]}", file=sys.stderr)
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
    return EXIT_NO_FACE if any(not r.boxes for r in results) else EXIT_OK  # unreadable ones have no boxes


if __name__ == "__main__":
    sys.exit(main())
