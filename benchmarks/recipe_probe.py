"""Where does the pipeline lose learning speed? Paired runs on the real FER-2013 that change one thing at a time.

Every arm trains the project's own model (`fer_models.build_model`) with the project's own batches and
step (`sweep.batches.train_batches`, `fer_models.train_one_epoch`), without Ray, on the official split,
same seed, same data order; it prints validation accuracy (PublicTest) after every epoch. Arms run two at
a time, one thread each, as a sweep's trials do on a 2-core machine.

    python benchmarks/recipe_probe.py                       # the default arms (see ARMS), 40x40, 4 epochs
    python benchmarks/recipe_probe.py --arms base flip_only --epochs 6 --input-size 32

An arm is a set of overrides of the reference recipe (`REFERENCE`):
  aug:      "policy" (the study's full policy, fer_data.AugmentConfig()) | "flip" (flip only)
  minmax:   True (the study's per-image min-max stretch, Eq. 1) | False (x / 255 of the resized face)
  schedule: "cosine" (per-step cosine to 0 over the run) | "none" (constant) ; warmup in epochs
  lr, model, label_smoothing, batch
The last line compares the best arm's final validation accuracy with the reference arm's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FER_CSV = Path(__file__).resolve().parents[2] / "shared/datasets/fer2013/icml_face_data.csv.gz"

REFERENCE = {"model": "baseline", "aug": "policy", "minmax": True, "schedule": "cosine", "warmup": 0.0,
             "lr": 1e-3, "label_smoothing": 0.0, "batch": 128}
ARMS = {
    "base": {},  # the project's recipe as it shipped
    "flip_only": {"aug": "flip"},
    "flip_no_minmax": {"aug": "flip", "minmax": False},
    "flip_const_lr": {"aug": "flip", "schedule": "none"},
    "flip_no_minmax_const": {"aug": "flip", "minmax": False, "schedule": "none"},
    "flip_lr3e-3_warm": {"aug": "flip", "lr": 3e-3, "warmup": 0.5},
}


def load(input_size: int, minmax: bool):
    import torch

    from fer_data import PreprocessConfig, load_dataset, make_splits, preprocess_images

    splits = make_splits(load_dataset(str(FER_CSV)), "official")

    def prep(x):
        if minmax:
            return preprocess_images(x, PreprocessConfig(input_size=input_size))
        t = torch.from_numpy(x).float()[:, None]  # resize only, then x / 255 in to_model_input
        t = torch.nn.functional.interpolate(t, size=(input_size, input_size), mode="bilinear", align_corners=False)
        return t[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()

    return prep(splits.train_x), splits.train_y, prep(splits.val_x), splits.val_y


def run_arm(name: str, overrides: dict, epochs: int, input_size: int, seed: int) -> dict:
    import torch

    from fer_data import AugmentConfig
    from fer_models import build_model
    from fer_models.perf import set_threads
    from fer_models.training import TrainConfig, evaluate, make_optimizer, make_scheduler, train_one_epoch
    from sweep.batches import epoch_stream, eval_batches, on_device, train_batches
    from sweep.config import TrialConfig

    set_threads(1)
    a = {**REFERENCE, **overrides}
    tx, ty, vx, vy = load(input_size, a["minmax"])
    tx, ty = on_device(tx, ty)
    aug = AugmentConfig() if a["aug"] == "policy" else replace(AugmentConfig.none(), hflip_p=0.5)
    cfg = TrialConfig.from_flat({"data.input_size": input_size, "model.name": a["model"]})
    train = TrainConfig(lr=a["lr"], epochs=epochs, lr_schedule=a["schedule"], warmup_epochs=a["warmup"],
                        label_smoothing=a["label_smoothing"], batch_size=a["batch"], precision="auto")
    torch.manual_seed(seed)
    model = build_model(a["model"], input_size=input_size)
    opt = make_optimizer(model, train)
    sched = make_scheduler(opt, train, steps_per_epoch=-(-len(tx) // train.batch_size))
    curve, secs = [], []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order, generator = epoch_stream(seed, epoch, 0, len(tx))  # the trial's stream: paired across arms
        train_one_epoch(model, train_batches(tx, ty, order, batch_size=train.batch_size, augment=aug,
                                             generator=generator, preprocess=cfg.data.preprocess, norm=None), opt,
                        scheduler=sched, label_smoothing=train.label_smoothing, device="cpu")
        va = evaluate(model, eval_batches(vx, vy, cfg.data.preprocess, None), device="cpu")
        curve.append(va["acc"])
        secs.append(time.perf_counter() - t0)
        print(f"  {name:22s} epoch {epoch + 1}: val {100 * va['acc']:.1f}%  ({secs[-1]:.0f} s)", flush=True)
    return {"name": name, "curve": curve, "s_per_epoch": float(np.median(secs))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--input-size", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=2)
    args = p.parse_args(argv)
    if not FER_CSV.exists():
        print(f"skipped: the real FER-2013 is not at {FER_CSV}")
        return 0
    print(f"recipe probe: {args.input_size}x{args.input_size}, {args.epochs} epochs, seed {args.seed}, "
          f"{args.parallel} arms at once x 1 thread; reference {REFERENCE}")
    with mp.get_context("spawn").Pool(args.parallel) as pool:
        jobs = [pool.apply_async(run_arm, (n, ARMS[n], args.epochs, args.input_size, args.seed)) for n in args.arms]
        results = [j.get() for j in jobs]
    print("\n| arm | overrides | val acc by epoch (%) | s/epoch |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {ARMS[r['name']] or '(reference)'} | "
              f"{', '.join(f'{100 * c:.1f}' for c in r['curve'])} | {r['s_per_epoch']:.0f} |")
    ref = next((r for r in results if r["name"] == "base"), results[0])
    best = max(results, key=lambda r: r["curve"][-1])
    print(f"best arm {best['name']}: final val {100 * best['curve'][-1]:.1f}% vs reference {ref['name']} "
          f"{100 * ref['curve'][-1]:.1f}%: {100 * (best['curve'][-1] - ref['curve'][-1]):+.1f} pp")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
