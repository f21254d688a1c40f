"""sweep.storage against a real S3 endpoint: moto's standalone server on loopback, started by the tests.

The code under test talks to it exactly as it talks to AWS: `pyarrow.fs.FileSystem.from_uri("s3://...")`, with
the endpoint, credentials and region from the standard AWS environment variables (`AWS_ENDPOINT_URL` is what a
MinIO or other S3-compatible store needs too). boto3 (a moto dependency) only creates the bucket and lists keys.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
boto3 = pytest.importorskip("boto3", reason="boto3 (installed with moto[server]) is missing")

from test_report_fixtures import params, write_meta, write_trial  # noqa: E402

BUCKET = "fer-ablation-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """A moto S3 server on 127.0.0.1:<free port> with an empty bucket; yields the AWS_* variables that point
    pyarrow (and Ray) at it. The server runs in its own process so other processes (Ray's) reach it too."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # moto imports a lot: ~15 s on a busy 2-core machine
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto server did not start on {endpoint}:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        for k, v in locals().get("saved", {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def keys(prefix: str) -> dict[str, bytes]:
    """Every object (not directory markers) under s3://BUCKET/<prefix>/, by key relative to the prefix, with its bytes."""
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):  # an empty "directory" marker pyarrow keeps for a folder it emptied
                continue
            out[obj["Key"][len(prefix) + 1:]] = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return out


def upload(local: Path, prefix: str) -> None:
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(f"s3://{BUCKET}/{prefix}")
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def experiment(root: Path) -> Path:
    """An experiment folder in sweep.run's layout: two seeds of two variants (Tune trial folders with the
    selected weights), nuisance-tuning trials, and Ray Train runs whose checkpoint_* folders hold model state."""
    exp = root / "exp"
    exp.mkdir()
    for i, (model, seed, val) in enumerate([("baseline", 0, 0.50), ("baseline", 1, 0.52),
                                            ("no_dropout", 0, 0.47), ("no_dropout", 1, 0.48)]):
        d = write_trial(exp, f"run_trial_abc_{i:05d}_{model}_s{seed}", params(model, seed), val=val, test=val)
        (d / "best_model").mkdir()
        (d / "best_model" / "model.safetensors").write_bytes(b"selected weights %d" % i)
        (d / "events.out.tfevents.1.vm").write_bytes(b"tensorboard")
        run = exp / "train_runs" / f"train-abc_{i:05d}"
        for ckpt in ("checkpoint_2026-12-01_17-16-31.415916", "checkpoint_2026-12-01_17-18-02.000001"):
            for part in ("latest", "best"):
                (run / ckpt / part).mkdir(parents=True)
                (run / ckpt / part / "model.safetensors").write_bytes(os.urandom(4096))
        (run / "checkpoint_2026-12-01_17-18-02.000001" / "final.json").write_text("{}")
        (run / "checkpoint_manager_snapshot.json").write_text("{}")  # a file, not a checkpoint folder: kept
        (run / ".validate_storage_marker").write_text("")
    tuning = exp / "tuning" / "00"
    write_trial(tuning, "run_trial_def_00000", params("baseline", 100), final=False)
    (exp / "tuning" / "train_runs" / "train-def_00000" / "checkpoint_2026-12-01_16-00-00.000000").mkdir(parents=True)
    (exp / "tuning" / "train_runs" / "train-def_00000" / "checkpoint_2026-12-01_16-00-00.000000" / "m.pt") \
        .write_bytes(b"tuning checkpoint")
    (exp / "tuner.pkl").write_bytes(b"\x00")
    write_meta(exp, name="exp")
    return exp


def test_local_copy_downloads_everything_but_train_checkpoints(s3_env, tmp_path):
    from sweep import storage

    exp = experiment(tmp_path)
    upload(exp, "copy/exp")
    local = storage.local_copy(f"s3://{BUCKET}/copy/exp")

    want = {k: v for k, v in files_under(exp).items()
            if not re.search(r"(^|/)train_runs/[^/]+/checkpoint_[^/]*/", k)}
    got = files_under(local)
    assert got == want  # same names, same bytes
    assert any(k.endswith("best_model/model.safetensors") for k in got)  # the trials' selected weights stay
    assert any(k.endswith("checkpoint_manager_snapshot.json") for k in got)
    assert not any("/checkpoint_2026" in k for k in got), sorted(got)
    assert len(files_under(exp)) - len(got) == 4 * (2 * 2 + 1) + 1  # every Train checkpoint file, nothing else
    shutil.rmtree(local.parent, ignore_errors=True)  # local_copy's temp folder


def test_publish_uploads_the_report_with_its_figures_folder(s3_env, tmp_path):
    from sweep import storage
    from sweep.report import FIGURES, build_report

    exp = experiment(tmp_path)
    upload(exp, "pub/exp")
    uri = f"s3://{BUCKET}/pub/exp"
    # A per-variant figure an older version of the report drew (build_report removes such files): local_copy
    # brings it down with the rest, and publishing the new report must remove it from the bucket too.
    stale = tmp_path / "stale"
    (stale / FIGURES).mkdir(parents=True)
    (stale / FIGURES / "confusion_baseline.png").write_bytes(b"png from an older report")
    upload(stale, "pub/exp")

    local = storage.local_copy(uri)  # what sweep.run does at the end of a remote sweep
    report = build_report(local)
    storage.publish(report, uri)

    remote = keys("pub/exp")
    text = report.read_text()
    assert remote["report.md"] == report.read_bytes()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all(link.startswith(f"{FIGURES}/") for link in links), links
    for link in links:  # every image the report shows resolves next to it in the bucket, byte for byte
        assert remote.get(link) == (local / link).read_bytes(), f"{link} missing or different in the bucket"
    local_figures = {p.relative_to(local).as_posix() for p in (local / FIGURES).rglob("*") if p.is_file()}
    assert {k for k in remote if k.startswith(f"{FIGURES}/")} == local_figures  # the stale one is gone
    assert f"{FIGURES}/confusion_baseline.png" not in remote
    assert "sweep_meta.json" in remote and any(k.startswith("train_runs/") for k in remote)  # nothing else removed
    shutil.rmtree(local.parent, ignore_errors=True)


def test_publish_and_local_copy_leave_a_local_experiment_alone(tmp_path):
    from sweep import storage

    exp = experiment(tmp_path)
    before = files_under(exp)
    assert storage.local_copy(str(exp)) == exp
    storage.publish(exp / "report.md", str(exp))
    assert files_under(exp) == before

