"""Epoch time of a paper-profile trial on one GPU, where it goes, and what the paper sweep costs.

For each model of the paper profile (64x64, batch 128, Adam, the study's augmentation) it times:

- trial epoch: one training epoch exactly as a Train worker runs it (sweep.batches: augmentation
  with albumentations on the worker's CPU thread, then the training step, precision "auto"), plus
  the validation pass;
- augmentation alone: the CPU side of that epoch;
- GPU step alone: the same number of batches already augmented and on the GPU, fp32 and "auto".

The images are random uint8 faces in FER-2013's split sizes (28,709 train, 3,589 validation):
speed does not depend on pixel values, and the real file is not needed. A fraction of an epoch is
timed after a warm-up and scaled to the full split. Then the paper sweep (`--grid ablation
--profile paper`: 5 study CNNs + vgg_fer, 40 epochs, 3 seeds, plus the leaky-protocol audit trial,
whose train split is 50,338 images) is priced in GPU-hours, one trial per GPU.

    python benchmarks/gpu_epoch.py [--fraction 0.25] [--models baseline,optimized]

Last line: the trial epoch against the GPU step alone for the same images (how much the CPU
input pipeline costs on this machine).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_data import build_augmenter, augment_batch, compute_norm, preprocess_images  # noqa: E402
from fer_models import build_model, evaluate, make_optimizer, make_scheduler, train_one_epoch  # noqa: E402
from fer_models.perf import prepare_model, resolve_precision, set_threads  # noqa: E402
from sweep.batches import eval_batches, train_batches  # noqa: E402
from sweep.config import TrialConfig  # noqa: E402
from sweep.profiles import PROFILES  # noqa: E402

N_TRAIN, N_VAL, N_TEST, N_LEAKY_TRAIN = 28_709, 3_589, 3_589, 50_338
STUDY = ["baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(name: str, x, y, vx, vy, norm, *, frac: float, device) -> dict:
    paper = PROFILES["paper"]
    cfg = TrialConfig.from_flat({**paper.settings, "model.name": name})
    n = int(len(x) * frac) // cfg.train.batch_size * cfg.train.batch_size
    out = {"model": name}
    for prec_name in ("auto", "fp32"):
        torch.manual_seed(0)
        prec = resolve_precision(prec_name if prec_name == "fp32" else cfg.train.precision, device)
        model = prepare_model(build_model(name, input_size=cfg.data.input_size), prec, device)
        opt = make_optimizer(model, cfg.train)
        sched = make_scheduler(opt, cfg.train, steps_per_epoch=-(-len(x) // cfg.train.batch_size))
        rng = np.random.default_rng(0)
        aug = build_augmenter(cfg.augment, seed=1)
        # GPU step alone: pre-augmented batches already on the device.
        order = rng.permutation(len(x))[:n]
        ready = [(bx.to(device), by.to(device)) for bx, by in
                 train_batches(x, y, order, batch_size=cfg.train.batch_size, augmenter=aug, preprocess=cfg.data.preprocess, norm=norm)]
        train_one_epoch(model, ready[:4], opt, precision=prec, device=device)  # warm-up (cuDNN autotune, allocator)
        sync(device)
        step = train_one_epoch(model, ready, opt, precision=prec, device=device, scheduler=sched)
        out[f"step_{prec_name}_img_s"] = step["images"] / step["seconds"]
        if prec_name != "auto":
            continue
        out["precision"] = prec  # what "auto" resolved to: the trial's precision
        # Augmentation alone (the worker's CPU side).
        t = time.perf_counter()
        for i in range(0, n, cfg.train.batch_size):
            augment_batch(x[order[i:i + cfg.train.batch_size]], aug)
        out["aug_img_s"] = n / (time.perf_counter() - t)
        # The trial's epoch: augmentation + transfer + step, then validation.
        t = time.perf_counter()
        tr = train_one_epoch(model, train_batches(x, y, order, batch_size=cfg.train.batch_size, augmenter=aug, preprocess=cfg.data.preprocess, norm=norm), opt,
                             precision=prec, device=device, scheduler=sched)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        evaluate(model, eval_batches(vx, vy, cfg.data.preprocess, norm), precision=prec, device=device)
        sync(device)
        val_s = time.perf_counter() - t
        out["trial_img_s"] = tr["images"] / train_s
        out["epoch_s"] = len(x) / out["trial_img_s"] + val_s  # full split, scaled from the timed fraction
        out["val_s"] = val_s
        out["step_only_epoch_s"] = len(x) / out["step_auto_img_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(STUDY + ["vgg_fer"]))
    p.add_argument("--fraction", type=float, default=0.25, help="share of the train split timed per model")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the Train worker (--cpus-per-worker)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = set_threads(args.threads)
    paper = PROFILES["paper"]
    size = paper.settings["data.input_size"]
    cfg0 = TrialConfig.from_flat(paper.settings)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (N_TRAIN + N_VAL, 48, 48), dtype=np.uint8)
    pre = preprocess_images(faces, cfg0.data.preprocess)
    x, vx = pre[:N_TRAIN], pre[N_TRAIN:]
    y, vy = rng.integers(0, 7, N_TRAIN), rng.integers(0, 7, N_VAL)
    norm = compute_norm(x)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU (CPU)"
    print(f"device: {gpu}; torch {torch.__version__}; {threads} CPU thread(s) per worker; {size}x{size}, "
          f"batch {cfg0.train.batch_size}; {args.fraction:.0%} of an epoch timed per model", flush=True)
    print(f"{'model':<14}{'precision':>10}{'step fp32':>11}{'step auto':>11}{'augment':>10}{'trial':>9}"
          f"{'epoch s':>9}{'step-only s':>13}   (images/s unless s)")
    rows = []
    for name in args.models.split(","):
        r = time_model(name, x, y, vx, vy, norm, frac=args.fraction, device=device)
        rows.append(r)
        print(f"{name:<14}{r['precision']:>10}{r['step_fp32_img_s']:>11.0f}{r['step_auto_img_s']:>11.0f}"
              f"{r['aug_img_s']:>10.0f}{r['trial_img_s']:>9.0f}{r['epoch_s']:>9.1f}{r['step_only_epoch_s']:>13.1f}",
              flush=True)

    epochs, seeds = paper.settings["train.epochs"], paper.seeds
    final_eval = {r["model"]: (N_TRAIN + N_VAL + N_TEST) * r["val_s"] / N_VAL for r in rows}
    trial_h = {r["model"]: (epochs * r["epoch_s"] + final_eval[r["model"]]) / 3600 for r in rows}
    grid_h = sum(trial_h.values()) * seeds
    audit_h = 0.0
    if "optimized" in trial_h:  # the leaky trial trains on 50,338 oversampled images
        audit_h = trial_h["optimized"] * N_LEAKY_TRAIN / N_TRAIN
    print(f"paper sweep, {len(rows)} models x {seeds} seeds x {epochs} epochs + leaky audit: "
          f"{grid_h + audit_h:.2f} GPU-hours at one trial per GPU "
          f"({', '.join(f'{m} {h * 60:.0f} min' for m, h in trial_h.items())} per trial)")
    trial_s = sum(r["epoch_s"] for r in rows)
    step_s = sum(r["step_only_epoch_s"] for r in rows)
    print(f"trial epoch vs GPU step alone, all models: {trial_s:.1f} s vs {step_s:.1f} s = {trial_s / step_s:.1f}x "
          f"(the CPU input pipeline's share of a trial epoch: {1 - step_s / trial_s:.0%})")


if __name__ == "__main__":
    main()
