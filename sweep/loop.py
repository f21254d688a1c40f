"""The training loop of one trial, without Ray: build, train, validate, checkpoint, evaluate once at the end.

    def report(metrics: dict, checkpoint_dir: Path | None) -> None: ...
    final = train_trial(flat_config, TrialData(train=(x, y), val=(vx, vy), norm=norm, final_splits=...), report)

Per epoch: seeded batch order and augmentation (`sweep.batches.epoch_stream`: paired seeds see the same
batches whatever the variant), one training pass, validation, then `report(metrics, checkpoint_dir)` with
the latest state and the best-by-validation weights in `checkpoint_dir` (rank 0; other ranks get None).
After the last epoch the best weights are evaluated once on train, validation and test, and one more
`report` carries the final metrics and a directory with `best/` and `final.json`. The directories are
temporary: `report` copies what it keeps before it returns. Model selection only ever looks at
validation (PublicTest).

`sweep/trial.py` runs this in every Ray Train worker (Ray's data, `ray.train.report`, DDP);
`benchmarks/sweep_overhead.py` runs it in-process as the bare-loop baseline.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from fer_data import NUM_CLASSES, Norm
from fer_models import build_model, tune_malloc
from fer_models.activity import UnitActivity
from fer_models.checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state
from fer_models.perf import auto_candidates, resolve_device
from fer_models.training import (
    Precision, classification_metrics, evaluate, fastest_precision, make_optimizer, make_scheduler, setup_precision,
    train_one_epoch,
)
from sweep.batches import epoch_stream, eval_batches, on_device, train_batches
from sweep.config import TrialConfig

FINAL_FILE = "final.json"
ASHA_TIME = "asha/epoch"

Split = tuple[np.ndarray, np.ndarray]  # preprocessed uint8 faces [N, S, S], int64 labels [N]
Report = Callable[[dict, Path | None], None]  # (metrics, checkpoint directory or None)


@dataclass(frozen=True)
class TrialData:
    """What one rank of a trial trains and evaluates on, already preprocessed (uint8, normalised per batch)."""

    train: Split  # this rank's share of the training split (after balancing)
    val: Split  # the whole validation split (PublicTest)
    norm: Norm  # training-split mean/std, for `data.standardize`
    class_weights: Sequence[float] | None = None  # one weight per class for the loss, or None
    # The whole un-resampled training split and the test split, {"train": Split, "test": Split}: called
    # once, on rank 0, only for the final evaluation (the Ray adapter fetches them from the object store then).
    final_splits: Callable[[], Mapping[str, Split]] | None = None
    test_copy_in_train: np.ndarray | None = None  # bool per test face: an exact copy of it is in train


def train_trial(config: Mapping[str, Any], data: TrialData, report: Report, *, device=None, rank: int = 0,
                precision: Precision | None = None, wrap_model: Callable[[nn.Module], nn.Module] | None = None,
                resume_from: str | os.PathLike | ContextManager[str] | None = None, final_eval: bool = True,
                extra_metrics: Mapping[str, Any] | None = None) -> dict | None:
    """Train the trial `config` (flat dotted keys, as Tune hands them) on `data`, reporting through `report`.

    device: where to train (None: CUDA if available, else CPU); ignored when `precision` is given.
    rank: this process's rank; seeds its batch stream, and only rank 0 writes checkpoints and final.json.
    precision: the numeric setup and GradScaler for the whole trial; None builds it once from
        `train.precision` (`auto` on a GPU with bf16 first times the step in fp32 and bf16: `_trial_precision`).
        Its loss scale carries across epochs and is saved with the optimiser state.
    wrap_model: applied once to the prepared model before training (DDP: `ray.train.torch.prepare_model`);
        checkpoints and the final evaluation use the unwrapped model.
    resume_from: a checkpoint directory this loop reported, or a context manager yielding one (Ray's
        `Checkpoint.as_directory()`, entered only while the state is read): training continues after its
        last finished epoch, or goes straight to the final evaluation when training had finished.
    final_eval: False for a nuisance-tuning trial: trained and validated only, test untouched, no final.json.
    extra_metrics: constants added to every epoch's metrics (the Ray adapter's `node_id`).
    Returns the final.json content on rank 0 when `final_eval`, else None.
    """
    cfg = TrialConfig.from_flat(config)
    tune_malloc()  # this process trains: it keeps its freed memory (fer_models.perf)
    if final_eval and rank == 0 and data.final_splits is None:
        raise ValueError("train_trial: final_eval needs data.final_splits (the train and test splits)")
    prec, speeds = (precision, None) if precision is not None else _trial_precision(cfg, device)
    weights = None if data.class_weights is None else torch.as_tensor(data.class_weights, dtype=torch.float32,
                                                                      device=prec.device)
    torch.manual_seed(cfg.seed)  # identical initialisation on every rank (DDP also broadcasts rank 0's)
    model = prec.prepare(build_model(cfg.model.name, input_size=cfg.data.input_size, **cfg.model.overrides))
    net = wrap_model(model) if wrap_model is not None else model
    # The faces go to the training device once; every batch is indexed and augmented there.
    train_x, train_y = on_device(*data.train, prec.device)
    val_x, val_y = on_device(*data.val, prec.device)
    optimizer = make_optimizer(model, cfg.train)
    scheduler = make_scheduler(optimizer, cfg.train, steps_per_epoch=-(-len(train_x) // cfg.train.batch_size))

    start_epoch, best = 0, {"val_acc": -1.0, "epoch": 0}
    best_model = copy.deepcopy(model)
    if resume_from is not None:
        start_epoch, best, best_model, row = _restore(resume_from, model, optimizer, scheduler, prec,
                                                      cfg.train.epochs)
        if row is not None:
            # The checkpoint's epoch once more: an interrupt can fall between its checkpoint and the sweep logging
            # its row, which would leave a hole in the curve (the report keeps one row per epoch). Without
            # ASHA's clock, so a scheduler does not count it twice.
            report(row, None)

    pre = cfg.data.preprocess
    # input_size is an override: the Flatten width depends on it, so the checkpoint rebuilds exactly this net.
    meta = {"model_name": cfg.model.name, "overrides": {**cfg.model.overrides, "input_size": cfg.data.input_size},
            "input_size": cfg.data.input_size, "norm": asdict(data.norm), "data": asdict(cfg.data),
            "preprocess": asdict(pre),
            "trial": dict(config)}
    for epoch in range(start_epoch, cfg.train.epochs):
        t0 = time.perf_counter()
        order, generator = epoch_stream(cfg.seed, epoch, rank, len(train_x), prec.device)
        batches = train_batches(train_x, train_y, order, batch_size=cfg.train.batch_size, augment=cfg.augment,
                                generator=generator, preprocess=pre, norm=data.norm)
        lr = optimizer.param_groups[0]["lr"]
        tr = train_one_epoch(net, batches, optimizer, class_weights=weights, scheduler=scheduler,
                             label_smoothing=cfg.train.label_smoothing, grad_clip=cfg.train.grad_clip, precision=prec)
        va = evaluate(net, eval_batches(val_x, val_y, pre, data.norm), precision=prec, class_weights=weights)
        if va["acc"] > best["val_acc"]:
            best = {"val_acc": float(va["acc"]), "epoch": epoch + 1}
            best_model.load_state_dict(model.state_dict())
        metrics = {
            "epoch": epoch + 1, "lr": lr,
            "train/loss": tr["loss"], "train/acc": tr["acc"],
            "val/loss": va["loss"], "val/acc": va["acc"],
            "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
            "epoch_s": time.perf_counter() - t0, "train/images_per_s": tr["images"] / max(tr["seconds"], 1e-9),
            **(extra_metrics or {}), "hostname": socket.gethostname(),
        }
        if epoch + 1 < cfg.train.epochs:
            # ASHA's clock. Absent from the last epoch's result, so ASHA never stops a trial that has finished
            # training before its final evaluation (ASHA ignores results without its time attribute).
            metrics[ASHA_TIME] = epoch + 1
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                ckpt = Path(tmp)
                save_checkpoint(ckpt / "latest", model, meta)
                save_checkpoint(ckpt / "best", best_model, {**meta, "best": best})
                extra = {"best": best, "row": json.dumps({k: v for k, v in metrics.items() if k != ASHA_TIME},
                                                         default=float)}
                if prec.scaler.is_enabled():  # fp16's loss scale; a disabled scaler has no state
                    extra["scaler"] = prec.scaler.state_dict()
                save_train_state(ckpt / "latest", optimizer, scheduler, epoch + 1, extra)
            report(metrics, ckpt)

    # Test is touched once, here, with the weights chosen on validation. The result travels as the
    # last report's checkpoint: best/ + final.json.
    # val/acc here is the selected weights' (Tune's metric must be in every result, ASHA's too).
    final_metrics = {"epoch": cfg.train.epochs, "val/acc": best["val_acc"], "best_val_acc": best["val_acc"],
                     "best_epoch": best["epoch"]}
    if not final_eval:
        report(final_metrics, None)
        return None
    final = None
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if rank == 0:
            ckpt = Path(tmp)
            final = {"best_epoch": best["epoch"], "epochs_run": cfg.train.epochs,
                     "params": sum(p.numel() for p in model.parameters()), "precision": prec.name, "metrics": {},
                     "predictions": {}}
            if speeds is not None:
                final["precision_images_per_s"] = speeds  # what `auto` measured before it chose
            t_eval = time.perf_counter()
            more = data.final_splits()
            splits = {"train": more["train"], "val": (val_x, val_y), "test": more["test"]}
            for split, (x, y) in splits.items():
                x, y = on_device(x, y, prec.device)
                activity = UnitActivity(best_model) if split == "val" else None  # dead ReLU units, for the report
                ev = evaluate(best_model, eval_batches(x, y, pre, data.norm), precision=prec, class_weights=weights)
                if activity is not None:
                    final["unit_activity"] = {split: activity.close()}
                final["metrics"][split] = {"loss": ev["loss"], **classification_metrics(ev["y_true"], ev["y_pred"])}
                if split != "train":  # per face, so the report can count the faces' sampling in its intervals
                    final["predictions"][split] = {k: label_string(ev[k]) for k in ("y_true", "y_pred")}
                if split == "test":
                    final["metrics"]["test"]["subsets"] = copy_subsets(ev["y_true"], ev["y_pred"],
                                                                       data.test_copy_in_train)
            final["eval_s"] = time.perf_counter() - t_eval
            final_metrics.update(final_split_metrics(final))
            save_checkpoint(ckpt / "best", best_model, {**meta, "best": best})
            (ckpt / FINAL_FILE).write_text(json.dumps(final))
        report(final_metrics, ckpt)
    return final


def _trial_precision(cfg: TrialConfig, device) -> tuple[Precision, dict[str, float] | None]:
    """`train.precision` set up for this trial, and the images/s it measured to choose, if it did: `auto` with
    more than one candidate on this device (fer_models.perf.auto_candidates) times the trial's own step in
    each and takes the fastest; every rank then trains in rank 0's choice."""
    dev = resolve_device(device)
    candidates = auto_candidates(dev) if cfg.train.precision == "auto" else (cfg.train.precision,)
    if len(candidates) == 1:
        return setup_precision(candidates[0], dev), None

    def make_model() -> nn.Module:
        return build_model(cfg.model.name, input_size=cfg.data.input_size, **cfg.model.overrides)

    name, speeds = fastest_precision(make_model, cfg.train, cfg.data.input_size, dev, candidates)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        pick = [name]
        torch.distributed.broadcast_object_list(pick, src=0)
        name = pick[0]
    return setup_precision(name, dev), speeds


def _restore(resume_from, model: nn.Module, optimizer, scheduler, prec: Precision, epochs: int):
    """(start epoch, best, best model, the checkpoint epoch's result row or None) from a checkpoint this loop
    wrote; model, optimiser, scheduler and GradScaler state restored in place."""
    source = contextlib.nullcontext(resume_from) if isinstance(resume_from, (str, os.PathLike)) else resume_from
    with source as d:
        d = Path(d)
        best_model, best_meta = load_checkpoint(d / "best", map_location=prec.device)
        best = best_meta["best"]
        if not (d / "latest").exists():  # restarted after training had finished: only the final evaluation is left
            return epochs, best, best_model, None
        latest, _ = load_checkpoint(d / "latest", map_location=prec.device)
        model.load_state_dict(latest.state_dict())
        start_epoch, extra = load_train_state(d / "latest", optimizer, scheduler, map_location=prec.device)
        if extra.get("scaler") and prec.scaler.is_enabled():
            prec.scaler.load_state_dict(extra["scaler"])
        return start_epoch, best, best_model, (json.loads(extra["row"]) if "row" in extra else None)


def label_string(labels: np.ndarray) -> str:
    """Class labels 0-6 as one digit each, in the split's face order: final.json's compact `predictions`."""
    return "".join(map(str, np.asarray(labels, dtype=np.int64).tolist()))


def copy_subsets(y_true: np.ndarray, y_pred: np.ndarray, copy_in_train, num_classes: int = NUM_CLASSES) -> dict:
    """Test accuracy and macro recall on the faces with an exact copy in this trial's training split and on
    those without: what a leak can inflate, separated from what it cannot. Per-class counts of faces and of
    correct answers let the report compare the two subsets within each class (their class mixes differ)."""
    from sklearn.metrics import recall_score

    copy = np.asarray(copy_in_train, dtype=bool)
    if copy.shape != y_true.shape:
        raise ValueError(f"test copy mask has {copy.size} entries for {y_true.size} test faces")
    out = {}
    for name, mask in (("copy_in_train", copy), ("no_copy_in_train", ~copy)):
        t, p = y_true[mask], y_pred[mask]
        out[name] = {"n": int(mask.sum()),
                     "acc": float((t == p).mean()) if mask.any() else None,
                     "macro_recall": float(recall_score(t, p, labels=np.unique(t), average="macro", zero_division=0))
                     if mask.any() else None,
                     "per_class_n": np.bincount(t, minlength=num_classes).tolist(),
                     "per_class_correct": np.bincount(t[t == p], minlength=num_classes).tolist()}
    return out


def final_split_metrics(final: dict) -> dict:
    """The `final/<split>/{acc,macro_f1}` keys of a trial's last result, from its final.json content."""
    return {f"final/{split}/{key}": final["metrics"][split][key]
            for split in ("train", "val", "test") for key in ("acc", "macro_f1")}
