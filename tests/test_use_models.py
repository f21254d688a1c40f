"""Using trained models: face detection + crop, predict CLI, evaluation on other datasets, ONNX
export with onnxruntime parity, and safe checkpoint loading (refusing tampered / mismatched weights).

Real FER-2013 faces are read from the shared CSV (only its first rows, for speed); the checkpoint is
a small real model, trained for one short epoch by the test and saved with the real save_checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fer_data.classes import CLASS_NAMES
from fer_models import build_model, save_checkpoint
from fer_models import faces as facelib
from fer_models.checkpoint import meta_digest
from fer_models.onnx_export import check_parity, export_onnx, run_onnx
from fer_models.predict import find_checkpoint_dir, load_model, predict_proba, preprocess_faces
from fer_models.predict import main as predict_main
from fer_models.training import classification_metrics, train_one_epoch
from sweep.evaluate import EvalData, evaluate_checkpoint, load_eval_data
from sweep.evaluate import main as evaluate_main

REPO = Path(__file__).resolve().parents[1]
FER_CSV = Path(os.environ.get("FER_CSV", REPO.parent / "shared/datasets/fer2013/icml_face_data.csv.gz"))
if not FER_CSV.exists():
    FER_CSV = Path("/work/shared/datasets/fer2013/icml_face_data.csv.gz")
pytestmark = pytest.mark.skipif(not FER_CSV.exists(), reason=f"real FER-2013 not found at {FER_CSV}")

HAS_CASCADE = hasattr(cv2, "CascadeClassifier")
needs_cascade = pytest.mark.skipif(
    not HAS_CASCADE, reason=f"OpenCV {cv2.__version__} has no Haar CascadeClassifier (OpenCV 5); needs opencv-python-headless<5"
)

N_ROWS = 1500  # first rows of the CSV (all Training): enough faces of every class, parsed in ~0.3 s
SMALL = {"input_size": 48, "conv_widths": (8, 16, 32), "dense_widths": (32,)}


@pytest.fixture(scope="module")
def fer_faces() -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(FER_CSV, nrows=N_ROWS)
    df.columns = [c.strip() for c in df.columns]
    x = np.stack([np.array(p.split(), dtype=np.uint8).reshape(48, 48) for p in df["pixels"]])
    return x, df["emotion"].to_numpy(np.int64).copy()  # pandas hands out a read-only view


def _meta(x: np.ndarray, model_name: str = "baseline", overrides: dict | None = None) -> dict:
    """Checkpoint meta as a sweep trial writes it: model, preprocessing config and train-split Norm."""
    import dataclasses

    from fer_data.preprocess import PreprocessConfig, compute_norm, preprocess_images

    pre = PreprocessConfig(input_size=48, standardize=True)
    return {
        "model_name": model_name,
        "overrides": dict(overrides or SMALL),
        "input_size": 48,
        "class_names": list(CLASS_NAMES),
        "preprocess": dataclasses.asdict(pre),
        "norm": dataclasses.asdict(compute_norm(preprocess_images(x, pre))),
    }


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, fer_faces) -> Path:
    """A small baseline trained for one short epoch on real faces, saved with the real save_checkpoint."""
    x, y = fer_faces
    torch.manual_seed(0)
    model = build_model("baseline", **SMALL)
    meta = _meta(x)
    inputs = preprocess_faces(x[:256], meta)  # a few steps: non-degenerate outputs, ~2 s on 2 busy cores
    batches = [(inputs[i : i + 64], torch.as_tensor(y[i : i + 64])) for i in range(0, 256, 64)]
    train_one_epoch(model, batches, torch.optim.Adam(model.parameters(), 1e-3), precision="fp32")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", model.eval(), meta)


@pytest.fixture(scope="module")
def canvas_face(fer_faces, tmp_path_factory):
    """A real Happy/Neutral FER face the cascade finds, scaled 4x onto a 640x480 canvas: (path, box, face)."""
    if not HAS_CASCADE:
        pytest.skip("no Haar cascade in this OpenCV")
    x, y = fer_faces
    for i in np.flatnonzero(np.isin(y, [3, 6]))[:300]:
        if len(facelib.detect_faces(x[i])) != 1:
            continue
        canvas = np.full((480, 640, 3), 0, np.uint8)
        canvas[:] = np.linspace(60, 200, 640, dtype=np.uint8)[None, :, None]  # smooth background
        canvas[:, :, 2] = 90  # some colour: the pipeline must convert it
        big = cv2.resize(x[i], (192, 192), interpolation=cv2.INTER_CUBIC)
        canvas[100:292, 300:492] = big[:, :, None]
        boxes = facelib.detect_faces(facelib.to_gray(canvas))
        if len(boxes) == 1:
            path = tmp_path_factory.mktemp("canvas") / f"face_{i}.png"
            Image.fromarray(canvas).save(path)
            return path, facelib.Box(300, 100, 192, 192), x[i]
    pytest.fail("no FER-2013 Happy/Neutral face among the first 300 was found by the cascade on a canvas")


# ---------------------------------------------------------------------------------------------- faces


@needs_cascade
def test_face_found_and_cropped_on_canvas(canvas_face):
    path, pasted, face = canvas_face
    rgb = facelib.read_image(path)
    boxes = facelib.detect_faces(facelib.to_gray(rgb))
    assert len(boxes) == 1
    assert boxes[0].iou(pasted) > 0.5, (boxes[0], pasted)
    gray = facelib.to_gray(rgb)
    crop = facelib.crop_face(gray, boxes[0])
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # Cropping the pasted square without margin gives the original face back (up to resampling).
    exact = facelib.crop_face(gray, pasted, margin=0.0)
    assert np.abs(exact.astype(int) - face).mean() < 4
    # The detected crop frames the face like a margin crop of the true square does.
    r = np.corrcoef(crop.ravel().astype(float), facelib.crop_face(gray, pasted).ravel().astype(float))[0, 1]
    assert r > 0.7, r


@needs_cascade
def test_no_face_on_noise_or_blank():
    noise = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    assert facelib.detect_faces(noise) == []
    assert facelib.detect_faces(np.full((480, 640), 128, np.uint8)) == []


def test_colour_and_size_are_converted_exactly(tmp_path, fer_faces):
    x, _ = fer_faces
    face = x[0]
    # RGB with equal channels, 3x nearest-neighbour upscale: grayscale + INTER_AREA give the face back exactly.
    rgb = np.repeat(np.repeat(face, 3, 0), 3, 1)[:, :, None].repeat(3, 2)
    Image.fromarray(rgb).save(tmp_path / "big_rgb.png")
    _, boxes, faces = facelib.image_to_faces(tmp_path / "big_rgb.png", detect=False)
    assert boxes == [facelib.Box(0, 0, 144, 144)]
    np.testing.assert_array_equal(faces[0], face)
    # Non-square: the centre square is taken.
    wide = np.zeros((48, 80), np.uint8)
    wide[:, 16:64] = face
    np.testing.assert_array_equal(facelib.center_square(wide), face)


def test_unreadable_image_is_a_one_line_error(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    from fer_data.errors import DataError

    with pytest.raises(DataError, match="not_an_image.png: cannot read image"):
        facelib.read_image(bad)


# ---------------------------------------------------------------------------------------------- predict


@needs_cascade
def test_predict_cli_finds_face_json_and_annotates(canvas_face, ckpt, tmp_path, capsys):
    path, pasted, face = canvas_face
    out = tmp_path / "annotated.png"
    rc = predict_main([str(path), "--checkpoint", str(ckpt), "--json", "--annotate", str(out)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["classes"] == list(CLASS_NAMES)
    (img,) = doc["images"]
    (f,) = img["faces"]
    assert facelib.Box(*f["box"]).iou(pasted) > 0.5
    assert list(f["probs"]) == list(CLASS_NAMES)
    assert sum(f["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert f["label"] == max(f["probs"], key=f["probs"].get)
    # Same probabilities as classifying the crop directly with the training preprocessing.
    model, meta = load_model(ckpt)
    gray = facelib.to_gray(facelib.read_image(path))
    direct = predict_proba(model, meta, facelib.crop_face(gray, facelib.Box(*f["box"]))[None])[0]
    np.testing.assert_allclose(list(f["probs"].values()), direct, atol=1e-5)
    ann = np.asarray(Image.open(out).convert("RGB"))
    orig = np.asarray(Image.open(path).convert("RGB"))
    assert ann.shape == orig.shape and (ann != orig).any(axis=2).sum() > 500  # box + label drawn


@needs_cascade
def test_predict_cli_no_face(tmp_path, ckpt, capsys):
    noise = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert predict_main([str(tmp_path / "noise.png"), "--checkpoint", str(ckpt)]) == 3
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'noise.png'}: no face found"
    assert predict_main([str(tmp_path / "noise.png"), "--checkpoint", str(ckpt), "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["images"][0]["faces"] == []


def test_predict_no_detect_uses_training_preprocessing(tmp_path, ckpt, fer_faces, capsys):
    x, _ = fer_faces
    Image.fromarray(x[5]).save(tmp_path / "face.png")
    assert predict_main([str(tmp_path / "face.png"), "--checkpoint", str(ckpt), "--no-detect", "--json"]) == 0
    probs = json.loads(capsys.readouterr().out)["images"][0]["faces"][0]["probs"]
    model, meta = load_model(ckpt)
    from fer_data.preprocess import Norm, PreprocessConfig, preprocess_images, to_model_input

    with torch.no_grad():
        cfg = PreprocessConfig(**meta["preprocess"])
        ref = torch.softmax(model(torch.from_numpy(to_model_input(preprocess_images(x[5:6], cfg), cfg, Norm(**meta["norm"])))), 1)
    np.testing.assert_allclose(list(probs.values()), ref[0].numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------- ONNX


def test_onnx_parity_on_real_faces(tmp_path, ckpt, fer_faces):
    x, _ = fer_faces
    model, meta = load_model(ckpt)
    inputs = preprocess_faces(x[:200], meta)
    path = export_onnx(model, 48, tmp_path / "m.onnx", example=inputs[:1])
    diff = check_parity(model, path, inputs)  # raises above 1e-4
    assert diff < 1e-4
    assert run_onnx(path, inputs[:1].numpy()).shape == (1, 7)  # dynamic batch axis: 1 and 200 both run
    assert run_onnx(path, inputs[:37].numpy()).shape == (37, 7)


def test_predict_cli_export_onnx(tmp_path, ckpt, fer_faces, capsys):
    x, _ = fer_faces
    for i in range(3):
        Image.fromarray(x[i]).save(tmp_path / f"f{i}.png")
    imgs = [str(tmp_path / f"f{i}.png") for i in range(3)]
    rc = predict_main([*imgs, "--checkpoint", str(ckpt), "--no-detect", "--json", "--export", "onnx", str(tmp_path / "m.onnx")])
    assert rc == 0
    exp = json.loads(capsys.readouterr().out)["export"]
    assert exp["parity_inputs"] == 3 and exp["parity_max_abs_diff"] < 1e-4
    assert (tmp_path / "m.onnx").stat().st_size > 10_000
    assert predict_main([*imgs, "--checkpoint", str(ckpt), "--export", "tflite", "x"]) == 2


# ---------------------------------------------------------------------------------------------- evaluate


def _write_folder(root: Path, x: np.ndarray, y: np.ndarray, per_class: int = 6) -> dict[str, np.ndarray]:
    """Class folders under alias names; some images colour / larger; plus a 'contempt' folder."""
    names = {0: "anger", 1: "disgusted", 2: "fearful", 3: "happiness", 4: "sadness", 5: "surprised", 6: "neutrality"}
    picked = {}
    for label, name in names.items():
        idx = np.flatnonzero(y == label)[:per_class]
        picked[name] = idx
        (root / name).mkdir(parents=True)
        for j, i in enumerate(idx):
            img = x[i]
            if j % 3 == 1:  # colour, 2x larger: must come back to the exact 48x48 gray face
                img = np.repeat(np.repeat(img, 2, 0), 2, 1)[:, :, None].repeat(3, 2)
            Image.fromarray(img).save(root / name / f"{i}.png")
    (root / "contempt").mkdir()
    for i in range(4):
        Image.fromarray(x[100 + i]).save(root / "contempt" / f"c{i}.png")
    return picked


def test_evaluate_image_folder_with_aliases_and_skipped_class(tmp_path, ckpt, fer_faces, capsys):
    x, y = fer_faces
    picked = _write_folder(tmp_path / "data", x, y)
    report = tmp_path / "out" / "report.md"
    rc = evaluate_main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--out", str(report)])
    printed = capsys.readouterr().out
    assert rc == 0
    text = report.read_text()
    assert printed.strip() == text.strip()
    assert "| contempt | 4 | skipped (no FER-2013 counterpart) |" in text
    assert "| anger | 6 | Angry |" in text and "| neutrality | 6 | Neutral |" in text
    assert "42 images evaluated" in text
    doc = json.loads(report.with_suffix(".json").read_text())
    m = doc["metrics"]
    assert m["per_class"]["support"] == [6] * 7  # contempt's 4 images are nowhere
    # The same numbers as classifying the original 48x48 faces directly.
    # evaluation reads class folders, and files inside them, in sorted path order
    idx = np.array([int(f.stem) for n in sorted(picked) for f in sorted((tmp_path / "data" / n).rglob("*.png"))])
    assert len(idx) == 42
    model, meta = load_model(ckpt)
    pred = predict_proba(model, meta, x[idx]).argmax(1)
    ref = classification_metrics(y[idx], pred)
    assert m["acc"] == pytest.approx(ref["acc"])
    assert m["confusion"] == ref["confusion"]
    assert m["macro_f1"] == pytest.approx(ref["macro_f1"])


def test_evaluate_counts_dead_relu_units(tmp_path, ckpt, fer_faces, capsys):
    x, y = fer_faces
    model, meta = load_model(ckpt)
    dense = model.classifier[1]
    with torch.no_grad():  # five dense features that can never fire: no weight, a negative bias
        dense.weight[:5] = 0.0
        dense.bias[:5] = -1.0
    m = evaluate_checkpoint(model, meta, EvalData(faces48=x[:300], labels=y[:300], source="first 300", layout="fer2013"))
    rows = {r["layer"]: r for r in m["unit_activity"]}
    assert list(rows) == [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.ReLU)]
    with torch.no_grad():  # the dense ReLU's outputs, computed directly
        z = torch.relu(dense(model.features(preprocess_faces(x[:300], meta)).flatten(1)))
    row = rows["classifier.2"]
    assert row["units"] == 32 and row["never_active"] == int((z.amax(0) <= 0).sum()) >= 5
    assert row["active_share"] == pytest.approx(float((z > 0).float().mean()))
    conv = rows["features.0.2"]  # the first conv block (conv, batch norm, ReLU)'s ReLU: a unit is a channel, over images and positions
    assert conv["units"] == 8 and 0 < conv["active_share"] < 1
    save_checkpoint(tmp_path / "dead", model, meta)  # and in the CLI's report
    folder = tmp_path / "data"
    _write_folder(folder, x, y)
    assert evaluate_main(["--checkpoint", str(tmp_path / "dead"), "--data", str(folder)]) == 0
    assert "## ReLU units (dead units)" in capsys.readouterr().out


def test_evaluate_unknown_class_is_an_error_unless_skipped(tmp_path, ckpt, fer_faces, capsys):
    x, _ = fer_faces
    for name in ("happy", "mystery"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(x[i]).save(tmp_path / "d" / name / f"{i}.png")
    assert evaluate_main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown class folder(s) ['mystery']" in err and "--skip-unknown" in err
    assert evaluate_main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "d"), "--skip-unknown"]) == 0
    assert "| mystery | 3 | skipped (unknown class name) |" in capsys.readouterr().out


def test_evaluate_fer_csv_layout_by_split(tmp_path, ckpt, fer_faces, capsys, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # keep fer_data's parse cache out of ~
    x, y = fer_faces
    # A small CSV in the icml layout: 30 PublicTest rows + 20 PrivateTest rows of real faces.
    usage = ["PublicTest"] * 30 + ["PrivateTest"] * 20
    df = pd.DataFrame({"emotion": y[:50], " Usage": usage, " pixels": [" ".join(map(str, f.ravel())) for f in x[:50]]})
    df.to_csv(tmp_path / "small.csv", index=False)
    data = load_eval_data(tmp_path / "small.csv")  # default split: test = PrivateTest
    assert data.split == "test" and len(data.labels) == 20
    np.testing.assert_array_equal(data.faces48, x[30:50])
    assert evaluate_main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "small.csv"), "--split", "val"]) == 0
    assert "30 images evaluated" in capsys.readouterr().out


def test_evaluate_fer_image_folder_release(tmp_path, ckpt, fer_faces, capsys, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    x, y = fer_faces
    root = tmp_path / "fer"
    for i in range(40):  # ids 0..24 Training, 25..39 PrivateTest; class folders are FER's lower-case names
        split, usage = ("train", "Training") if i < 25 else ("test", "PrivateTest")
        d = root / split / CLASS_NAMES[y[i]].lower()
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(d / f"{usage}_{i}.png")
    data = load_eval_data(root)
    assert data.layout == "fer2013" and data.split == "test" and len(data.labels) == 15
    np.testing.assert_array_equal(np.sort(data.labels), np.sort(y[25:40]))
    assert evaluate_main(["--checkpoint", str(ckpt), "--data", str(root), "--split", "train"]) == 0
    assert "25 images evaluated" in capsys.readouterr().out


@needs_cascade
def test_evaluate_crop_faces_reports_images_without_face(tmp_path, ckpt, canvas_face, capsys):
    path, _, _ = canvas_face
    (tmp_path / "d" / "happy").mkdir(parents=True)
    shutil.copy(path, tmp_path / "d" / "happy" / "canvas.png")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200), dtype=np.uint8)).save(tmp_path / "d" / "happy" / "noise.png")
    assert evaluate_main(["--checkpoint", str(ckpt), "--data", str(tmp_path / "d"), "--crop-faces"]) == 0
    out = capsys.readouterr().out
    assert "1 images evaluated" in out and "no face found in 1 images" in out and "noise.png" in out


# ---------------------------------------------------------------------------------------------- safe loading


def test_tampered_checkpoint_is_refused(tmp_path, ckpt, fer_faces, capsys):
    bad = tmp_path / "tampered"
    shutil.copytree(ckpt, bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-100:-90] = bytes(b ^ 0xFF for b in raw[-100:-90])  # flip bytes inside a weight tensor
    (bad / "model.safetensors").write_bytes(bytes(raw))
    Image.fromarray(fer_faces[0][0]).save(tmp_path / "f.png")
    assert predict_main([str(tmp_path / "f.png"), "--checkpoint", str(bad), "--no-detect"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "tampered" in err
    assert evaluate_main(["--checkpoint", str(bad), "--data", str(tmp_path)]) == 1
    assert "tampered" in capsys.readouterr().err


def test_wrong_architecture_checkpoint_is_refused(tmp_path, ckpt, fer_faces, capsys):
    # meta.json says "baseline" (BatchNorm); the weights are a no_batchnorm model's, hash updated to match.
    bad = tmp_path / "wrong_arch"
    shutil.copytree(ckpt, bad)
    other = save_checkpoint(tmp_path / "other", build_model("no_batchnorm", **SMALL), _meta(fer_faces[0], "no_batchnorm"))
    shutil.copy(other / "model.safetensors", bad / "model.safetensors")
    meta = json.loads((bad / "meta.json").read_text())
    meta["weights_sha256"] = json.loads((other / "meta.json").read_text())["weights_sha256"]
    meta["meta_sha256"] = meta_digest(meta)  # a consistent forgery: only the architecture check is left
    (bad / "meta.json").write_text(json.dumps(meta))
    Image.fromarray(fer_faces[0][0]).save(tmp_path / "f.png")
    assert predict_main([str(tmp_path / "f.png"), "--checkpoint", str(bad), "--no-detect"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "do not match architecture" in err


def test_checkpoint_meta_as_the_sweep_writes_it(tmp_path, ckpt, fer_faces):
    """sweep/trial.py saves its whole data section as 'preprocess' and the Norm dataclass (which
    save_checkpoint's json default=str turns into its repr): both are read correctly."""
    from fer_data.preprocess import Norm

    model, meta = load_model(ckpt)
    sweep_meta = {**meta, "preprocess": {**meta["preprocess"], "protocol": "official", "balance": "none",
                                         "limit_per_split": 0, "seed": 0}, "norm": Norm(**meta["norm"])}
    for k in ("config", "weights_file", "weights_sha256"):
        sweep_meta.pop(k)
    d = save_checkpoint(tmp_path / "sweep_style", model, sweep_meta)
    assert json.loads((d / "meta.json").read_text())["norm"].startswith("Norm(mean=")
    model2, meta2 = load_model(d)
    x = fer_faces[0][:20]
    np.testing.assert_allclose(predict_proba(model2, meta2, x), predict_proba(model, meta, x), atol=1e-6)
    # A missing preprocessing field is refused rather than silently defaulted.
    broken = json.loads((d / "meta.json").read_text())
    del broken["preprocess"]["standardize"]
    broken["meta_sha256"] = meta_digest(broken)
    (d / "meta.json").write_text(json.dumps(broken))
    with pytest.raises(Exception, match="'preprocess' must hold"):
        load_model(d)


def test_checkpoint_found_inside_trial_folder(tmp_path, ckpt, fer_faces, capsys):
    trial = tmp_path / "trial_0001"
    shutil.copytree(ckpt, trial / "checkpoint_000003" / "best")
    assert find_checkpoint_dir(trial) == trial / "checkpoint_000003" / "best"
    Image.fromarray(fer_faces[0][0]).save(tmp_path / "f.png")
    assert predict_main([str(tmp_path / "f.png"), "--checkpoint", str(trial), "--no-detect"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{tmp_path / 'f.png'}: 1 face") and "Angry=" in out
    shutil.copytree(ckpt, trial / "checkpoint_000004")
    with pytest.raises(Exception, match="2 checkpoints found"):
        find_checkpoint_dir(trial)


def test_cli_module_error_is_one_line_without_traceback(tmp_path, fer_faces):
    Image.fromarray(fer_faces[0][0]).save(tmp_path / "f.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "fer_models.predict", str(tmp_path / "f.png"), "--checkpoint", str(empty)],
        capture_output=True, text=True, cwd=REPO, timeout=300,  # importing torch took 125 s on 2 busy cores
    )
    assert r.returncode == 1
    assert r.stderr == f"error: {empty}: no checkpoint (meta.json + model.safetensors) in this folder\n"
