"""Evaluate a trained checkpoint on any labelled face dataset and write a small markdown report.

Run::

    python -m sweep.evaluate --checkpoint CKPT --data DATASET [--split test] [--out report.md]
        [--crop-faces] [--margin 0.1] [--skip-unknown] [--batch-size 256] [--force]

``DATASET`` is one of

* a FER-2013 file in either Kaggle layout (``icml_face_data.csv[.gz]``, ``fer2013.csv``) or the
  image-folder release (``train/`` + ``test/`` with one lower-case folder per class), read by
  ``fer_data.load_fer2013``; ``--split`` picks ``test`` (PrivateTest, default), ``val``
  (PublicTest), ``train`` or ``all``;
* any folder of face images with one sub-folder per class (images found recursively inside each).
  Class names are mapped with ``fer_data.aliases`` (``anger`` -> Angry, ``happiness`` -> Happy, ...);
  a class with no FER-2013 counterpart (``contempt``, ``calm``, ...) is reported with its image count
  and skipped, never merged; an unrecognised name is an error listing the accepted names unless
  ``--skip-unknown``.

Every image, whatever its size or colour, becomes a 48x48 grayscale face exactly like FER-2013's
(the centre square, or with ``--crop-faces`` the largest face the Haar cascade finds plus a margin;
images with no face found, and images that cannot be read (corrupt, or over Pillow's
decompression-bomb pixel limit), are reported and left out) and then goes through the preprocessing saved
in the checkpoint (``fer_models.predict.preprocess_faces``). Metrics are the sweep's (scikit-learn:
accuracy, macro and per-class precision/recall/F1, confusion matrix) and each ReLU layer's dead units (never
active on these images; ``fer_models.activity.UnitActivity``), printed as markdown and, with
``--out``, written to ``report.md`` plus the same numbers as ``report.json``. Neither replaces an
existing file without ``--force``, nor an input (the checkpoint's files, the dataset) even then; both
paths are checked before anything runs, and each file is written under a temporary name and renamed
into place.

Exit codes: 0 ok; 1 bad data or checkpoint, or no image left to evaluate (one-line message);
2 bad arguments or an output path refused.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fer_data.aliases import accepted_names, map_class_names
from fer_data.classes import CLASS_NAMES, IMAGE_SIZE, USAGE_TO_SPLIT
from fer_data.errors import DataError
from fer_models import faces as facelib
from fer_models.activity import UnitActivity

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pnm"})
SPLIT_CHOICES = ("train", "val", "test", "all")


@dataclass
class EvalData:
    """Faces ready for the model plus what the report must say about how they were obtained."""

    faces48: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N], FER-2013 labels
    source: str
    layout: str  # "fer2013" or "image-folder"
    split: str | None = None
    class_rows: list[tuple[str, int, str]] = field(default_factory=list)  # (folder, images, mapped to / why skipped)
    skipped_images: int = 0  # images of skipped classes
    no_face: list[str] = field(default_factory=list)  # images left out because no face was found
    unreadable: list[str] = field(default_factory=list)  # one-line reasons for images that could not be read


def _is_fer_image_release(root: Path) -> bool:
    """True for FER-2013's image-folder release: train/ and test/ whose sub-folders are our class names."""
    from fer_data.classes import FOLDER_TO_LABEL

    if not ((root / "train").is_dir() and (root / "test").is_dir()):
        return False
    subs = {d.name.lower() for s in ("train", "test") for d in (root / s).iterdir() if d.is_dir()}
    return bool(subs) and subs <= set(FOLDER_TO_LABEL)


def _faces_from_gray(gray: np.ndarray, *, crop_faces: bool, margin: float) -> np.ndarray | None:
    """One 48x48 face from a grayscale image: largest detected face (or None), or the centre square."""
    if not crop_faces:
        return facelib.center_square(gray)
    boxes = facelib.detect_faces(gray)
    return facelib.crop_face(gray, boxes[0], margin=margin) if boxes else None


def load_image_folder(root: str | Path, *, crop_faces: bool = False, margin: float = 0.1, skip_unknown: bool = False) -> EvalData:
    """Read a folder with one sub-folder per class (names mapped by ``fer_data.aliases``)."""
    root = Path(root)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
    mapping = map_class_names([d.name for d in class_dirs])
    if mapping.unknown and not skip_unknown:
        raise DataError(
            f"{root}: unknown class folder(s) {mapping.unknown}; accepted names: {accepted_names()}; "
            "pass --skip-unknown to leave them out"
        )
    from fer_models.predict import image_read_guard

    faces, labels, rows, no_face, unreadable, skipped_images = [], [], [], [], [], 0
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if d.name not in mapping.mapped:
            why = "no FER-2013 counterpart" if mapping.skipped[d.name] == "no-counterpart" else "unknown class name"
            rows.append((d.name, len(files), f"skipped ({why})"))
            skipped_images += len(files)
            continue
        label = mapping.mapped[d.name]
        rows.append((d.name, len(files), CLASS_NAMES[label]))
        for p in files:
            try:
                with image_read_guard(p):
                    rgb = facelib.read_image(p)
            except DataError as e:  # this image only: reported, the others are still evaluated
                unreadable.append(str(e))
                continue
            face = _faces_from_gray(facelib.to_gray(rgb), crop_faces=crop_faces, margin=margin)
            if face is None:
                no_face.append(str(p))
                continue
            faces.append(face)
            labels.append(label)
    return EvalData(
        faces48=np.stack(faces) if faces else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        source=str(root),
        layout="image-folder",
        class_rows=rows,
        skipped_images=skipped_images,
        no_face=no_face,
        unreadable=unreadable,
    )


def load_fer_layout(path: str | Path, *, split: str, crop_faces: bool = False, margin: float = 0.1) -> EvalData:
    """A FER-2013 csv / csv.gz / image-folder release via ``fer_data.load_fer2013``, one split of it."""
    from fer_data.sources import load_fer2013

    arrays = load_fer2013(path)
    if split == "all":
        keep = np.ones(len(arrays.labels), bool)
    else:
        keep = np.array([USAGE_TO_SPLIT.get(str(u)) == split for u in arrays.usage])
    images, labels = arrays.images[keep], arrays.labels[keep]
    faces, kept_labels, no_face = [], [], []
    for i, (img, lab) in enumerate(zip(images, labels)):
        face = _faces_from_gray(img, crop_faces=crop_faces, margin=margin) if crop_faces else img
        if face is None:
            no_face.append(f"{path}: {split} image {i}")
            continue
        faces.append(face)
        kept_labels.append(lab)
    counts = np.bincount(np.asarray(kept_labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    return EvalData(
        faces48=np.stack(faces) if faces else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
        labels=np.asarray(kept_labels, dtype=np.int64),
        source=str(path),
        layout="fer2013",
        split=split,
        class_rows=[(n, int(c), n) for n, c in zip(CLASS_NAMES, counts)],
        no_face=no_face,
    )


def load_eval_data(spec: str | Path, *, split: str | None = None, crop_faces: bool = False, margin: float = 0.1, skip_unknown: bool = False) -> EvalData:
    """Dispatch on the dataset's layout (see module doc)."""
    p = Path(spec)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_file() or _is_fer_image_release(p):
        return load_fer_layout(p, split=split or "test", crop_faces=crop_faces, margin=margin)
    if split is not None:
        raise DataError(f"{p}: --split applies to FER-2013 layouts only; a class-folder dataset is evaluated whole")
    return load_image_folder(p, crop_faces=crop_faces, margin=margin, skip_unknown=skip_unknown)


def evaluate_checkpoint(model: torch.nn.Module, meta: dict, data: EvalData, batch_size: int = 256) -> dict:
    """The sweep's metrics dict for ``model`` on ``data`` (acc, loss, macro_*, per_class, confusion).

    Goes through the sweep's own ``fer_models.training.evaluate`` and ``classification_metrics``.
    """
    from fer_models.predict import preprocess_faces
    from fer_models.training import classification_metrics, evaluate

    if len(data.labels) == 0:
        raise DataError(f"{data.source}: no images left to evaluate (all classes skipped, no faces found"
                        f"{f' or {len(data.unreadable)} unreadable' if data.unreadable else ''})")
    batches = (
        (preprocess_faces(data.faces48[i : i + batch_size], meta), torch.as_tensor(data.labels[i : i + batch_size]))
        for i in range(0, len(data.labels), batch_size)
    )
    activity = UnitActivity(model)
    try:
        out = evaluate(model, batches, precision="fp32")
    finally:
        units = activity.close()
    metrics = classification_metrics(out["y_true"], out["y_pred"])
    metrics["unit_activity"] = units
    metrics["loss"] = float(out["loss"])
    # The sweep's macro averages count all 7 classes; a dataset lacking some classes gets 0 for those,
    # so the report also gives macro F1 over the classes that are present.
    present = np.asarray(metrics["per_class"]["support"]) > 0
    metrics["macro_f1_present"] = float(np.mean(np.asarray(metrics["per_class"]["f1"])[present]))
    metrics["y_pred"] = out["y_pred"]
    return metrics


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def render_report(metrics: dict, data: EvalData, meta: dict, checkpoint: str, command: str, crop_faces: bool) -> str:
    """Markdown report: provenance, class mapping, skipped data, metrics, per-class table, confusion."""
    lines = [f"# Evaluation of `{meta.get('model_name', '?')}` on `{data.source}`", ""]
    lines += [
        f"- command: `{command}`",
        f"- checkpoint: `{checkpoint}`",
        f"- model: `{meta.get('model_name', '?')}` overrides `{json.dumps(meta.get('overrides', {}))}`",
        f"- preprocessing (from the checkpoint): `{json.dumps(meta.get('preprocess', {}))}`",
        f"- data: {data.layout}" + (f", split `{data.split}`" if data.split else "") + f"; {len(data.labels)} images evaluated",
        "- faces: "
        + ("largest Haar-cascade face + margin -> 48x48 grayscale" if crop_faces
           else "FER-2013's own 48x48 faces" if data.layout == "fer2013" else "whole image (centre square) -> 48x48 grayscale"),
    ]
    if data.no_face:
        shown = ", ".join(f"`{p}`" for p in data.no_face[:5])
        lines.append(f"- no face found in {len(data.no_face)} images, left out: {shown}{' ...' if len(data.no_face) > 5 else ''}")
    if data.unreadable:
        shown = "; ".join(f"`{e}`" for e in data.unreadable[:5])
        lines.append(f"- {len(data.unreadable)} images could not be read, left out: {shown}{' ...' if len(data.unreadable) > 5 else ''}")
    lines += ["", "## Classes", "", "| dataset class | images | FER-2013 class |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {n} | {to} |" for name, n, to in data.class_rows]
    skipped = [(n, c) for n, c, to in data.class_rows if to.startswith("skipped")]
    if skipped:
        lines += ["", "Skipped (not merged into any class): " + ", ".join(f"{n} ({c} images)" for n, c in skipped)]
    lines += [
        "",
        "## Metrics",
        "",
        "| accuracy | loss | macro precision | macro recall | macro F1 | macro F1 (classes present) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {_fmt(metrics['acc'])} | {_fmt(metrics['loss'])} | {_fmt(metrics['macro_precision'])} | "
        f"{_fmt(metrics['macro_recall'])} | {_fmt(metrics['macro_f1'])} | {_fmt(metrics['macro_f1_present'])} |",
        "",
        "Macro averages are the sweep's, over all 7 classes (a class with no images scores 0 there).",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    pc = metrics["per_class"]
    for i, name in enumerate(CLASS_NAMES):
        lines.append(f"| {name} | {_fmt(pc['precision'][i])} | {_fmt(pc['recall'][i])} | {_fmt(pc['f1'][i])} | {int(pc['support'][i])} |")
    lines += ["", "## Confusion matrix (rows: true class, columns: predicted)", ""]
    lines.append("| true \\ pred | " + " | ".join(CLASS_NAMES) + " |")
    lines.append("| --- |" + " ---: |" * len(CLASS_NAMES))
    for name, row in zip(CLASS_NAMES, metrics["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
    if metrics.get("unit_activity"):
        lines += ["", "## ReLU units (dead units)", "",
                  "Per ReLU layer, in forward order: the units (a conv layer's channels, a dense layer's features) never "
                  "positive on any of these images, which pass no gradient on them, and the share of all its outputs "
                  "that were positive.", "",
                  "| layer | units | never active | share of outputs active |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| `{r['layer']}` | {r['units']} | {r['never_active']} ({100 * r['never_active'] / r['units']:.1f}%) | "
                  f"{100 * r['active_share']:.1f}% |" for r in metrics["unit_activity"]]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    from fer_models.predict import OneLineParser

    p = OneLineParser(prog="python -m sweep.evaluate", description="Evaluate a checkpoint on a labelled face dataset.")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint directory (model.safetensors + meta.json) or a trial folder holding one")
    p.add_argument("--data", required=True, metavar="DATASET", help="FER-2013 csv/csv.gz/image-folder release, or a folder with one sub-folder per class")
    p.add_argument("--split", choices=SPLIT_CHOICES, default=None, help="FER-2013 layouts only: which split (default test = PrivateTest)")
    p.add_argument("--out", metavar="report.md", help="write the markdown report here (and the metrics as .json beside it)")
    p.add_argument("--crop-faces", action="store_true", help="crop the largest Haar-cascade face of each image (default: whole image)")
    p.add_argument("--margin", type=float, default=0.1, help="face crop margin, fraction of the box side (default 0.1)")
    p.add_argument("--skip-unknown", action="store_true", help="skip (and report) class folders whose name is not recognised")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--force", action="store_true", help="replace existing report files (never an input)")
    return p


def _dataset_image(path: Path, data: Path) -> str | None:
    """What ``path`` is when it is an image of the dataset folder ``data`` (an input), else None."""
    if data.is_dir() and path.suffix.lower() in IMAGE_SUFFIXES and path.resolve().is_relative_to(data.resolve()):
        return f"an image of the dataset {data}"
    return None


def _report_paths(out: Path) -> tuple[Path, Path]:
    """(markdown, json) paths of ``--out``; a .json name would put both in one file."""
    from fer_models.predict import OutputError

    if out.suffix.lower() == ".json":
        raise OutputError(f"{out}: --out names the markdown report; its metrics go to <name>.json beside it, "
                          "so use e.g. report.md")
    return out, out.with_suffix(".json")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        print(f"error: --batch-size {args.batch_size}: must be >= 1", file=sys.stderr)
        return 2
    if not 0 <= args.margin <= 1:
        print(f"error: --margin {args.margin}: must be in [0, 1]", file=sys.stderr)
        return 2
    from fer_models.checkpoint import CheckpointError
    from fer_models.predict import OutputError, check_outputs, find_checkpoint_dir, load_model, write_output

    try:
        ckpt = find_checkpoint_dir(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    outs: tuple[Path, Path] | None = None
    if args.out:
        try:
            outs = _report_paths(Path(args.out))
            check_outputs(outs, [*(p for p in ckpt.iterdir() if p.is_file()), args.data], force=args.force,
                          is_input=lambda out: _dataset_image(out, Path(args.data)))
        except OutputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        model, meta = load_model(ckpt)
        data = load_eval_data(args.data, split=args.split, crop_faces=args.crop_faces, margin=args.margin, skip_unknown=args.skip_unknown)
        for reason in data.unreadable:
            print(f"error: {reason} (left out)", file=sys.stderr)
        metrics = evaluate_checkpoint(model, meta, data, batch_size=args.batch_size)
    except (CheckpointError, DataError, facelib.FaceDetectorUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    command = "python -m sweep.evaluate " + shlex.join(argv)
    report = render_report(metrics, data, meta, str(ckpt), command, args.crop_faces)
    print(report)
    if outs:
        md_path, json_path = outs
        doc = {
            "checkpoint": str(ckpt),
            "data": data.source,
            "split": data.split,
            "classes": [{"name": n, "images": c, "mapped_to": to} for n, c, to in data.class_rows],
            "no_face": len(data.no_face),
            "unreadable": list(data.unreadable),
            "metrics": {k: v for k, v in metrics.items() if k != "y_pred"},
        }
        target = md_path
        try:
            write_output(md_path, report)
            target = json_path
            write_output(json_path, json.dumps(doc, indent=2, default=_jsonable))
        except OSError as e:  # became unwritable after the checks
            print(f"error: {target}: cannot write ({e.strerror or e})", file=sys.stderr)
            return 2
    return 0


def _jsonable(v):
    """numpy scalars/arrays -> plain JSON values."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v)}")


if __name__ == "__main__":
    sys.exit(main())
