"""Command line: ``python -m fer_data inspect PATH [--resize] [--cache-dir DIR]``.

Validates a FER-2013 dataset (any layout, or ``synthetic``) and prints rows per split and class, the
exact duplicate images within and across splits, and the content sha256. Exit 0 when valid; exit 2
with a one-line ``error: ...`` (no traceback) when not.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .classes import CLASS_NAMES, NUM_CLASSES, USAGE_TO_SPLIT, USAGES
from .errors import DataError


def _table(arrays) -> str:
    head = ["split", *CLASS_NAMES, "total"]
    rows = []
    for usage in USAGES:
        y = arrays.labels[arrays.usage == usage]
        c = np.bincount(y, minlength=NUM_CLASSES)
        rows.append([f"{USAGE_TO_SPLIT[usage]} ({usage})", *map(str, c), str(len(y))])
    c = np.bincount(arrays.labels, minlength=NUM_CLASSES)
    rows.append(["total", *map(str, c), str(len(arrays.labels))])
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(s.ljust(w[0]) if i == 0 else s.rjust(w[i]) for i, s in enumerate(r))  # noqa: E731
    return "\n".join([fmt(head), *map(fmt, rows)])


def duplicate_report(arrays) -> dict:
    """Exact duplicate images: redundant copies within each split, and copies across split pairs."""
    from .splits import image_digests

    dig = {USAGE_TO_SPLIT[u]: image_digests(arrays.images[arrays.usage == u]) for u in USAGES}
    within = {k: int(len(d) - len(np.unique(d))) for k, d in dig.items()}
    across = {f"{b} images with a copy in {a}": int(np.isin(dig[b], dig[a]).sum())
              for a, b in (("train", "val"), ("train", "test"), ("val", "test"))}
    return {"within": within, "across": across}


def inspect(path: str, *, resize: bool = False, cache_dir: str | None = None) -> str:
    from . import load_dataset

    a = load_dataset(path, resize=resize, cache_dir=cache_dir)
    dup = duplicate_report(a)
    lines = [f"source: {a.source}", f"layout: {a.layout}", f"sha256: {a.sha256}", f"rows:   {len(a)}", "",
             _table(a), "", "exact duplicate images (byte-identical 48x48):"]
    lines += [f"  within {k}: {v} redundant copies" for k, v in dup["within"].items()]
    lines += [f"  {k}: {v}" for k, v in dup["across"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer_data", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inspect", help="validate a dataset and print its counts, duplicates and sha256")
    p.add_argument("path", help="FER-2013 CSV (.csv or .csv.gz, either Kaggle layout), image-folder root, "
                                "or 'synthetic'")
    p.add_argument("--resize", action="store_true", help="resize images that are not 48x48 instead of failing")
    p.add_argument("--cache-dir", default=None, help="parsed-array cache (default $FER_CACHE_DIR or "
                                                     "~/.cache/fer_ablation)")
    args = ap.parse_args(argv)
    try:
        print(inspect(args.path, resize=args.resize, cache_dir=args.cache_dir))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
