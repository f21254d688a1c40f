"""Epoch time of a paper-profile trial on one GPU (or this CPU), where it goes, and what the paper sweep costs.

For each model of the paper profile (64x64, batch 128, Adam, the study's augmentation) it times, on the
device a Train worker would use (CUDA if visible, else the CPU with --threads threads):

- trial epoch: one training epoch exactly as a Train worker runs it (sweep.batches: faces resident on the
  device, each batch indexed and augmented there with fer_data.augment_images, then the training step,
  precision "auto"), plus the validation pass;
- augmentation alone: the batches of that epoch (index, augment, standardise) without the step;
- step alone: the same batches already made, fp32 and "auto";
- other: the trial epoch minus the two (Python, optimiser, the input's layout change, validation).

The images are random uint8 faces in FER-2013's split sizes (28,709 train, 3,589 validation):
speed does not depend on pixel values, and the real file is not needed. A fraction of an epoch is
timed after a warm-up and scaled to the full split. Then the paper sweep (`--grid ablation
--profile paper`: 5 study CNNs + vgg_fer, 40 epochs, 3 seeds, plus the leaky-protocol audit trial,
whose train split is 50,338 images) is priced in device-hours, one trial per device.

    python benchmarks/gpu_epoch.py [--fraction 0.25] [--models baseline,optimized]
    python benchmarks/gpu_epoch.py --models baseline --size 32 --fraction 0.1   # a short CPU run

Last line: the trial epoch against the step alone for the same images (1.0x: the input pipeline is free).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_data import compute_norm, preprocess_images  # noqa: E402
from fer_models import build_model, evaluate, make_optimizer, make_scheduler, train_one_epoch  # noqa: E402
from fer_models.perf import host_kind, prepare_model, resolve_precision, set_threads, tune_malloc  # noqa: E402
from sweep.batches import eval_batches, on_device, train_batches  # noqa: E402
from sweep.config import TrialConfig  # noqa: E402
from sweep.profiles import PROFILES  # noqa: E402

N_TRAIN, N_VAL, N_TEST, N_LEAKY_TRAIN = 28_709, 3_589, 3_589, 50_338
STUDY = ["baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(name: str, x, y, vx, vy, norm, *, frac: float, device, size: int) -> dict:
    paper = PROFILES["paper"]
    cfg = TrialConfig.from_flat({**paper.settings, "model.name": name, "data.input_size": size})
    bs = cfg.train.batch_size
    n = int(len(x) * frac) // bs * bs
    out = {"model": name}

    def batches(order, seed=1):
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        return train_batches(x, y, order, batch_size=bs, augment=cfg.augment, generator=g,
                             preprocess=cfg.data.preprocess, norm=norm)

    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n].to(device)
    # Augmentation alone: the epoch's batches made on the device, no step.
    list(batches(order[:4 * bs]))  # warm-up
    sync(device)
    t = time.perf_counter()
    ready = list(batches(order))  # each batch a fresh tensor
    sync(device)
    out["aug_img_s"] = n / (time.perf_counter() - t)
    for prec_name in ("auto", "fp32"):
        torch.manual_seed(0)
        prec = resolve_precision(prec_name if prec_name == "fp32" else cfg.train.precision, device)
        model = prepare_model(build_model(name, input_size=size), prec, device)
        opt = make_optimizer(model, cfg.train)
        sched = make_scheduler(opt, cfg.train, steps_per_epoch=-(-len(x) // bs))
        train_one_epoch(model, ready[:4], opt, precision=prec, device=device)  # warm-up (cuDNN autotune, allocator)
        sync(device)
        # Step alone: the batches already made.
        step = train_one_epoch(model, ready, opt, precision=prec, device=device, scheduler=sched)
        out[f"step_{prec_name}_img_s"] = step["images"] / step["seconds"]
        if prec_name != "auto":
            continue
        out["precision"] = prec  # what "auto" resolved to: the trial's precision
        # The trial's epoch: batches made on the fly + step, then validation.
        t = time.perf_counter()
        tr = train_one_epoch(model, batches(order, seed=2), opt, precision=prec, device=device, scheduler=sched)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        evaluate(model, eval_batches(vx, vy, cfg.data.preprocess, norm), precision=prec, device=device)
        sync(device)
        val_s = time.perf_counter() - t
        out["trial_img_s"] = tr["images"] / train_s
        out["epoch_s"] = len(x) / out["trial_img_s"] + val_s  # full split, scaled from the timed fraction
        out["val_s"] = val_s
    out["step_only_epoch_s"] = len(x) / out["step_auto_img_s"]
    out["aug_epoch_s"] = len(x) / out["aug_img_s"]
    out["other_epoch_s"] = out["epoch_s"] - out["step_only_epoch_s"] - out["aug_epoch_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(STUDY + ["vgg_fer"]))
    p.add_argument("--fraction", type=float, default=0.25, help="share of the train split timed per model")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the Train worker (--cpus-per-worker)")
    p.add_argument("--size", type=int, default=PROFILES["paper"].settings["data.input_size"],
                   help="input side in pixels (default: the paper profile's)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = set_threads(args.threads)
    tune_malloc()  # as a trial process does (sweep.loop.train_trial)
    paper = PROFILES["paper"]
    size = args.size
    cfg0 = TrialConfig.from_flat({**paper.settings, "data.input_size": size})
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (N_TRAIN + N_VAL, 48, 48), dtype=np.uint8)
    pre = preprocess_images(faces, cfg0.data.preprocess)
    y, vy = rng.integers(0, 7, N_TRAIN), rng.integers(0, 7, N_VAL)
    norm = compute_norm(pre[:N_TRAIN])
    (x, y), (vx, vy) = on_device(pre[:N_TRAIN], y, device), on_device(pre[N_TRAIN:], vy, device)  # as a trial does
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"no GPU ({host_kind()})"
    print(f"device: {gpu}; torch {torch.__version__}; {threads} CPU thread(s) per worker; {size}x{size}, "
          f"batch {cfg0.train.batch_size}; {args.fraction:.0%} of an epoch timed per model", flush=True)
    print(f"{'model':<14}{'precision':>10}{'step fp32':>11}{'step auto':>11}{'augment':>10}{'trial':>9}"
          f"{'epoch s':>9}{'= step s':>10}{'+ augment s':>13}{'+ other s':>11}   (images/s unless s)")
    rows = []
    for name in args.models.split(","):
        r = time_model(name, x, y, vx, vy, norm, frac=args.fraction, device=device, size=size)
        rows.append(r)
        print(f"{name:<14}{r['precision']:>10}{r['step_fp32_img_s']:>11.0f}{r['step_auto_img_s']:>11.0f}"
              f"{r['aug_img_s']:>10.0f}{r['trial_img_s']:>9.0f}{r['epoch_s']:>9.1f}{r['step_only_epoch_s']:>10.1f}"
              f"{r['aug_epoch_s']:>13.1f}{r['other_epoch_s']:>11.1f}", flush=True)

    epochs, seeds = paper.settings["train.epochs"], paper.seeds
    final_eval = {r["model"]: (N_TRAIN + N_VAL + N_TEST) * r["val_s"] / N_VAL for r in rows}
    trial_h = {r["model"]: (epochs * r["epoch_s"] + final_eval[r["model"]]) / 3600 for r in rows}
    grid_h = sum(trial_h.values()) * seeds
    audit_h = 0.0
    if "optimized" in trial_h:  # the leaky trial trains on 50,338 oversampled images
        audit_h = trial_h["optimized"] * N_LEAKY_TRAIN / N_TRAIN
    print(f"paper sweep, {len(rows)} models x {seeds} seeds x {epochs} epochs + leaky audit: "
          f"{grid_h + audit_h:.2f} device-hours at one trial per device "
          f"({', '.join(f'{m} {h * 60:.0f} min' for m, h in trial_h.items())} per trial)")
    trial_s = sum(r["epoch_s"] for r in rows)
    step_s = sum(r["step_only_epoch_s"] for r in rows)
    aug_s = sum(r["aug_epoch_s"] for r in rows)
    print(f"trial epoch vs step alone, all models: {trial_s:.1f} s vs {step_s:.1f} s = {trial_s / step_s:.2f}x "
          f"(augmentation {aug_s / trial_s:.0%} of the trial epoch)")


if __name__ == "__main__":
    main()
