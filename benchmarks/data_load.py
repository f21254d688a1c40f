"""Benchmark FER-2013 loading: vectorised parse, cached load, and a per-row Python parse baseline.

    python benchmarks/data_load.py [PATH]   # default ../shared/datasets/fer2013/icml_face_data.csv.gz

The last line is the speed-up of the vectorised parse over a per-row ``str.split`` parse measured in
the same run. Uses a fresh temporary cache, never ~/.cache.
"""

from __future__ import annotations

import gzip
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fer_data import load_fer2013

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "fer2013" / "icml_face_data.csv.gz"


def per_row_parse(path: Path) -> np.ndarray:
    """The common approach: pandas reads the CSV, then one Python split per row."""
    raw = path.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    df = pd.read_csv(io.BytesIO(data), skipinitialspace=True)
    return np.stack([np.array(p.split(), dtype=np.uint8) for p in df["pixels"]]).reshape(-1, 48, 48)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT).resolve()
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        a = load_fer2013(path, cache_dir=cache)  # cold: parse + validate + write cache
        parse_s = time.perf_counter() - t
        t = time.perf_counter()
        b = load_fer2013(path, cache_dir=cache)
        cached_s = time.perf_counter() - t
    t = time.perf_counter()
    ref = per_row_parse(path)
    per_row_s = time.perf_counter() - t
    assert np.array_equal(a.images, ref) and np.array_equal(a.images, b.images)
    print(f"file: {path} ({len(a)} rows, sha256 {a.sha256[:12]}...)")
    print(f"vectorised parse + validation: {parse_s:.2f} s")
    print(f"cached load: {cached_s:.2f} s")
    print(f"per-row Python parse: {per_row_s:.2f} s")
    print(f"speedup vs per-row parse: {per_row_s / parse_s:.1f}x")


if __name__ == "__main__":
    main()
