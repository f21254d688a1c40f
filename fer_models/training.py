"""Plain train / evaluate functions (no Ray) and the training hyper-parameters the study leaves unsaid.

`batches` is any iterable of `(x, y)`: x float32 [B, 1, S, S] (already normalised), y int64 [B].
Usage:
    cfg = TrainConfig()
    model = build_model("baseline", input_size=48)
    prec = setup_precision(cfg.precision)  # once per run: autocast dtype, memory format, GradScaler
    opt = make_optimizer(model, cfg); sched = make_scheduler(opt, cfg, steps_per_epoch=len(loader))
    for epoch in range(cfg.epochs):
        stats = train_one_epoch(model, loader, opt, scheduler=sched, precision=prec)
        val = evaluate(model, val_loader, precision=prec)
        metrics = classification_metrics(val["y_true"], val["y_pred"])
A precision name ("auto", "fp32", ...) works too, for a single call: it is resolved on each call and brings a
fresh GradScaler, so fp16 loss scaling would restart every epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import perf
from .regularization import l2_penalty

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The study names none of these; the defaults are the choices documented here."""

    optimizer: str = "adam"  # "adam" (the Keras default the study most likely used), "adamw" or "sgd"
    lr: float = 1e-3  # peak learning rate (Keras Adam default)
    momentum: float = 0.9  # SGD momentum (Nesterov); ignored by Adam/AdamW
    weight_decay: float = 0.0  # optimiser weight decay, separate from ModelConfig.l2 (the loss penalty); 0 = off
    batch_size: int = 128  # images per step (the batch every committed timing and report used)
    epochs: int = 30  # the study's curves flatten well before 30 epochs at lr 1e-3
    lr_schedule: str = "cosine"  # per-step cosine decay to 0 after warmup; "none" = constant lr
    warmup_epochs: float = 0.0  # linear warmup from 0, in epochs
    label_smoothing: float = 0.0  # cross-entropy label smoothing; 0 = off (the study uses plain CE)
    grad_clip: float = 0.0  # max global grad norm; 0 = no clipping
    # N > 0: a dense (Linear) layer with fan-in above N trains at lr x N / fan-in; 0 = one lr for every layer.
    # Adam moves every weight by about lr in its first steps, all of a unit's the same way (its inputs, after ReLU
    # and max-pool, are >= 0), so a dense unit's pre-activation jumps by about lr x fan-in x mean input: ~5 for the
    # 8,192 inputs of the 64x64 baseline, which kills most of its units for good (benchmarks/dead_units_probe.py).
    # The scaling keeps that jump the same for every layer, as muP scales Adam's rate for hidden layers.
    dense_lr_fan_in: int = 0
    precision: str = "auto"  # perf.resolve_precision: "auto" | "fp32" | "bf16" | "fp16"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer={self.optimizer!r}: valid values are {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule={self.lr_schedule!r}: valid values are {', '.join(SCHEDULES)}")
        if self.precision not in perf.PRECISIONS:
            raise ValueError(f"TrainConfig.precision={self.precision!r}: valid values are {', '.join(perf.PRECISIONS)}")
        if self.dense_lr_fan_in < 0:
            raise ValueError(f"TrainConfig.dense_lr_fan_in={self.dense_lr_fan_in}: must be >= 0 (0 = off)")
        for name in ("lr", "batch_size", "epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)}: must be > 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TrainConfig.label_smoothing={self.label_smoothing}: must be in [0, 1)")

    def replace(self, **overrides) -> "TrainConfig":
        valid = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s) {unknown}; valid fields: {', '.join(valid)}")
        return dataclasses.replace(self, **overrides)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Optimizer over trainable parameters; weight decay as configured (L2 penalty is in the loss instead)."""
    params = [p for p in model.parameters() if p.requires_grad]
    # On a GPU, PyTorch's fused kernel: one launch per step instead of one per tensor (these small nets are
    # launch-bound). Not yet timed in this project (no GPU here); CPUs keep the default implementation.
    fused = {"fused": True} if params and params[0].is_cuda else {}
    groups = _lr_groups(model, params, cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay, **fused)


def _lr_groups(model: nn.Module, params: list, cfg: TrainConfig) -> list[dict]:
    """Parameter groups: every parameter at cfg.lr first (group 0, whose lr the logs report), then one group per
    dense layer that cfg.dense_lr_fan_in slows down (its weight and bias)."""
    slow = [m for m in model.modules() if isinstance(m, nn.Linear) and 0 < cfg.dense_lr_fan_in < m.in_features]
    slowed = {id(p) for m in slow for p in m.parameters()}
    groups = [{"params": [p for p in params if id(p) not in slowed]}]
    for m in slow:
        own = [p for p in m.parameters() if p.requires_grad]
        if own:
            groups.append({"params": own, "lr": cfg.lr * cfg.dense_lr_fan_in / m.in_features})
    return groups


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step LR schedule (call `.step()` after every optimiser step), or None for "none"."""
    if cfg.lr_schedule == "none":
        return None
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class Precision:
    """The training step's numeric setup, resolved once per run (as torchvision's reference scripts do in
    main()) and handed to every `train_one_epoch` / `evaluate` call.

    `scaler` carries fp16's dynamic loss scale from step to step and epoch to epoch; it is a disabled
    pass-through for fp32 and bf16 (bf16 has fp32's exponent range).
    """

    device: torch.device
    name: str  # resolved: "fp32" | "bf16" | "fp16", never "auto"
    channels_last: bool  # model and batches in torch.channels_last (perf.use_channels_last)
    scaler: torch.amp.GradScaler

    def autocast(self):
        return perf.autocast(self.name, self.device)

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model` on this device in this memory format (in place; a no-op once done)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return model.to(device=self.device, memory_format=fmt)


def setup_precision(precision: str = "auto", device=None) -> Precision:
    """Resolve `precision` for `device` (None: CUDA if available, else CPU) and build its one GradScaler."""
    dev = perf.resolve_device(device)
    name = perf.resolve_precision(precision, dev)
    return Precision(device=dev, name=name, channels_last=perf.use_channels_last(name, dev),
                     scaler=perf.grad_scaler(name, dev))


def fastest_precision(make_model: Callable[[], nn.Module], cfg: TrainConfig, input_size: int, device,
                      candidates: Sequence[str], *, steps: int = 8, rounds: int = 2) -> tuple[str, dict[str, float]]:
    """The candidate precision whose training step (`train_one_epoch` with `cfg`'s optimiser and batch size) runs
    fastest on `device` for a fresh `make_model()`, and each candidate's best images/s.

    Random batches; one warm-up step per candidate, then `rounds` of `steps` steps taken in turn, so drift in the
    machine's speed hits every candidate alike. Runs inside `torch.random.fork_rng`: the caller's random streams
    (its model initialisation, dropout, batch order) are exactly as if this had not run."""
    dev = perf.resolve_device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(0)
        x = torch.randn(cfg.batch_size, 1, input_size, input_size, device=dev)
        y = torch.randint(0, 7, (cfg.batch_size,), device=dev)
        runs = {}
        for name in candidates:
            prec = setup_precision(name, dev)
            model = prec.prepare(make_model())
            optimizer = make_optimizer(model, cfg)
            train_one_epoch(model, [(x, y)], optimizer, precision=prec)  # warm-up: kernels, allocator, autotuning
            runs[name] = (model, optimizer, prec)
        best = dict.fromkeys(candidates, 0.0)
        for _ in range(rounds):
            for name, (model, optimizer, prec) in runs.items():
                stats = train_one_epoch(model, [(x, y)] * steps, optimizer, precision=prec)
                best[name] = max(best[name], stats["images"] / stats["seconds"])
    return max(best, key=best.get), best


def _precision(precision: str | Precision, device, model: nn.Module) -> Precision:
    if isinstance(precision, Precision):
        if device is not None and perf.resolve_device(device) != precision.device:
            raise ValueError(f"device={device} differs from the Precision's device {precision.device}")
        return precision
    return setup_precision(precision, device if device is not None else next(model.parameters()).device)


def _weights(class_weights, device) -> torch.Tensor | None:
    if class_weights is None:
        return None
    if not isinstance(class_weights, torch.Tensor):
        class_weights = np.asarray(class_weights, dtype=np.float32)
    w = torch.as_tensor(class_weights, dtype=torch.float32, device=device)
    if w.dim() != 1:
        raise ValueError(f"class_weights must be 1-D (one weight per class), got shape {tuple(w.shape)}")
    return w


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 4 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"batch must be x [B, C, S, S] and y [B]; got x {tuple(x.shape)}, y {tuple(y.shape)}")


def train_one_epoch(model: nn.Module, batches: Iterable, optimizer: torch.optim.Optimizer, *,
                    l2: bool = True, class_weights=None, label_smoothing: float = 0.0,
                    precision: str | Precision = "auto", scheduler=None, device=None, grad_clip: float = 0.0) -> dict:
    """One pass over `batches`. Loss = CE (optionally class-weighted) + l2_penalty(model) when `l2`.

    `precision`: the run's `Precision` (its GradScaler's loss scale carries over to the next call), or a
    name resolved for `device` (default: the model's) with a GradScaler for this call only.
    Returns {"loss": mean CE per image (without the L2 term), "l2": last L2 penalty value,
    "acc": train accuracy, "images": count, "seconds": wall time, "lr": lr after the epoch}.
    The model is moved to the device in the memory format the precision wants (a no-op after the first call).
    """
    prec = _precision(precision, device, model)
    dev, cl, scaler = prec.device, prec.channels_last, prec.scaler
    prec.prepare(model)
    weight = _weights(class_weights, dev)
    model.train()
    loss_sum = torch.zeros((), device=dev)  # summed on device: no host sync per step
    correct = torch.zeros((), device=dev, dtype=torch.int64)
    n = 0
    pen = torch.zeros(())
    t0 = time.perf_counter()
    for x, y in batches:
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        _check_batch(x, y)
        x = perf.to_device(x.float(), dev, cl)
        y = y.to(dev, dtype=torch.int64, non_blocking=True)
        with prec.autocast():
            logits = model(x)
        # Loss in fp32: cross-entropy on bf16 logits loses precision for no speed gain.
        ce = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=label_smoothing)
        loss = ce
        if l2:
            pen = l2_penalty(model)
            loss = loss + pen
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        b = y.shape[0]
        loss_sum += ce.detach() * b
        correct += (logits.detach().argmax(1) == y).sum()
        n += b
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    if n == 0:
        raise ValueError("train_one_epoch: `batches` yielded no batch")
    return {"loss": float(loss_sum) / n, "l2": float(pen.detach()), "acc": int(correct) / n, "images": n,
            "seconds": seconds, "lr": optimizer.param_groups[0]["lr"]}


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, *, device=None, precision: str | Precision = "auto",
             class_weights=None) -> dict:
    """Eval-mode pass. Returns {"loss": mean CE, "acc", "y_true": int64[N], "y_pred": int64[N]} (numpy).

    `precision` as in `train_one_epoch` (evaluation never touches the GradScaler)."""
    prec = _precision(precision, device, model)
    dev, cl = prec.device, prec.channels_last
    prec.prepare(model)
    weight = _weights(class_weights, dev)
    model.eval()
    loss_sum, trues, preds = 0.0, [], []
    for x, y in batches:
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        _check_batch(x, y)
        x = perf.to_device(x.float(), dev, cl)
        y = y.to(dev, dtype=torch.int64)
        with prec.autocast():
            logits = model(x)
        loss_sum += float(F.cross_entropy(logits.float(), y, weight=weight, reduction="sum"))
        trues.append(y.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    if not trues:
        raise ValueError("evaluate: `batches` yielded no batch")
    y_true = np.concatenate(trues).astype(np.int64)
    y_pred = np.concatenate(preds).astype(np.int64)
    # Weighted CE with reduction="sum" is sum(w_y * l); keep "loss" a per-image mean either way.
    return {"loss": loss_sum / len(y_true), "acc": float((y_true == y_pred).mean()), "y_true": y_true, "y_pred": y_pred}


def classification_metrics(y_true, y_pred, num_classes: int = 7) -> dict:
    """acc, macro precision/recall/F1, per-class lists and the confusion matrix (rows = true class).

    Keys match one split of `final.json` in docs/DESIGN.md (without "loss", which the caller adds).
    Classes absent from both y_true and y_pred get precision/recall/F1 0 (zero_division=0).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal-length 1-D arrays")
    # Imported here: scikit-learn (with scipy) costs ~1.3 s to import, paid by every process that imports
    # this module (a sweep's trial driver and Train controller too), while only the final evaluation uses it.
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(num_classes))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "acc": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(mp),
        "macro_recall": float(mr),
        "macro_f1": float(mf),
        "per_class": {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "support": s.astype(int).tolist()},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
