"""Overhead of the sweep machinery, and the concurrency default, measured in one run.

The trials: one model (`--model`, default the study's baseline) x `--seeds` seeds, so every trial costs
the same and two at once pair up evenly; the quick profile's budget (40x40) and `--epochs`.

1. bare:  the trials run one after another in this process through the sweep trial's own training loop
          (`sweep.loop.train_trial`: the same data, model code, epochs, augmentation, checkpoints and final
          evaluation; no Ray), with 2 torch threads: the script a user would write instead of a sweep.
2. sweep: the same trials through `python -m sweep.run`, one at a time, 1 worker x 2 CPUs (like for
          like with the bare loop: the cost of the machinery alone).
3. sweep, 2 at once: the same trials as two concurrent trials of 1 worker x 1 CPU each, which is what
          `sweep.run` picks by default on a 2-core machine (the faster of 2 and 3).

Run: `RAY_AUTH_MODE=disabled python benchmarks/sweep_overhead.py [--epochs 2] [--seeds 2]`
(on the real FER-2013; about 20 minutes on a 2-core machine at the defaults: 3-minute trials). Printed: where the
extra time of 2 goes (the sweep's own start-up, each trial's time outside training and evaluation,
how much slower the epochs and the final evaluation ran inside Ray), then two ratios; the last line
is `sweep.run` at its default concurrency against the bare loop.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_data import compute_norm, load_dataset, make_splits, preprocess_images  # noqa: E402
from fer_models import set_threads  # noqa: E402
from sweep.config import TrialConfig  # noqa: E402
from sweep.loop import TrialData, train_trial  # noqa: E402
from sweep.profiles import PROFILES  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared/datasets/fer2013/icml_face_data.csv.gz"


def bare_trials(data: str, model_name: str, seeds: int, epochs: int, threads: int) -> tuple[float, dict]:
    """Every trial in turn, in this process: a sweep trial's own loop (`sweep.loop.train_trial`: per-epoch
    checkpoints and the final evaluation included), minus Ray. Returns the wall time and the seconds spent
    in epochs (train + validation, the same `epoch_s` the sweep's results hold) and in final evaluations."""
    t0 = time.perf_counter()
    parts = {"epochs_s": 0.0, "eval_s": 0.0, "trials_s": 0.0}
    set_threads(threads)
    flat0 = {**PROFILES["quick"].settings, "train.epochs": epochs}
    cfg0 = TrialConfig.from_flat(flat0)
    splits = make_splits(load_dataset(data), protocol="official", seed=0)
    pre = {k: preprocess_images(getattr(splits, f"{k}_x"), cfg0.data.preprocess) for k in ("train", "val", "test")}
    ys = {k: getattr(splits, f"{k}_y").astype(np.int64) for k in ("train", "val", "test")}
    faces = {k: (pre[k], ys[k]) for k in ("train", "val", "test")}
    trial_data = TrialData(train=faces["train"], val=faces["val"], norm=compute_norm(pre["train"]),
                           final_splits=lambda: {"train": faces["train"], "test": faces["test"]},
                           test_copy_in_train=splits.test_copy_in_train)
    print(f"bare: data ready in {time.perf_counter() - t0:.1f} s", flush=True)
    for seed in range(seeds):
        t1 = time.perf_counter()
        rows = []
        final = train_trial({**flat0, "model.name": model_name, "seed": seed}, trial_data,
                            lambda metrics, _checkpoint_dir: rows.append(metrics))
        parts["epochs_s"] += sum(r["epoch_s"] for r in rows if "epoch_s" in r)
        parts["eval_s"] += final["eval_s"]
        parts["trials_s"] += time.perf_counter() - t1
        print(f"bare: {model_name} seed {seed}, {epochs} epoch(s) in {time.perf_counter() - t1:.1f} s "
              f"(best val {final['metrics']['val']['acc']:.2%})", flush=True)
    return time.perf_counter() - t0, parts


def sweep_trials(data: str, model_name: str, seeds: int, epochs: int, concurrent: int,
                 cpus_per_worker: int) -> tuple[float, dict]:
    """`python -m sweep.run` on the same trials. Returns the wall time and, from the trials' own records,
    seconds in epochs (result.json's epoch_s), final evaluations and whole trials (final.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "bench.yaml"
        # The model fixed, not an axis (so no profile extra model joins): every trial costs the same. A grid
        # needs an axis: the quick profile's input size, as a one-value axis.
        size = PROFILES["quick"].settings["data.input_size"]
        grid.write_text(f"scientific:\n  data.input_size: [{size}]\nfixed:\n  model.name: {model_name}\n")
        cmd = [sys.executable, "-m", "sweep.run", "--grid", str(grid), "--profile", "quick", "--data", data,
               "--seeds", str(seeds), "--epochs", str(epochs), "--max-concurrent", str(concurrent), "--cpus-per-worker",
               str(cpus_per_worker), "--storage-path", tmp, "--name", "bench", "--no-report", "--num-cpus", "2"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        for line in proc.stdout.splitlines():
            if line.startswith(("  estimated", "data:")) or " final " in line:
                print("  sweep| " + line.strip(), flush=True)
        parts = {"epochs_s": 0.0, "eval_s": 0.0, "trials_s": 0.0}
        for trial in (Path(tmp) / "bench").glob("run_trial_*"):
            rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
            final = json.loads((trial / "final.json").read_text())
            parts["epochs_s"] += sum(r["epoch_s"] for r in rows if r.get("epoch_s") is not None)
            parts["eval_s"] += final["eval_s"]
            parts["trials_s"] += final["wall_s"]
    return wall, parts


def breakdown(bare: float, bare_parts: dict, sweep: float, sweep_parts: dict, n: int) -> None:
    """Where the sweep's extra wall time goes (1 trial at a time, so trial times add up)."""
    def outside(p: dict) -> float:
        return p["trials_s"] - p["epochs_s"] - p["eval_s"]

    rows = [
        ("start-up and wrap-up of the sweep (outside any trial)", bare - bare_parts["trials_s"],
         sweep - sweep_parts["trials_s"]),
        (f"per trial, outside training and evaluation (x{n})", outside(bare_parts), outside(sweep_parts)),
        ("epochs (train + validation)", bare_parts["epochs_s"], sweep_parts["epochs_s"]),
        ("final evaluation (train, val, test)", bare_parts["eval_s"], sweep_parts["eval_s"]),
    ]
    print(f"{'where the time goes':58s} {'bare':>8s} {'sweep':>8s} {'extra':>8s}")
    for label, b, s_ in rows:
        print(f"{label:58s} {b:7.1f}s {s_:7.1f}s {s_ - b:+7.1f}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--model", default="baseline")
    p.add_argument("--seeds", type=int, default=2, help="trials: the model with seeds 0..N-1")
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    if args.data != "synthetic" and not Path(args.data).exists():
        sys.exit(f"{args.data}: FER-2013 not found (pass --data)")
    n = args.seeds
    bare, bare_parts = bare_trials(args.data, args.model, n, args.epochs, threads=2)
    print(f"bare loop, {n} trials in turn, 2 threads: {bare:.1f} s", flush=True)
    serial, serial_parts = sweep_trials(args.data, args.model, n, args.epochs, concurrent=1, cpus_per_worker=2)
    print(f"sweep.run, 1 trial at a time x 2 CPUs: {serial:.1f} s", flush=True)
    parallel, _ = sweep_trials(args.data, args.model, n, args.epochs, concurrent=2, cpus_per_worker=1)
    print(f"sweep.run, 2 trials at once x 1 CPU: {parallel:.1f} s "
          f"({serial / parallel:.2f}x the throughput of 1 x 2 CPUs)", flush=True)
    breakdown(bare, bare_parts, serial, serial_parts, n)
    minutes = bare / n / 60
    print(f"machinery alone, like for like (1 trial at a time x 2 CPUs vs the bare loop): {serial / bare - 1:+.1%}")
    # sweep.run's default on a 2-core machine: --cpus-per-worker 1, as many trials at once as fit (2).
    print(f"sweep.run at its default (2 trials at once x 1 CPU) vs the bare loop one after another: "
          f"{parallel / bare - 1:+.1%} (bare {bare:.0f} s, sweep {parallel:.0f} s, {n} trials of ~{minutes:.1f} min)")


if __name__ == "__main__":
    main()
