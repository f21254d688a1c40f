"""Checkpoints: weights in safetensors (no pickle), architecture + provenance in meta.json.

    save_checkpoint(dir, model, {"model_name": "baseline", "overrides": {"input_size": 48}, "input_size": 48,
                                 "class_names": [...], "preprocess": {...}})
    model, meta = load_checkpoint(dir)  # rebuilt via the registry, loaded strictly

meta.json also records `weights_sha256` (of model.safetensors) and `config` (the resolved ModelConfig);
loading refuses, with a one-line `CheckpointError`, a missing file, a weights file whose hash differs,
a corrupt safetensors header, an unknown model name, or tensors that do not match the architecture.
Optimiser / scheduler state for resuming goes through `save_train_state` / `load_train_state`
(`torch.save`, read back with `weights_only=True`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .registry import UnknownModelError, build_model

WEIGHTS = "model.safetensors"
META = "meta.json"
TRAIN_STATE = "train_state.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely; the message names the file and the reason."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    save_file(state, str(d / WEIGHTS), metadata={"format": "pt", "model_name": meta["model_name"]})
    full = {**meta, "overrides": overrides, "input_size": meta.get("input_size", cfg.input_size),
            "config": cfg.to_dict(), "weights_file": WEIGHTS, "weights_sha256": _sha256(d / WEIGHTS)}
    (d / META).write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    return d


def load_checkpoint(directory, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model named in meta.json, verify the weights' sha256, load them strictly."""
    d = Path(directory)
    meta_path, weights_path = d / META, d / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: missing (a checkpoint needs {META} and {WEIGHTS})")
    try:
        meta = json.loads(meta_path.read_text())
        name, overrides = meta["model_name"], dict(meta.get("overrides", {}))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta_path}: unreadable meta ({type(e).__name__}: {e})") from None
    expected = meta.get("weights_sha256")
    if not expected:
        raise CheckpointError(f"{meta_path}: no weights_sha256; refusing unverifiable weights")
    actual = _sha256(weights_path)
    if actual != expected:
        raise CheckpointError(f"{weights_path}: sha256 {actual[:12]}... != {expected[:12]}... in {META} (tampered or corrupt)")
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
