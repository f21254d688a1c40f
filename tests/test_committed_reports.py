"""The committed real-data reports rebuild byte for byte from the raw trial files committed beside them, so
the numbers in reports/ (and the README's, taken from them) are what the report code computes from the runs."""
import shutil
from pathlib import Path

import pytest

from sweep.report import build_report

REPORTS = sorted(p.parent for p in (Path(__file__).resolve().parents[1] / "reports").glob("*/report.md"))


@pytest.mark.parametrize("committed", REPORTS, ids=[p.name for p in REPORTS])
def test_committed_report_rebuilds_byte_identically(committed: Path, tmp_path: Path):
    copy = tmp_path / committed.name  # the same folder name: the report names its experiment folder
    shutil.copytree(committed, copy)
    build_report(copy)
    for f in sorted(committed.rglob("*")):
        if f.is_file():
            rel = f.relative_to(committed)
            assert (copy / rel).read_bytes() == f.read_bytes(), f"{committed.name}/{rel} differs after a rebuild"
    built = {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()}
    assert built == {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}  # nothing new


def test_every_committed_report_is_found():
    assert {p.name for p in REPORTS} >= {"ablation-flat-fer2013", "components-flat-fer2013", "optimized-flat-fer2013"}
