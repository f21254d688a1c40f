"""Checkpoints: weights in safetensors (no pickle), architecture + provenance in meta.json.

    save_checkpoint(dir, model, {"model_name": "baseline", "overrides": {"input_size": 48}, "input_size": 48,
                                 "class_names": [...], "preprocess": {...}})
    model, meta = load_checkpoint(dir)  # rebuilt via the registry, loaded strictly

meta.json also records `weights_sha256` (of model.safetensors), `config` (the resolved ModelConfig) and
`meta_sha256`, the sha256 of meta.json's own canonical JSON without that key (`meta_digest`), which
covers `weights_sha256` too, so the weights and every meta value are checked together. Both hashes
catch corruption and edits, not a forger (anyone can recompute them). meta.json files written before
`meta_sha256` existed still load (their weights are still checked) and their values are validated
like any other.
Loading refuses, with a one-line `CheckpointError` naming the file, a missing file, a weights file or
meta.json whose hash differs, meta values out of bounds (`overrides` not a mapping, widths not
positive ints, input size outside 8..512), a corrupt safetensors header, an unknown model name, or
tensors that do not match the architecture; all of that is checked before the model is built
(the architecture on PyTorch's "meta" device, which allocates nothing).
Optimiser / scheduler state for resuming goes through `save_train_state` / `load_train_state`
(`torch.save`, read back with `weights_only=True`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .registry import UnknownModelError, build_model

WEIGHTS = "model.safetensors"
META = "meta.json"
TRAIN_STATE = "train_state.pt"
INPUT_SIZE_RANGE = (8, 512)  # what fer_data's preprocessing accepts


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely; the message names the file and the reason."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def meta_digest(meta: dict) -> str:
    """sha256 of ``meta`` as canonical JSON (sorted keys, no spaces), ``meta_sha256`` left out."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _replace_into(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(directory, model: nn.Module, meta: dict) -> Path:
    """Write `model.safetensors` + `meta.json` into `directory` (created). `meta` needs `model_name`;
    `overrides` defaults to {} and `input_size` to the model config's. Returns the directory."""
    if "model_name" not in meta:
        raise CheckpointError("save_checkpoint: meta must contain 'model_name' (the registry name to rebuild)")
    from .registry import get_config

    overrides = dict(meta.get("overrides", {}))
    cfg = get_config(meta["model_name"], **overrides)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    # contiguous(): channels_last tensors are not contiguous and safetensors stores row-major bytes.
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _replace_into(d / WEIGHTS, lambda t: save_file(state, str(t), metadata={"format": "pt", "model_name": meta["model_name"]}))
    full = {**meta, "overrides": overrides, "input_size": meta.get("input_size", cfg.input_size),
            "config": cfg.to_dict(), "weights_file": WEIGHTS, "weights_sha256": _sha256(d / WEIGHTS)}
    full = json.loads(json.dumps(full, default=str))  # hash exactly what a reader will parse back
    full["meta_sha256"] = meta_digest(full)
    text = json.dumps(full, indent=2, sort_keys=True)
    _replace_into(d / META, lambda t: t.write_text(text))
    return d


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_meta(meta, meta_path: Path) -> None:
    """Refuse (one line, naming ``meta_path``) meta values that could not describe a model we build."""
    lo, hi = INPUT_SIZE_RANGE

    def bad(msg: str):
        raise CheckpointError(f"{meta_path}: {msg}")

    if not isinstance(meta, dict):
        bad(f"must hold a JSON object, got {type(meta).__name__}")
    if not isinstance(meta.get("model_name"), str):
        bad(f"'model_name' must be a string, got {meta.get('model_name')!r}")
    overrides = meta.get("overrides", {})
    if not isinstance(overrides, dict):
        bad(f"'overrides' must be a mapping of ModelConfig fields, got {overrides!r}")
    for where, size in (("input_size", meta.get("input_size")), ("overrides.input_size", overrides.get("input_size"))):
        if size is not None and not (_is_int(size) and lo <= size <= hi):
            bad(f"'{where}' must be an int in {lo}..{hi}, got {size!r}")
    for key in ("conv_widths", "dense_widths"):
        if key in overrides:
            w = overrides[key]
            if not (isinstance(w, list) and all(_is_int(v) and v > 0 for v in w) and (w or key == "dense_widths")):
                bad(f"'overrides.{key}' must be a list of positive ints, got {w!r}")


def _check_shapes(weights_path: Path, name: str, overrides: dict, meta_path: Path) -> None:
    """Build the architecture on the meta device (no memory) and compare it with the file's tensor
    shapes, so a wrong or huge architecture is refused before any real allocation."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(name, **overrides).state_dict().items()}
    except UnknownModelError as e:
        raise CheckpointError(f"{meta_path}: cannot rebuild model {name!r} with {overrides}: {e}") from None
    except Exception as e:  # any failure to build from these values means the meta is unusable
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{meta_path}: cannot rebuild model {name!r} with {overrides}: {msg}") from None
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({e})") from None
    if found != expected:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        shapes = [f"{k}: {found[k]} vs {expected[k]}" for k in sorted(set(found) & set(expected)) if found[k] != expected[k]]
        parts = ([f"missing {missing[:3]}"] if missing else []) + ([f"unexpected {extra[:3]}"] if extra else [])
        parts += [f"shape of {s}" for s in shapes[:3]]
        raise CheckpointError(f"{weights_path}: weights do not match architecture {name!r} {overrides}: {'; '.join(parts)}")


def load_checkpoint(directory, map_location: str | torch.device = "cpu",
                    check: Callable[[dict, Path], None] | None = None) -> tuple[nn.Module, dict]:
    """Verify the weights' and meta.json's sha256, validate the meta, rebuild the model named in it
    and load the weights strictly. ``check(meta, meta_path)``, when given, runs on the verified meta
    before anything is built (callers add their own checks, e.g. the preprocessing)."""
    d = Path(directory)
    meta_path, weights_path = d / META, d / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: missing (a checkpoint needs {META} and {WEIGHTS})")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{meta_path}: unreadable meta ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: must hold a JSON object, got {type(meta).__name__}")
    expected = meta.get("weights_sha256")
    if not expected or not isinstance(expected, str):
        raise CheckpointError(f"{meta_path}: no weights_sha256; refusing unverifiable weights")
    if "meta_sha256" in meta:  # absent only in checkpoints written before meta.json was hashed
        digest = meta_digest(meta)
        if digest != meta["meta_sha256"]:
            raise CheckpointError(f"{meta_path}: sha256 {digest[:12]}... != meta_sha256 {str(meta['meta_sha256'])[:12]}... "
                                  "(edited, tampered or corrupt)")
    actual = _sha256(weights_path)
    if actual != expected:
        raise CheckpointError(f"{weights_path}: sha256 {actual[:12]}... != {expected[:12]}... in {META} (tampered or corrupt)")
    validate_meta(meta, meta_path)
    if check is not None:
        check(meta, meta_path)
    name, overrides = meta["model_name"], dict(meta.get("overrides", {}))
    _check_shapes(weights_path, name, overrides, meta_path)
    try:
        model = build_model(name, **overrides)
    except (UnknownModelError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: cannot rebuild model {name!r} with {overrides}: {e}") from None
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"{weights_path}: not a valid safetensors file ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        raise CheckpointError(f"{weights_path}: weights do not match architecture {name!r} {overrides}: {detail}") from None
    return model.to(map_location), meta


def save_train_state(directory, optimizer: torch.optim.Optimizer, scheduler=None, epoch: int = 0,
                     extra: dict | None = None) -> Path:
    """Optimiser/scheduler state + epoch (+ small plain `extra`) for resuming, as train_state.pt."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.save({"optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": int(epoch), "extra": extra or {}}, d / TRAIN_STATE)
    return d / TRAIN_STATE


def load_train_state(directory, optimizer: torch.optim.Optimizer, scheduler=None,
                     map_location: str | torch.device = "cpu") -> tuple[int, dict]:
    """Restore optimiser (and scheduler) state in place; returns (epoch, extra). Loads with weights_only=True."""
    path = Path(directory) / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except Exception as e:  # pickle errors, unpickling refusals and shape mismatches all mean "unusable"
        raise CheckpointError(f"{path}: cannot restore train state ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return int(state["epoch"]), dict(state.get("extra") or {})
