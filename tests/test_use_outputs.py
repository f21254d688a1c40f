"""predict / evaluate outputs never clobber, and every bad flag, output path, checkpoint meta or image
is a one-line error: each case checks the exit code, the message and that no file changed (hashes).

The checkpoint is a small untrained model saved with the real save_checkpoint (these tests are about
files, not accuracy); images are random arrays saved as PNG.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fer_models.predict as predict_mod
from fer_data.classes import CLASS_NAMES
from fer_models import build_model, save_checkpoint
from fer_models.checkpoint import meta_digest
from fer_models.predict import main as predict_main
from sweep.evaluate import main as evaluate_main

REPO = Path(__file__).resolve().parents[1]
SMALL = {"input_size": 48, "conv_widths": [8, 16], "dense_widths": [16]}


def _meta() -> dict:
    return {"model_name": "baseline", "overrides": dict(SMALL), "input_size": 48, "class_names": list(CLASS_NAMES),
            "preprocess": {"input_size": 48, "smoothing_sigma": 0.0, "standardize": True},
            "norm": {"mean": 0.5, "std": 0.25}}


@pytest.fixture
def tree(tmp_path) -> Path:
    """tmp_path with ckpt/ (a checkpoint), a.png and b.png (48x48 faces) and data/ (class folders)."""
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", build_model("baseline", **SMALL).eval(), _meta())
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    for cls in ("happy", "sad"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    return tmp_path


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def _refused(main, argv, root: Path, capsys, rc: int = 2) -> str:
    """Run ``main(argv)``: it must exit ``rc`` with one ``error:`` line and leave every file under
    ``root`` as it was (same names, same hashes)."""
    before = _hashes(root)
    try:
        got = main(argv)
    except SystemExit as e:  # argparse errors
        got = e.code
    assert got == rc
    err = _one_line(capsys.readouterr().err)
    assert _hashes(root) == before
    return err


def _predict(tree: Path, *extra: str) -> list[str]:
    return [str(tree / "a.png"), "--checkpoint", str(tree / "ckpt"), "--no-detect", *extra]


def _evaluate(tree: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(tree / "ckpt"), "--data", str(tree / "data"), *extra]


# ------------------------------------------------------------------------------------------ inputs never replaced


@pytest.mark.parametrize("target", ["ckpt/model.safetensors", "ckpt/meta.json"])
@pytest.mark.parametrize("force", [False, True])
def test_export_onto_a_checkpoint_file_is_refused_even_with_force(tree, capsys, target, force):
    err = _refused(predict_main, _predict(tree, "--export", "onnx", str(tree / target), *(["--force"] * force)), tree, capsys)
    assert err == f"error: {tree / target}: is an input ({tree / target}); refusing to overwrite it, even with --force"


@pytest.mark.parametrize("force", [False, True])
def test_annotate_onto_the_input_photo_is_refused_even_with_force(tree, capsys, force):
    err = _refused(predict_main, _predict(tree, "--annotate", str(tree / "a.png"), *(["--force"] * force)), tree, capsys)
    assert err == f"error: {tree / 'a.png'}: is an input ({tree / 'a.png'}); refusing to overwrite it, even with --force"


def test_links_to_inputs_are_inputs(tree, capsys):
    os.symlink(tree / "a.png", tree / "sym.png")
    os.link(tree / "ckpt" / "model.safetensors", tree / "hard.onnx")
    err = _refused(predict_main, _predict(tree, "--annotate", str(tree / "sym.png"), "--force"), tree, capsys)
    assert err.startswith(f"error: {tree / 'sym.png'}: is an input ")
    err = _refused(predict_main, _predict(tree, "--export", "onnx", str(tree / "hard.onnx"), "--force"), tree, capsys)
    assert err.startswith(f"error: {tree / 'hard.onnx'}: is an input ")
    # a relative spelling of the same path is the same path
    rel = os.path.relpath(tree / "a.png")
    err = _refused(predict_main, _predict(tree, "--annotate", rel, "--force"), tree, capsys)
    assert "is an input" in err


def test_annotated_name_of_several_images_that_is_an_input_is_refused(tree, capsys):
    # two images -> OUT_1_a.png, OUT_2_b.png; the first one is also given as an input image
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tree / "o_1_a.png")
    argv = [str(tree / "a.png"), str(tree / "o_1_a.png"), "--checkpoint", str(tree / "ckpt"), "--no-detect",
            "--annotate", str(tree / "o.png"), "--force"]
    err = _refused(predict_main, argv, tree, capsys)
    assert err.startswith(f"error: {tree / 'o_1_a.png'}: is an input ")


def test_two_outputs_on_one_path_are_refused(tree, capsys):
    err = _refused(predict_main, _predict(tree, "--annotate", str(tree / "x.png"), "--export", "onnx", str(tree / "x.png")),
                   tree, capsys)
    assert err == f"error: {tree / 'x.png'}: the same path as another output ({tree / 'x.png'})"


@pytest.mark.parametrize("force", [False, True])
def test_evaluate_out_onto_an_input_is_refused_even_with_force(tree, capsys, force):
    f = ["--force"] * force
    err = _refused(evaluate_main, _evaluate(tree, "--out", str(tree / "ckpt" / "model.safetensors"), *f), tree, capsys)
    assert err.startswith(f"error: {tree / 'ckpt' / 'model.safetensors'}: is an input ") and "even with --force" in err
    err = _refused(evaluate_main, _evaluate(tree, "--out", str(tree / "data" / "happy" / "0.png"), *f), tree, capsys)
    assert err == f"error: {tree / 'data' / 'happy' / '0.png'}: is an image of the dataset {tree / 'data'}; refusing to overwrite it, even with --force"


def test_evaluate_report_inside_the_dataset_folder_is_allowed(tree, capsys):
    """Only the dataset's images are inputs: a report kept beside them can be rebuilt with --force."""
    (tree / "data" / "report.md").write_text("old")
    assert evaluate_main(_evaluate(tree, "--out", str(tree / "data" / "report.md"), "--force")) == 0
    assert capsys.readouterr().out.strip() == (tree / "data" / "report.md").read_text().strip()


def test_evaluate_out_json_is_refused(tree, capsys):
    """--out rep.json would put the report and its metrics into one file (the JSON replaced the markdown)."""
    (tree / "rep.json").write_text("{}")
    for out in ("rep.json", "new.JSON"):
        err = _refused(evaluate_main, _evaluate(tree, "--out", str(tree / out), "--force"), tree, capsys)
        assert err == (f"error: {tree / out}: --out names the markdown report; its metrics go to <name>.json beside it, "
                       "so use e.g. report.md")


# ------------------------------------------------------------------------------------------ existing outputs need --force


def test_existing_outputs_need_force_and_are_replaced_whole(tree, capsys):
    (tree / "old.png").write_bytes(b"old annotation")
    (tree / "old.onnx").write_bytes(b"old model")
    err = _refused(predict_main, _predict(tree, "--annotate", str(tree / "old.png")), tree, capsys)
    assert err == f"error: {tree / 'old.png'}: exists; pass --force to replace it"
    err = _refused(predict_main, _predict(tree, "--export", "onnx", str(tree / "old.onnx")), tree, capsys)
    assert err == f"error: {tree / 'old.onnx'}: exists; pass --force to replace it"

    before = _hashes(tree)
    argv = _predict(tree, "--annotate", str(tree / "old.png"), "--export", "onnx", str(tree / "old.onnx"), "--force")
    assert predict_main(argv) == 0
    capsys.readouterr()
    after = _hashes(tree)
    assert set(after) == set(before)  # no temporary file left behind
    assert {k for k in after if after[k] != before[k]} == {"old.png", "old.onnx"}
    assert Image.open(tree / "old.png").size == (48, 48) and (tree / "old.onnx").stat().st_size > 1000


def test_evaluate_existing_report_needs_force(tree, capsys):
    (tree / "rep.md").write_text("# an older report\n")
    err = _refused(evaluate_main, _evaluate(tree, "--out", str(tree / "rep.md")), tree, capsys)
    assert err == f"error: {tree / 'rep.md'}: exists; pass --force to replace it"
    (tree / "rep.md").unlink()
    (tree / "rep.json").write_text("{}")  # the metrics file beside it counts too
    err = _refused(evaluate_main, _evaluate(tree, "--out", str(tree / "rep.md")), tree, capsys)
    assert err == f"error: {tree / 'rep.json'}: exists; pass --force to replace it"

    before = _hashes(tree)
    assert evaluate_main(_evaluate(tree, "--out", str(tree / "rep.md"), "--force")) == 0
    printed = capsys.readouterr().out
    after = _hashes(tree)
    assert set(after) == set(before) | {"rep.md"}
    assert {k for k in before if after[k] != before[k]} == {"rep.json"}
    assert (tree / "rep.md").read_text().strip() == printed.strip()
    assert json.loads((tree / "rep.json").read_text())["metrics"]["per_class"]["support"][3] == 3


def test_new_outputs_are_written_with_their_folders(tree, capsys):
    out = tree / "new" / "deeper"
    assert predict_main(_predict(tree, "--annotate", str(out / "a.png"), "--export", "onnx", str(out / "m.onnx"))) == 0
    assert evaluate_main(_evaluate(tree, "--out", str(out / "r.md"))) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "m.onnx", "r.json", "r.md"]
    assert oct((out / "r.md").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ------------------------------------------------------------------------------------------ unwritable paths


def _unwritable(tree: Path) -> list[tuple[Path, str]]:
    (tree / "a_dir.png").mkdir()
    (tree / "file").write_text("x")
    return [
        (tree / "a_dir.png", f"{tree / 'a_dir.png'}: is a directory; give a file name"),
        (tree / "file" / "x.png", f"{tree / 'file' / 'x.png'}: cannot write under {tree / 'file'}: not a directory"),
        (tree / "file" / "sub" / "x.png", f"{tree / 'file' / 'sub' / 'x.png'}: cannot write under {tree / 'file'}: not a directory"),
        (Path("/proc/fer_models_test_out.png"), "/proc/fer_models_test_out.png: cannot write in /proc ("),
        (Path("/proc/fer_models_test_dir/out.png"), "/proc/fer_models_test_dir/out.png: cannot write in /proc ("),
    ]


def test_unwritable_annotate_and_export_paths(tree, capsys):
    for path, message in _unwritable(tree):
        err = _refused(predict_main, _predict(tree, "--annotate", str(path)), tree, capsys)
        assert err.startswith(f"error: {message}"), err
        onnx = path.with_suffix(".onnx") if path.name != "a_dir.png" else path
        err = _refused(predict_main, _predict(tree, "--export", "onnx", str(onnx), "--force"), tree, capsys)
        assert err.startswith(f"error: {message.replace(str(path), str(onnx))}"), err


def test_unwritable_evaluate_out_paths(tree, capsys):
    for path, message in _unwritable(tree):
        md = path.with_suffix(".md") if path.name != "a_dir.png" else path
        err = _refused(evaluate_main, _evaluate(tree, "--out", str(md)), tree, capsys)
        assert err.startswith(f"error: {message.replace(str(path), str(md))}"), err


def test_device_file_is_never_replaced(tree, capsys):
    """With --force a rename would replace /dev/null itself (as root): only regular files are replaced."""
    err = _refused(predict_main, _predict(tree, "--export", "onnx", "/dev/null", "--force"), tree, capsys)
    assert err == "error: /dev/null: exists and is not a regular file"
    err = _refused(evaluate_main, _evaluate(tree, "--out", "/dev/null", "--force"), tree, capsys)
    assert err == "error: /dev/null: exists and is not a regular file"
    assert Path("/dev/null").is_char_device()


def test_annotate_suffix_cv2_cannot_write_is_refused_before_anything_runs(tree, capsys, monkeypatch):
    def no_load(*a, **k):
        raise AssertionError("the checkpoint must not be loaded")

    monkeypatch.setattr(predict_mod, "load_model", no_load)
    err = _refused(predict_main, _predict(tree, "--annotate", str(tree / "out.txt")), tree, capsys)
    assert err == f"error: --annotate {tree / 'out.txt'}: OpenCV cannot write '.txt' images; use .png or .jpg"
    err = _refused(predict_main, _predict(tree, "--annotate", str(tree / "out")), tree, capsys)
    assert err == f"error: --annotate {tree / 'out'}: no file extension; use .png or .jpg"


def test_unwritable_output_in_a_subprocess_has_no_traceback(tree):
    before = _hashes(tree)
    r = subprocess.run([sys.executable, "-m", "fer_models.predict", *_predict(tree, "--annotate", "/proc/x/y.png")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert _one_line(r.stderr).startswith("error: /proc/x/y.png: cannot write in /proc (")
    assert _hashes(tree) == before


# ------------------------------------------------------------------------------------------ numeric flags


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "error: --batch-size 0: must be >= 1"),
    (["--batch-size", "-5"], "error: --batch-size -5: must be >= 1"),
    (["--margin", "-3"], "error: --margin -3.0: must be in [0, 1]"),
    (["--margin", "nan"], "error: --margin nan: must be in [0, 1]"),
    (["--margin", "inf"], "error: --margin inf: must be in [0, 1]"),
    (["--batch-size", "abc"], "error: argument --batch-size: invalid int value: 'abc' (see python -m sweep.evaluate --help)"),
])
def test_evaluate_numeric_flags(tree, capsys, flags, message):
    assert _refused(evaluate_main, _evaluate(tree, *flags, "--out", str(tree / "r.md")), tree, capsys) == message


@pytest.mark.parametrize("flags, message", [
    (["--margin", "-3"], "error: --margin -3.0: must be in [0, 1]"),
    (["--margin", "nan"], "error: --margin nan: must be in [0, 1]"),
    (["--margin", "x"], "error: argument --margin: invalid float value: 'x' (see python -m fer_models.predict --help)"),
])
def test_predict_numeric_flags(tree, capsys, flags, message):
    assert _refused(predict_main, _predict(tree, *flags, "--annotate", str(tree / "o.png")), tree, capsys) == message


def test_batch_size_zero_in_a_subprocess(tree):
    r = subprocess.run([sys.executable, "-m", "sweep.evaluate", *_evaluate(tree, "--batch-size", "0")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "error: --batch-size 0: must be >= 1\n")


def test_summary_input_size_is_bounded(capsys):
    from fer_models.__main__ import main as models_main

    assert models_main(["summary", "baseline", "--input-size", "100000"]) == 2
    assert _one_line(capsys.readouterr().err) == "error: --input-size 100000: must be in 8..512"


# ------------------------------------------------------------------------------------------ checkpoint meta


def _edit_meta(tree: Path, edit, reseal: bool) -> None:
    path = tree / "ckpt" / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    if reseal:
        meta["meta_sha256"] = meta_digest(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("edit", [
    lambda m: m.__setitem__("overrides", "x"),
    lambda m: m["preprocess"].__setitem__("smoothing_sigma", 2.0),
    lambda m: m["norm"].__setitem__("std", 0.0),
])
def test_edited_meta_is_refused_by_predict_and_evaluate(tree, capsys, edit):
    _edit_meta(tree, edit, reseal=False)
    for main, argv in ((predict_main, _predict(tree)), (evaluate_main, _evaluate(tree))):
        err = _refused(main, argv, tree, capsys, rc=1)
        assert err.startswith(f"error: {tree / 'ckpt' / 'meta.json'}: sha256 ") and err.endswith("(edited, tampered or corrupt)")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.__setitem__("overrides", "x"), "'overrides' must be a mapping of ModelConfig fields, got 'x'"),
    (lambda m: m["norm"].__setitem__("std", 0.0), "'norm' needs a finite mean and a finite std > 0, got mean=0.5 std=0.0"),
    (lambda m: m["norm"].__setitem__("std", -1), "'norm' needs a finite mean and a finite std > 0"),
    (lambda m: m["norm"].__setitem__("mean", "abc"), "'norm' mean and std must be numbers"),
    (lambda m: m.__setitem__("norm", "Norm(mean=1.2.3, std=0.2)"), "'norm' mean and std must be numbers"),
    (lambda m: m["preprocess"].__setitem__("input_size", 1000), "bad preprocess config: PreprocessConfig.input_size must be an int in 8..512"),
    (lambda m: m["preprocess"].__setitem__("smoothing_sigma", 1e9), "preprocess.smoothing_sigma must be a number in 0..48"),
    (lambda m: m["preprocess"].__setitem__("standardize", "no"), "preprocess.standardize must be true or false"),
    (lambda m: m["overrides"].__setitem__("conv_widths", [8, 16, 200000]), "weights do not match architecture 'baseline'"),
])
def test_invalid_meta_values_are_refused_before_building(tree, capsys, monkeypatch, edit, message):
    """Consistent (re-hashed) but invalid values: one line naming the file, the model never built for real."""
    import fer_models.checkpoint as ck

    real = ck.build_model

    def build_on_meta_only(*a, **k):
        assert torch.empty(0).device.type == "meta", "the model must not be built for real"
        return real(*a, **k)

    monkeypatch.setattr(ck, "build_model", build_on_meta_only)
    _edit_meta(tree, edit, reseal=True)
    for main, argv in ((predict_main, _predict(tree)), (evaluate_main, _evaluate(tree))):
        err = _refused(main, argv, tree, capsys, rc=1)
        assert err.startswith("error: ") and str(tree / "ckpt") in err and message in err, err


# ------------------------------------------------------------------------------------------ unreadable images


def _bomb_png(path: Path, side: int = 40000) -> None:
    """A tiny PNG whose header claims side x side pixels (1.6e9: over Pillow's and OpenCV's limits)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_decompression_bomb_is_a_one_line_error(tree, capsys):
    _bomb_png(tree / "bomb.png")
    argv = [str(tree / "bomb.png"), "--checkpoint", str(tree / "ckpt"), "--no-detect"]
    err = _refused(predict_main, argv, tree, capsys, rc=1)
    assert err.startswith(f"error: {tree / 'bomb.png'}: cannot read image (Image size (1600000000 pixels) exceeds limit")


def test_image_just_over_the_pixel_limit_is_refused_not_decoded(tree, capsys, monkeypatch):
    """Between 1x and 2x the limit Pillow only warns and decodes; we refuse it like the larger ones."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 48 - 100)
    err = _refused(predict_main, _predict(tree), tree, capsys, rc=1)
    assert err.startswith(f"error: {tree / 'a.png'}: cannot read image (Image size (2304 pixels) exceeds limit of 2204 pixels")


def test_multi_image_predict_reports_unreadable_images_and_goes_on(tree, capsys):
    _bomb_png(tree / "bomb.png")
    (tree / "text.png").write_text("not an image")
    imgs = [str(tree / "a.png"), str(tree / "bomb.png"), str(tree / "text.png"), str(tree / "b.png")]
    before = _hashes(tree)
    assert predict_main([*imgs, "--checkpoint", str(tree / "ckpt"), "--no-detect", "--json",
                         "--annotate", str(tree / "ann.png")]) == 3
    cap = capsys.readouterr()
    errs = cap.err.splitlines()
    assert len(errs) == 2 and "Traceback" not in cap.err
    assert errs[0].startswith(f"error: {tree / 'bomb.png'}: cannot read image (Image size")
    assert errs[1].startswith(f"error: {tree / 'text.png'}: cannot read image (")
    doc = json.loads(cap.out)
    assert [im["image"] for im in doc["images"]] == imgs
    assert [len(im["faces"]) for im in doc["images"]] == [1, 0, 0, 1]
    assert "error" in doc["images"][1] and "error" in doc["images"][2] and "error" not in doc["images"][0]
    after = _hashes(tree)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"ann_1_a.png", "ann_4_b.png"}  # only the readable images are annotated

    # text output: one line per image, the unreadable ones marked
    assert predict_main([*imgs, "--checkpoint", str(tree / "ckpt"), "--no-detect"]) == 3
    out = capsys.readouterr().out
    assert f"{tree / 'bomb.png'}: unreadable (see the error above)" in out and f"{tree / 'b.png'}: 1 face" in out

    # nothing readable: an error (each image's line, then the verdict), nothing written
    before = _hashes(tree)
    assert predict_main([str(tree / "bomb.png"), str(tree / "text.png"), "--checkpoint", str(tree / "ckpt"), "--no-detect",
                         "--annotate", str(tree / "none.png")]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.splitlines()) == 3
    assert cap.err.splitlines()[-1] == "error: none of the 2 images could be read"
    assert _hashes(tree) == before


def test_evaluate_reports_unreadable_images_and_goes_on(tree, capsys):
    _bomb_png(tree / "data" / "happy" / "bomb.png")
    (tree / "data" / "sad" / "broken.png").write_bytes(b"\x89PNG broken")
    assert evaluate_main(_evaluate(tree, "--out", str(tree / "r.md"))) == 0
    cap = capsys.readouterr()
    errs = cap.err.splitlines()
    assert len(errs) == 2 and all(e.startswith("error: ") and e.endswith("(left out)") for e in errs)
    assert "bomb.png: cannot read image (Image size (1600000000 pixels)" in errs[0] and "broken.png" in errs[1]
    assert "6 images evaluated" in cap.out and "- 2 images could not be read, left out: " in cap.out
    assert len(json.loads((tree / "r.json").read_text())["unreadable"]) == 2

    # no readable image at all: an error, nothing written
    bad = tree / "bad"
    (bad / "happy").mkdir(parents=True)
    _bomb_png(bad / "happy" / "bomb.png")
    before = _hashes(tree)
    assert evaluate_main(["--checkpoint", str(tree / "ckpt"), "--data", str(bad), "--out", str(tree / "r2.md")]) == 1
    cap = capsys.readouterr()
    assert cap.err.splitlines()[-1] == f"error: {bad}: no images left to evaluate (all classes skipped, no faces found or 1 unreadable)"
    assert _hashes(tree) == before
