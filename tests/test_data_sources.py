"""fer_data readers: every layout gives the same arrays, every bad input names its row/path, the
cache is keyed by content, the CLI exits 0/2, and the real file has the published counts."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_data import CLASS_NAMES, DataError, load_dataset, load_fer2013, make_synthetic
from fer_data.classes import USAGES

ROOT = Path(__file__).resolve().parents[1]


def test_class_order_is_pinned():
    # The CSV's order, not alphabetical (alphabetical swaps Sad/Surprise/Neutral).
    assert CLASS_NAMES == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")


@pytest.fixture(scope="module")
def small():
    """A 210-row synthetic dataset, ordered by usage (as the image-folder reader orders rows)."""
    return make_synthetic(n_train=84, n_val=63, n_test=63, seed=3)


def _rows(a):
    return [(int(y), u, " ".join(map(str, img.ravel()))) for img, y, u in zip(a.images, a.labels, a.usage)]


def write_icml(path: Path, a, header="emotion, Usage, pixels") -> Path:
    text = header + "\n" + "".join(f"{y},{u},{p}\n" for y, u, p in _rows(a))
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def write_fer2013(path: Path, a) -> Path:
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{y},{p},{u}\n" for y, u, p in _rows(a)))
    return path


def write_folder(root: Path, a, ext=".png") -> Path:
    for i, (img, y, u) in enumerate(zip(a.images, a.labels, a.usage)):
        d = root / ("train" if u == "Training" else "test") / CLASS_NAMES[y].lower()
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"{u}_{i}{ext}"), img)
    return root


def test_every_layout_gives_identical_arrays(small, tmp_path):
    paths = {
        "icml": write_icml(tmp_path / "icml_face_data.csv", small),
        "icml.gz": write_icml(tmp_path / "icml_face_data.csv.gz", small),
        "fer2013": write_fer2013(tmp_path / "fer2013.csv", small),
        "folder": write_folder(tmp_path / "folder", small),
    }
    layouts = {}
    for name, p in paths.items():
        a = load_fer2013(p, cache_dir=tmp_path / "cache")
        layouts[name] = a.layout
        assert a.images.dtype == np.uint8 and a.images.shape == (210, 48, 48), name
        assert a.labels.dtype == np.int64, name
        np.testing.assert_array_equal(a.images, small.images, err_msg=name)
        np.testing.assert_array_equal(a.labels, small.labels, err_msg=name)
        np.testing.assert_array_equal(a.usage, small.usage, err_msg=name)
    assert layouts == {"icml": "icml-csv", "icml.gz": "icml-csv+gzip", "fer2013": "fer2013-csv",
                       "folder": "image-folder"}


def test_jpeg_folder_labels_from_folder_names_not_alphabetical(small, tmp_path):
    a = load_fer2013(write_folder(tmp_path / "jpg", small, ".jpg"), cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(a.labels, small.labels)  # e.g. "neutral/" -> 6, not alphabetical 4
    assert np.abs(a.images.astype(int) - small.images).mean() < 20  # JPEG is lossy, not wrong


# ----------------------------------------------------------------------------- bad CSV input

def _corrupt(small, tmp_path, row: int, make):
    """Write the icml CSV with data row ``row`` (1-based) replaced by ``make(label, usage, pixels)``."""
    lines = [f"{y},{u},{p}" for y, u, p in _rows(small)]
    y, u, p = _rows(small)[row - 1]
    lines[row - 1] = make(y, u, p)
    path = tmp_path / "bad.csv"
    path.write_text("emotion, Usage, pixels\n" + "\n".join(lines) + "\n")
    return path


BAD_ROWS = {
    "pixel count": (lambda y, u, p: f"{y},{u},{p} 7", "has 2305 pixel values, expected 2304"),
    "too few pixels": (lambda y, u, p: f"{y},{u},{p.rsplit(' ', 1)[0]}", "has 2303 pixel values"),
    "empty pixels": (lambda y, u, p: f"{y},{u},", "has 0 pixel values"),
    "non-numeric": (lambda y, u, p: f"{y},{u},x{p}", "is not an integer 0-255"),
    "negative": (lambda y, u, p: f"{y},{u},-1 {p.split(' ', 1)[1]}", "'-1' is not an integer 0-255"),
    "above 255": (lambda y, u, p: f"{y},{u},256 {p.split(' ', 1)[1]}", "pixel value 256 is outside 0-255"),
    "four digits": (lambda y, u, p: f"{y},{u},1000 {p.split(' ', 1)[1]}", "'1000' is not an integer 0-255"),
    "label 7": (lambda y, u, p: f"7,{u},{p}", "emotion label '7' is not an integer 0-6"),
    "label text": (lambda y, u, p: f"happy,{u},{p}", "emotion label 'happy'"),
    "usage": (lambda y, u, p: f"{y},Validation,{p}", "unknown Usage 'Validation'"),
    "extra field": (lambda y, u, p: f"{y},{u},{p},extra", "has 4 comma-separated fields, expected 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
@pytest.mark.parametrize("row", [1, 137])
def test_bad_row_names_file_and_row(small, tmp_path, case, row):
    make, what = BAD_ROWS[case]
    path = _corrupt(small, tmp_path, row, make)
    with pytest.raises(DataError) as e:
        load_fer2013(path, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert msg.startswith(f"{path}: row {row} (line {row + 1}): "), msg
    assert what in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("header, what", [
    ("emotion,pixels", "missing column(s) Usage"),
    ("emotion,Usage,pixels,id", "unknown column(s) 'id'"),
    ("label,Usage,pixels", "missing column(s) emotion; unknown column(s) 'label'"),
])
def test_bad_header(small, tmp_path, header, what):
    path = write_icml(tmp_path / "h.csv", small, header=header)
    with pytest.raises(DataError, match="line 1") as e:
        load_fer2013(path, cache_dir=tmp_path / "c")
    assert str(e.value).startswith(str(path)) and what in str(e.value)


def test_missing_empty_header_only_and_bad_gzip(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load_fer2013(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: empty file"):
        load_fer2013(tmp_path / "empty.csv", cache_dir=tmp_path / "c")
    (tmp_path / "header.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError, match="no data rows"):
        load_fer2013(tmp_path / "header.csv", cache_dir=tmp_path / "c")
    (tmp_path / "trunc.csv.gz").write_bytes(gzip.compress(b"emotion,pixels,Usage\n0,1 2,Training\n")[:-12])
    with pytest.raises(DataError, match="not a valid gzip file"):
        load_fer2013(tmp_path / "trunc.csv.gz", cache_dir=tmp_path / "c")


# -------------------------------------------------------------------------- bad image folder

def test_folder_errors_name_the_image(small, tmp_path):
    root = write_folder(tmp_path / "f", small)
    img = next((root / "test" / "happy").iterdir())
    img.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"{img}: unreadable image"):
        load_fer2013(root, cache_dir=tmp_path / "c")

    root = write_folder(tmp_path / "g", small)
    img = next((root / "train" / "sad").iterdir())
    cv2.imwrite(str(img), np.zeros((64, 60), np.uint8))
    with pytest.raises(DataError, match=rf"{img}: image is 60x64, expected 48x48"):
        load_fer2013(root, cache_dir=tmp_path / "c")
    a = load_fer2013(root, resize=True, cache_dir=tmp_path / "c")  # only when asked
    assert a.images.shape == (210, 48, 48)

    (root / "train" / "contempt").mkdir()
    with pytest.raises(DataError, match="unknown class folder 'contempt'"):
        load_fer2013(root, cache_dir=tmp_path / "c")
    (root / "train" / "contempt").rmdir()
    bad = root / "train" / "fear" / "Validation_1.png"
    cv2.imwrite(str(bad), np.zeros((48, 48), np.uint8))
    with pytest.raises(DataError, match=f"{bad}: file name must start with Training_"):
        load_fer2013(root, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="not a FER-2013 image folder"):
        load_fer2013(tmp_path / "f" / "train" / "happy", cache_dir=tmp_path / "c")


# ------------------------------------------------------------------------------------ cache

def test_cache_hit_and_invalidation(small, tmp_path):
    cache = tmp_path / "cache"
    path = write_icml(tmp_path / "d.csv", small)
    a = load_fer2013(path, cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert [f.name.split("-")[0] for f in files] == [a.sha256]
    b = load_fer2013(path, cache_dir=cache)  # served from the cache
    np.testing.assert_array_equal(a.images, b.images)
    # Change one pixel of one row: new hash, new arrays, never the stale cache.
    changed = make_synthetic(n_train=84, n_val=63, n_test=63, seed=3)
    changed.images[5, 0, 0] ^= 0xFF
    write_icml(path, changed)
    c = load_fer2013(path, cache_dir=cache)
    assert c.sha256 != a.sha256
    assert c.images[5, 0, 0] == changed.images[5, 0, 0] != a.images[5, 0, 0]
    assert len(list(cache.glob("*.npz"))) == 2
    # Folder: editing one image changes the folder hash too.
    root = write_folder(tmp_path / "f", small)
    f1 = load_fer2013(root, cache_dir=cache)
    img = sorted((root / "train" / "angry").iterdir())[0]
    cv2.imwrite(str(img), np.full((48, 48), 9, np.uint8))
    f2 = load_fer2013(root, cache_dir=cache)
    assert f2.sha256 != f1.sha256 and (f2.images == 9).all(axis=(1, 2)).sum() >= 1


def test_cache_dir_env(small, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "envcache"))
    load_fer2013(write_icml(tmp_path / "d.csv", small))
    assert len(list((tmp_path / "envcache").glob("*.npz"))) == 1


def test_synthetic_only_by_name(tmp_path):
    a = load_dataset("synthetic")
    assert a.images.shape[1:] == (48, 48) and set(a.labels) == set(range(7)) and set(a.usage) == set(USAGES)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "synthetic.csv"))  # a missing file never falls back to synthetic


# -------------------------------------------------------------------------------------- CLI

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fer_data", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_cli_inspect_valid_and_invalid(small, tmp_path):
    path = write_icml(tmp_path / "ok.csv", small)
    r = _cli("inspect", str(path), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    assert small.sha256 != "" and "sha256: " in r.stdout and "Disgust" in r.stdout
    assert "within train:" in r.stdout and "test images with a copy in train:" in r.stdout
    bad = _corrupt(small, tmp_path, 9, lambda y, u, p: f"{y},{u},{p} 1")
    r = _cli("inspect", str(bad), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {bad}: row 9 (line 10): has 2305 pixel values, expected 2304 (48x48)"
    assert "Traceback" not in r.stderr and r.stdout == ""


# -------------------------------------------------------------------------------- real file

README_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}


def test_real_file_counts(fer_arrays):
    a = fer_arrays
    assert a.images.shape == (35887, 48, 48) and a.layout == "icml-csv+gzip"
    assert a.sha256 == "0777afd2d9163850c76c41cfe9853b2afc87e81da5cd029790cc7da976088f8d"
    assert {u: int((a.usage == u).sum()) for u in USAGES} == {"Training": 28709, "PublicTest": 3589,
                                                              "PrivateTest": 3589}
    for u, counts in README_COUNTS.items():
        assert np.bincount(a.labels[a.usage == u], minlength=7).tolist() == counts, u
    # First row of the file: "3,Training,234 231 160 122 ..."
    assert a.labels[0] == 3 and a.images[0, 0, :4].tolist() == [234, 231, 160, 122]


def test_real_file_cached_load_is_fast(fer_csv, fer_arrays, fer_cache_dir):
    import time

    # fer_arrays filled the cache: this is a sha256 + np.load. CPU time, not wall time, so that the
    # check holds on a machine shared with other jobs (wall ~0.2 s when idle).
    t = time.process_time()
    b = load_fer2013(fer_csv, cache_dir=fer_cache_dir)
    assert time.process_time() - t < 1.0
    np.testing.assert_array_equal(b.images, fer_arrays.images)
