"""Experiment storage that is a local folder or a URI Ray accepts (s3://, gs://), via pyarrow.fs."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow.fs as pafs


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
    """The experiment as a local folder: itself when local, else a download (without Train checkpoints)."""
    if "://" not in uri:
        return Path(uri)
    fs, path = _fs(uri)
    dest = Path(tempfile.mkdtemp(prefix="sweep-report-")) / Path(path).name
    pafs.copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return dest


def publish(local: Path, uri: str, report: Path) -> None:
    """Upload the report and its figures next to a remote experiment (no-op for a local one)."""
    if "://" not in uri:
        return
    fs, path = _fs(uri)
    for f in Path(report).parent.iterdir():
        if f.suffix in (".md", ".png"):
            pafs.copy_files(str(f), f"{path}/{f.name}", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
