"""Shared pytest fixtures: the real FER-2013 file, and a small local Ray cluster."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

FER_CSV = Path(os.environ.get("FER_CSV", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"
                              / "fer2013" / "icml_face_data.csv.gz")).resolve()


@pytest.fixture(scope="session")
def fer_csv() -> Path:
    """Path of the real FER-2013 CSV ($FER_CSV, default ../shared/datasets/fer2013/icml_face_data.csv.gz)."""
    if not FER_CSV.is_file():
        pytest.skip(f"real FER-2013 file not found at {FER_CSV} (set FER_CSV to its path)")
    return FER_CSV


@pytest.fixture(scope="session")
def fer_cache_dir(tmp_path_factory) -> Path:
    """A private parsed-array cache for this test session (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("fer_cache")


@pytest.fixture(scope="session")
def fer_arrays(fer_csv, fer_cache_dir):
    """The real FER-2013 parsed once per test session (~3-4 s); later loads hit fer_cache_dir."""
    from fer_data import load_fer2013

    return load_fer2013(fer_csv, cache_dir=fer_cache_dir)


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU local Ray cluster with a fresh temp dir, no dashboard; shut down after the module."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    tmp = tempfile.mkdtemp(prefix="ray_test_")
    ray.init(num_cpus=2, _temp_dir=tmp, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()
