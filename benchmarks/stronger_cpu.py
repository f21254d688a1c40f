"""Accuracy against wall time: the stronger CPU model beside the study's baseline, on the real FER-2013.

Both models train through the sweep trial's own loop (`sweep.loop.train_trial`: per-epoch checkpoints, the
best-validation weights evaluated once on test; no Ray) with one recipe, one after the other (the stronger one
first, so that its first epoch shows whether `--epochs` fits), each with every core (`--threads`). A schedule
needs its length up front, so `--epochs` is fixed per run: pick it from the first epoch's time so that a model
fits the budget (`--minutes` only marks the line in the table).

Printed per epoch: minutes since that model started, train and validation accuracy; then each model's test
accuracy (PrivateTest, the weights chosen on PublicTest) and its wall time. The last line: the stronger
model's test accuracy against the baseline's, both measured in this run.

Run: `python benchmarks/stronger_cpu.py [--model vgg_fer] [--epochs 28] [--minutes 60]`. Measured on a 2-core
host with avx512_bf16 (benchmarks/results/stronger_cpu_2core_bf16.txt): vgg_fer ~2.1 min per 48x48 epoch, 69.07%
PrivateTest after 28 epochs in 60.8 min. A 2-core AVX2-only host in fp32 is about 4x slower (pick
`--model vgg_fer_small`, ~4x cheaper per epoch, or fewer epochs). The first line prints which kind of host ran it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_data import compute_norm, load_dataset, make_splits, preprocess_images  # noqa: E402
from fer_models import set_threads  # noqa: E402
from sweep.config import TrialConfig  # noqa: E402
from sweep.loop import TrialData, train_trial  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared/datasets/fer2013/icml_face_data.csv.gz"
# One recipe for both models: flip, a small rotation and zoom (the study's geometry, without its photometric
# noise and occlusion, which cost accuracy at a short budget: benchmarks/results/recipe_probe_2core.txt), a
# short warm-up into cosine decay, label smoothing.
RECIPE = {"augment.hflip_p": 0.5, "augment.rotation_deg": 10.0, "augment.scale": 0.1,
          "augment.brightness_contrast": 0.0, "augment.noise_std": 0.0, "augment.occlusion_p": 0.0,
          "train.optimizer": "adam", "train.lr": 1e-3, "train.lr_schedule": "cosine", "train.warmup_epochs": 1.0,
          "train.label_smoothing": 0.1, "train.batch_size": 128}


def host() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    kind = "avx512_bf16" if "avx512_bf16" in flags else "no avx512_bf16 (AVX2-class, fp32)"
    return f"{platform.processor() or platform.machine()}, {kind}"


def prepare(data: str, input_size: int, limit: int | None) -> tuple[TrialData, dict]:
    cfg = TrialConfig.from_flat({"data.input_size": input_size})
    splits = make_splits(load_dataset(data), protocol="official", seed=0)
    faces = {}
    for k in ("train", "val", "test"):
        x, y = getattr(splits, f"{k}_x"), getattr(splits, f"{k}_y").astype(np.int64)
        if limit:
            x, y = x[:limit], y[:limit]
        faces[k] = (preprocess_images(x, cfg.data.preprocess), y)
    copies = splits.test_copy_in_train[:limit] if limit else splits.test_copy_in_train
    return TrialData(train=faces["train"], val=faces["val"], norm=compute_norm(faces["train"][0]),
                     final_splits=lambda: {"train": faces["train"], "test": faces["test"]},
                     test_copy_in_train=copies), faces


def run(model: str, data: TrialData, epochs: int, input_size: int, minutes: float) -> dict:
    flat = {**RECIPE, "model.name": model, "data.input_size": input_size, "train.epochs": epochs, "seed": 0}
    t0 = time.perf_counter()

    def report(metrics: dict, _checkpoint_dir) -> None:
        if "train/acc" in metrics:
            m = (time.perf_counter() - t0) / 60
            mark = "  <- past the budget" if m > minutes else ""
            print(f"{model:>14} epoch {metrics['epoch']:>3}/{epochs}  {m:6.1f} min  train {metrics['train/acc']:.2%}"
                  f"  val {metrics['val/acc']:.2%}{mark}", flush=True)

    final = train_trial(flat, data, report, device="cpu")
    wall = (time.perf_counter() - t0) / 60
    test = final["metrics"]["test"]["acc"]
    print(f"{model:>14}: test {test:.2%} (best epoch {final['best_epoch']}, val {final['metrics']['val']['acc']:.2%}),"
          f" {wall:.1f} min wall", flush=True)
    return {"test": test, "minutes": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default="vgg_fer", help="the stronger model (default vgg_fer)")
    ap.add_argument("--baseline", default="baseline", help="the reference model (default: the study's baseline)")
    ap.add_argument("--epochs", type=int, default=28, help="epochs per model (fixes the schedule's length)")
    ap.add_argument("--input-size", type=int, default=48)
    ap.add_argument("--minutes", type=float, default=60.0, help="the wall budget per model, marked in the table")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--limit", type=int, default=None, help="first N faces per split (a quick check, not a result)")
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"error: --data {args.data}: no such file (the real FER-2013 CSV)")
    import os

    threads = args.threads or os.cpu_count() or 1
    set_threads(threads)
    print(f"host: {host()}, {threads} torch thread(s); {args.epochs} epochs at {args.input_size}x{args.input_size}"
          + (f"; LIMITED to {args.limit} faces per split: not a result" if args.limit else ""), flush=True)
    data, _ = prepare(args.data, args.input_size, args.limit)
    # The stronger model first: its first epoch's time shows at once whether --epochs fits the budget.
    strong = run(args.model, data, args.epochs, args.input_size, args.minutes)
    ref = run(args.baseline, data, args.epochs, args.input_size, args.minutes)
    print(f"{args.model} test accuracy / {args.baseline} test accuracy, {args.epochs} epochs each "
          f"({strong['minutes']:.0f} vs {ref['minutes']:.0f} min): {strong['test'] / ref['test']:.2f}x")


if __name__ == "__main__":
    main()
