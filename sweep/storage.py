"""Experiment storage that is a local folder or a URI Ray accepts (s3://, gs://), via pyarrow.fs."""
from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.fs as pafs

_CHUNK = 1 << 20  # bytes per read when downloading


def _fs(uri: str):
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_json(uri: str) -> dict:
    fs, path = _fs(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return {}
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def write_json(uri: str, obj: dict) -> None:
    fs, path = _fs(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(obj, indent=1, default=str).encode())


def local_copy(uri: str) -> Path:
    """The experiment as a local folder: itself when local, else a download without Ray Train's checkpoints.

    Checkpoints are the `checkpoint_*` folders under `train_runs/<run>/` (and `tuning/train_runs/<run>/`):
    model and optimiser state a report never reads, and most of an experiment's bytes.
    """
    if "://" not in uri:
        return Path(uri)
    fs, path = _fs(uri)
    dest = Path(tempfile.mkdtemp(prefix="sweep-report-")) / Path(path).name
    dest.mkdir()
    files = [info.path for info in fs.get_file_info(pafs.FileSelector(path, recursive=True))
             if info.type == pafs.FileType.File]
    wanted = [f for f in files if not _in_train_checkpoint(f[len(path):].strip("/").split("/"))]

    def download(src: str) -> None:
        target = dest / src[len(path):].strip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(src) as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)

    # Object stores answer each GET in tens of ms: a few at a time, or an experiment of 1,000 files takes a minute.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(download, wanted))
    return dest


def _in_train_checkpoint(parts: list[str]) -> bool:
    """True for a file below a `checkpoint_*` folder that sits below a `train_runs` folder (parts: the path's
    components relative to the experiment, the file's name last; a file named checkpoint_* is not a folder)."""
    return any(p.startswith("checkpoint_") and "train_runs" in parts[:i] for i, p in enumerate(parts[:-1]))


def publish(report: Path, uri: str) -> None:
    """Upload the report next to a remote experiment: the markdown and the whole figures/ folder beside it, so
    its images resolve there too; remote figures the new report no longer has are removed. No-op for a local
    experiment."""
    if "://" not in uri:
        return
    from sweep.report import FIGURES  # the folder build_report draws into, beside the markdown

    fs, path = _fs(uri)
    report = Path(report)
    base = report.parent
    figures = base / FIGURES
    files = [report] + (sorted(f for f in figures.rglob("*") if f.is_file()) if figures.is_dir() else [])
    local_fs = pafs.LocalFileSystem()
    for f in files:
        rel = f.relative_to(base).as_posix()
        pafs.copy_files(str(f.resolve()), f"{path}/{rel}", source_filesystem=local_fs, destination_filesystem=fs)
    remote_figures = f"{path}/{FIGURES}"
    uploaded = {f"{path}/{f.relative_to(base).as_posix()}" for f in files}
    if fs.get_file_info(remote_figures).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(remote_figures, recursive=True)):
            if info.type == pafs.FileType.File and info.path not in uploaded:
                fs.delete_file(info.path)
