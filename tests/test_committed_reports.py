"""The committed real-data reports rebuild from the raw trial files committed beside them, so the numbers in
reports/ (and the README's, taken from them) are what the report code computes from the runs: every text file
byte for byte, every figure pixel for pixel but for a few pixels (`FIGURE_PIXELS`)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sweep.claims import claims_markdown
from sweep.report import build_report

# Figures may differ in a few pixels between CPU kinds: Optuna's contour plot interpolates in floating point, whose
# last bits differ between hosts (presumably numpy's AVX2 and AVX-512 kernels). search-flat-fer2013's contour, drawn
# on an avx512_bf16 host, differs in 7e-6 of its pixels (a few, by at most 8 levels) when drawn on an AVX2-only one;
# a changed number, label or marker changes far more.
FIGURE_PIXELS = 2e-5  # the largest fraction of a figure's pixels that may differ

REPORTS = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "reports").glob("*/report.md"))


@pytest.mark.parametrize("committed", REPORTS, ids=[p.name for p in REPORTS])
def test_committed_report_rebuilds(committed: Path, tmp_path: Path):
    copy = tmp_path / committed.name  # the same folder name: the report names its experiment folder
    shutil.copytree(committed, copy)
    assert build_report(copy) == copy / "report.md"
    for f in sorted(committed.rglob("*")):
        if f.is_file():
            rel = f.relative_to(committed)
            why = f"{committed.name}/{rel} differs after a rebuild"
            if f.suffix == ".png":
                assert differing_pixels(copy / rel, f) <= FIGURE_PIXELS, why
            else:
                assert (copy / rel).read_bytes() == f.read_bytes(), why
    built = {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()}
    assert built == {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}  # nothing new


def differing_pixels(a: Path, b: Path) -> float:
    """The fraction of pixels in which two PNGs differ (1.0 when their sizes differ)."""
    x, y = (np.asarray(Image.open(p).convert("RGBA")) for p in (a, b))
    return 1.0 if x.shape != y.shape else float((x != y).any(-1).mean())


def test_differing_pixels_counts_changed_pixels(tmp_path: Path):
    img = np.zeros((100, 100, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    img[0, :2] = 1  # two pixels, one level
    Image.fromarray(img).save(tmp_path / "b.png")
    Image.fromarray(img[:99]).save(tmp_path / "c.png")
    assert differing_pixels(tmp_path / "a.png", tmp_path / "a.png") == 0
    assert differing_pixels(tmp_path / "a.png", tmp_path / "b.png") == pytest.approx(2e-4)
    assert differing_pixels(tmp_path / "a.png", tmp_path / "c.png") == 1.0


def test_every_committed_report_is_found():
    assert {p.name for p in REPORTS} >= {"ablation-flat-fer2013", "components-flat-fer2013", "optimized-flat-fer2013"}


def test_committed_claims_table_rebuilds(tmp_path: Path):
    """reports/CLAIMS.md and CLAIMS.png are what `python -m sweep.claims reports/ --out reports/CLAIMS.md` writes
    from the committed runs: a report added or rebuilt without them fails here."""
    reports = REPORTS[0].parent
    assert claims_markdown([reports], reports, tmp_path / "CLAIMS.png") == (reports / "CLAIMS.md").read_text()
    assert differing_pixels(tmp_path / "CLAIMS.png", reports / "CLAIMS.png") <= FIGURE_PIXELS
