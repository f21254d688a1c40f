"""Read FER-2013 in its three real layouts, validate every value, and cache the parsed arrays.

Layouts (plain or gzipped, detected from content, not from the file name):

* Kaggle ``icml_face_data.csv``: header ``emotion, Usage, pixels`` (leading spaces kept as in the
  Kaggle file);
* Kaggle ``fer2013.csv``: header ``emotion,pixels,Usage``;
* the image-folder release: ``<root>/train/<class>/Training_<id>.jpg`` and
  ``<root>/test/<class>/{PublicTest,PrivateTest}_<id>.jpg`` with lower-case class folders. The split
  comes from the file-name prefix, the label from the folder name mapped onto ``CLASS_NAMES``
  (never alphabetical order). Rows are ordered by split, then file id.

Speed: pyarrow reads the three CSV columns as strings (multi-threaded), then the 2304 space-separated
pixel values of all rows are parsed at once with numpy on pyarrow's contiguous string buffer (no
Python loop over rows, no join). The whole real file takes ~3-4 s here; a per-row Python split ~9 s
(``benchmarks/data_load.py`` measures both). Parsed arrays are cached as ``<sha256>.npz`` under
``cache_dir`` (default ``$FER_CACHE_DIR`` or ``~/.cache/fer_ablation``), keyed by the content hash,
so a second load costs one sha256 (~0.1 s) plus an ``np.load``, and a changed file is never stale.

Every bad value raises :class:`fer_data.errors.DataError` naming the file and the 1-based data row
(``row <n> (line <n+1>)``) or the image path. Nothing is dropped silently.

    >>> from fer_data import load_fer2013
    >>> arrays = load_fer2013("../shared/datasets/fer2013/icml_face_data.csv.gz")
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .classes import FOLDER_TO_LABEL, IMAGE_SIZE, NUM_CLASSES, NUM_PIXELS, USAGES
from .errors import DataError, row_error

CACHE_VERSION = 1  # bump when the parsed representation changes
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm")
_FOLDER_FILE = re.compile(r"^(Training|PublicTest|PrivateTest)_(\d+)")
_CSV_COLUMNS = ("emotion", "Usage", "pixels")


@dataclass(frozen=True)
class FerArrays:
    """FER-2013 (or synthetic) faces with their labels and official usage."""

    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N], 0..6 in CLASS_NAMES order
    usage: np.ndarray  # <U11 [N]: "Training" / "PublicTest" / "PrivateTest"
    sha256: str  # content hash of the source file (or folder / synthetic parameters)
    source: str  # where the data came from (path or "synthetic(...)")
    layout: str = ""  # "icml-csv", "fer2013-csv", "image-folder", "synthetic" (+ "+gzip")

    def __len__(self) -> int:
        return len(self.labels)


def default_cache_dir() -> Path:
    """``$FER_CACHE_DIR`` if set, else ``~/.cache/fer_ablation``."""
    env = os.environ.get("FER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fer_ablation"


def load_fer2013(path: str | os.PathLike, *, resize: bool = False, cache_dir: str | os.PathLike | None = None,
                 use_cache: bool = True) -> FerArrays:
    """Load FER-2013 from a CSV (either Kaggle layout, plain or .gz) or an image-folder root.

    Args:
        path: the CSV file or the folder holding ``train/`` and ``test/``.
        resize: image-folder only: resize images that are not 48x48 (INTER_AREA) instead of failing.
        cache_dir: where parsed arrays are cached (default :func:`default_cache_dir`).
        use_cache: set False to always parse (the benchmark does).
    Raises:
        DataError: missing/empty/malformed input, naming the file and the row or image path.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_dir():
        files = _folder_files(p)
        sha = _folder_sha256(p, files)
        kind = f"folder{'-resize' if resize else ''}"
        loader = lambda: _parse_folder(p, files, resize=resize, sha=sha)  # noqa: E731
    else:
        raw = p.read_bytes()
        if not raw or (len(raw) < 4096 and not raw.strip()):
            raise DataError(f"{p}: empty file")
        sha = hashlib.sha256(raw).hexdigest()
        kind = "csv"
        loader = lambda: _parse_csv_bytes(p, raw, sha)  # noqa: E731
    cache_file = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / f"{sha}-{kind}-v{CACHE_VERSION}.npz"
    if use_cache:
        cached = _read_cache(cache_file, p, sha)
        if cached is not None:
            return cached
    arrays = loader()
    if use_cache:
        _write_cache(cache_file, arrays)
    return arrays


# ----------------------------------------------------------------------------------------- CSV


def _decompress(path: Path, raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":  # gzip magic: detect by content, not by the ".gz" suffix
        return raw
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a valid gzip file ({e})") from None
    if len(data) < 4096 and not data.strip():
        raise DataError(f"{path}: empty file (after gunzip)")
    return data


def _parse_csv_bytes(path: Path, raw: bytes, sha: str) -> FerArrays:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    data = _decompress(path, raw)
    gz = data is not raw
    header_end = data.find(b"\n")
    header = data[: header_end if header_end >= 0 else len(data)].decode("utf-8", "replace").strip("\r\n\ufeff")
    names = [c.strip() for c in header.split(",")]
    missing = [c for c in _CSV_COLUMNS if c not in names]
    unknown = [c for c in names if c not in _CSV_COLUMNS]
    if missing or unknown or len(names) != len(set(names)):
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)}")
        if not what:
            what.append("duplicate column names")
        raise DataError(f"{path}: line 1 (header {header[:80]!r}): {'; '.join(what)}; expected the columns "
                        f"emotion, Usage, pixels (in any order)")
    layout = "icml-csv" if names == ["emotion", "Usage", "pixels"] else "fer2013-csv"
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        raise _locate_csv_error(path, data, len(names), e) from None
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: no data rows after the header")

    labels = _parse_labels(path, table.column("emotion").to_pandas())
    usage = table.column("Usage").to_numpy(zero_copy_only=False).astype("U")
    usage = np.char.strip(usage)
    bad = ~np.isin(usage, USAGES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise row_error(path, i + 1, f"unknown Usage {str(usage[i])!r}; expected one of {', '.join(USAGES)}")
    images = parse_pixel_column(path, table.column("pixels").combine_chunks())
    return FerArrays(images, labels, usage.astype("<U11"), sha, str(path), layout + ("+gzip" if gz else ""))


def _parse_labels(path: Path, s: pd.Series) -> np.ndarray:
    s = s.astype(str).str.strip()
    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(num) & (num == np.round(num)) & (num >= 0) & (num < NUM_CLASSES) & s.str.fullmatch(r"\d+").to_numpy(bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise row_error(path, i + 1, f"emotion label {s.iloc[i]!r} is not an integer 0-{NUM_CLASSES - 1}")
    return num.astype(np.int64)


def parse_pixel_column(path: object, col, *, chunk_rows: int = 128) -> np.ndarray:
    """Parse a pyarrow string array of space-separated pixel rows into uint8 [N, 48, 48].

    Works on pyarrow's contiguous value buffer, ``chunk_rows`` rows (~1 MB) at a time so that
    numpy's temporaries stay in cache: a token is a run of digits, its value is built from its last
    three digits by gathering at the token ends. Validation (a byte that is neither digit nor
    whitespace, more than 3 digits, value > 255, count != 2304 per row) is vectorised too; only the
    first offending row is then located to name it in the error.
    """
    _, off_buf, data_buf = col.buffers()
    n = len(col)
    off_dtype = np.int64 if str(col.type) in ("large_string", "large_utf8") else np.int32
    off = np.frombuffer(off_buf, dtype=off_dtype)[col.offset: col.offset + n + 1].astype(np.int64)
    b = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    out = np.empty((n, NUM_PIXELS), np.uint8)
    for r0 in range(0, n, chunk_rows):
        r1 = min(n, r0 + chunk_rows)
        lo, hi = int(off[r0]), int(off[r1])
        err = _parse_chunk(b[lo:hi], off[r0: r1 + 1] - lo, out[r0:r1])
        if err is not None:
            local_row, what = err
            raise row_error(path, r0 + local_row + 1, what)
    return out.reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def _parse_chunk(b: np.ndarray, off: np.ndarray, out: np.ndarray) -> tuple[int, str] | None:
    """Parse rows ``b[off[i]:off[i+1]]`` into ``out[i]``; return (row, message) for the first bad row."""
    n = len(off) - 1

    def row_of(pos: int) -> int:  # 0-based row in this chunk holding byte `pos`
        return int(np.searchsorted(off, pos, side="right")) - 1

    def token_at(pos: int) -> str:  # the whitespace-delimited token around byte `pos`, within its row
        r = row_of(pos)
        s, e = pos, pos
        while s > off[r] and b[s - 1] > 32:
            s -= 1
        while e < off[r + 1] and b[e] > 32:
            e += 1
        return bytes(b[s:e]).decode("utf-8", "replace")[:20]

    d = b - np.uint8(48)  # digit value; whitespace and other bytes wrap to >= 10
    digit = d < 10
    bad = ~digit & (b > 32)  # every byte must be a digit or whitespace: catches '-', '.', 'x', ...
    if bad.any():
        pos = int(np.argmax(bad))
        return row_of(pos), f"pixel value {token_at(pos)!r} is not an integer 0-255"
    # Token boundaries; a row boundary always ends a token (rows are concatenated in the buffer).
    cut = np.ones(len(b) + 1, bool)  # cut[i]: no token continues from byte i-1 into byte i
    cut[1:-1] = ~(digit[:-1] & digit[1:])
    cut[off] = True
    starts = np.flatnonzero(digit & cut[:-1])
    ends = np.flatnonzero(digit & cut[1:])  # last digit of each token
    per_row = np.diff(np.searchsorted(starts, off))
    wrong = per_row != NUM_PIXELS
    if wrong.any():
        i = int(np.argmax(wrong))
        return i, f"has {per_row[i]} pixel values, expected {NUM_PIXELS} (48x48)"
    length = ends - starts + 1
    if length.max(initial=1) > 3:  # >= 1000, or zero-padded: both malformed
        k = int(np.argmax(length > 3))
        return row_of(int(starts[k])), f"pixel value {token_at(int(starts[k]))!r} is not an integer 0-255"
    v = d[ends].astype(np.uint16)
    v += np.uint16(10) * d[ends - 1] * (length >= 2)
    v += np.uint16(100) * d[ends - 2] * (length >= 3)
    if v.max(initial=0) > 255:
        k = int(np.argmax(v > 255))
        return k // NUM_PIXELS, f"pixel value {int(v[k])} is outside 0-255"
    out[:] = v.reshape(n, NUM_PIXELS)
    return None


def _locate_csv_error(path: Path, data: bytes, n_fields: int, err: Exception) -> DataError:
    """pyarrow rejected the file (e.g. a row with too many fields): find the row with Python's csv."""
    import csv

    text = io.StringIO(data.decode("utf-8", "replace"), newline="")
    reader = csv.reader(text)
    next(reader, None)
    for i, fields in enumerate(reader, start=1):
        if len(fields) != n_fields:
            return row_error(path, i, f"has {len(fields)} comma-separated fields, expected {n_fields}")
    first = str(err).splitlines()[0][:200]
    return DataError(f"{path}: unreadable CSV ({first})")


# --------------------------------------------------------------------------------- image folder


def _folder_files(root: Path) -> list[Path]:
    """All image files under train/ and test/, sorted by relative path; validates the layout."""
    subdirs = [d for d in ("train", "test") if (root / d).is_dir()]
    if not subdirs:
        raise DataError(f"{root}: not a FER-2013 image folder (expected train/ and test/ sub-folders)")
    files: list[Path] = []
    for split in subdirs:
        for cls_dir in sorted((root / split).iterdir()):
            if cls_dir.name.startswith("."):
                continue
            if not cls_dir.is_dir() or cls_dir.name not in FOLDER_TO_LABEL:
                raise DataError(f"{cls_dir}: unknown class folder {cls_dir.name!r}; expected one of "
                                f"{', '.join(FOLDER_TO_LABEL)}")
            for f in sorted(cls_dir.iterdir()):
                if f.name.startswith("."):
                    continue
                if f.suffix.lower() not in IMAGE_EXTENSIONS or not f.is_file():
                    raise DataError(f"{f}: not an image file (expected {', '.join(IMAGE_EXTENSIONS)})")
                if not _FOLDER_FILE.match(f.name):
                    raise DataError(f"{f}: file name must start with Training_, PublicTest_ or PrivateTest_ "
                                    f"followed by an id (the split is read from it)")
                files.append(f)
    if not files:
        raise DataError(f"{root}: empty image folder (no images under train/ or test/)")
    return files


def _folder_sha256(root: Path, files: list[Path]) -> str:
    # Hash of sorted relative paths + contents: renaming, moving or editing any image changes it.
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.relative_to(root).as_posix()):
        rel = f.relative_to(root).as_posix().encode()
        content = f.read_bytes()
        h.update(len(rel).to_bytes(8, "little") + rel + len(content).to_bytes(8, "little"))
        h.update(content)
    return h.hexdigest()


def _parse_folder(root: Path, files: list[Path], *, resize: bool, sha: str) -> FerArrays:
    from concurrent.futures import ThreadPoolExecutor

    def key(f: Path):
        usage, ident = _FOLDER_FILE.match(f.name).groups()
        return USAGES.index(usage), int(ident), f.name, f.parent.name

    files = sorted(files, key=key)

    def read(f: Path) -> np.ndarray:
        buf = np.frombuffer(f.read_bytes(), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
        if img is None:
            raise DataError(f"{f}: unreadable image")
        if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
            if not resize:
                raise DataError(f"{f}: image is {img.shape[1]}x{img.shape[0]}, expected 48x48 "
                                f"(pass resize=True / --resize to resize it)")
            img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        return img

    with ThreadPoolExecutor(max_workers=4) as pool:  # cv2 releases the GIL while decoding
        images = np.stack(list(pool.map(read, files)))
    labels = np.array([FOLDER_TO_LABEL[f.parent.name] for f in files], np.int64)
    usage = np.array([_FOLDER_FILE.match(f.name).group(1) for f in files], "<U11")
    return FerArrays(images, labels, usage, sha, str(root), "image-folder")


# ---------------------------------------------------------------------------------------- cache


def _read_cache(cache_file: Path, path: Path, sha: str) -> FerArrays | None:
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            if str(z["sha256"]) != sha:
                return None
            return FerArrays(z["images"], z["labels"], z["usage"], sha, str(path), str(z["layout"]))
    except Exception:  # a truncated or foreign cache file is simply rebuilt
        return None


def _write_cache(cache_file: Path, a: FerArrays) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file then rename: a concurrent reader never sees a half-written cache.
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=a.images, labels=a.labels, usage=a.usage, sha256=np.str_(a.sha256),
                     layout=np.str_(a.layout))
        os.replace(tmp, cache_file)
    except OSError as e:  # a read-only home must not make loading fail
        import warnings

        warnings.warn(f"fer_data: could not write cache {cache_file}: {e}", stacklevel=3)
