"""The fixed cost of one sweep trial: the time a trial holds its slot outside its epochs and final evaluation,
split by Ray process, with Ray Train's default controller poll against the sweep's own.

`--trials` smoke-sized trials (the baseline CNN, 2 epochs on 256 faces: seconds of training) run one after
another through `python -m sweep.run --address` on a Ray instance this script starts, so that the State API can
read every Ray process's launch, start and end time afterwards. Twice: with RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=2
(Ray Train's default: the controller polls its workers every 2 s, and takes up a checkpointed report only
at a poll) and with the sweep's default (`sweep.run.TRAIN_POLL_S`). Each trial's cycle, median over trials:

  driver up        Tune launches the trial's driver process until it launches the TrainController
                   (a Python process, then `ray.train.torch`'s imports: torch)
  controller up    TrainController launched until the Train worker is launched (process, imports: torch,
                   placement group, the PlacementGroupCleaner and SynchronizationActor processes)
  worker overhead  worker launched until it ends, minus its epochs and final evaluation (process, torch,
                   process group, the first optimiser's torch._dynamo import, reports, checkpoints, shutdown)
  epochs + eval    the trial's own records (result.json `epoch_s`, final.json `eval_s`): the work
  wrap-up          worker ended until the driver ended (controller shutdown, confusion image, final.json)
  next launch      driver ended until Tune launches the next trial's driver

Run: `RAY_AUTH_MODE=disabled python benchmarks/trial_fixed_cost.py [--trials 5]` (real FER-2013 by default;
~5 min on a 2-core machine). Nothing else should run on the machine. The last line is the fixed cost per
trial (cycle minus epochs and evaluation) with the sweep's poll against Ray Train's default.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweep.run import TRAIN_POLL_ENV, TRAIN_POLL_S  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared/datasets/fer2013/icml_face_data.csv.gz"
RAY_DEFAULT_POLL_S = "2"  # ray.train.v2._internal.constants.DEFAULT_HEALTH_CHECK_INTERVAL_S
PHASES = ("driver up", "controller up", "worker overhead", "epochs + eval", "wrap-up", "next launch")


def run_sweep(data: str, trials: int, poll: str | None, tmp: Path) -> list[dict]:
    """One sweep of `trials` smoke trials in turn on a fresh Ray instance; each trial's phases in seconds."""
    import ray
    from ray.util.state import list_actors, list_workers

    # What sweep.run sets for a local instance; it cannot when it joins one (--address).
    os.environ.update(RAY_TRAIN_ENABLE_PREEMPTION_WATCHER="0", RAY_TRAIN_METRICS_ENABLED="0")
    ctx = ray.init(num_cpus=2, resources={"driver_slot": 4}, logging_level="ERROR", log_to_driver=False)
    try:
        grid = tmp / "probe.yaml"
        grid.write_text("scientific:\n  model.name: [baseline]\n")
        name = f"poll-{poll or 'sweep-default'}"
        env = {k: v for k, v in os.environ.items() if k != TRAIN_POLL_ENV}
        if poll is not None:
            env[TRAIN_POLL_ENV] = poll
        cmd = [sys.executable, "-m", "sweep.run", "--address", ctx.address_info["gcs_address"], "--grid", str(grid),
               "--profile", "smoke", "--data", data, "--seeds", str(trials), "--max-concurrent", "1",
               "--cpus-per-worker", "2", "--storage-path", str(tmp), "--name", name, "--no-report"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**env, "RAY_AUTH_MODE": "disabled"})
        if proc.returncode != 0:
            sys.exit(f"sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        names = {a.pid: a.class_name for a in list_actors(detail=True, limit=10_000, raise_on_missing_output=False)}
        procs: dict[str, list[tuple[float, float]]] = {}
        for w in list_workers(detail=True, limit=10_000, raise_on_missing_output=False):
            if w.pid in names and w.end_time_ms:
                procs.setdefault(names[w.pid], []).append((w.worker_launch_time_ms / 1e3, w.end_time_ms / 1e3))
    finally:
        ray.shutdown()
    work = []
    for trial in sorted((tmp / name).glob("run_trial_*")):  # trial index order = launch order (FIFO, one at a time)
        rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        final = json.loads((trial / "final.json").read_text())
        work.append(sum(r["epoch_s"] for r in rows if r.get("epoch_s") is not None) + final["eval_s"])
    drivers = sorted(procs["ImplicitFunc"])
    if len(drivers) != trials or len(work) != trials:
        sys.exit(f"expected {trials} trials, found {len(drivers)} driver processes and {len(work)} trial folders")

    def inside(cls: str, start: float, end: float) -> tuple[float, float]:
        (found,) = [p for p in procs[cls] if start <= p[0] <= end]
        return found

    out = []
    for i, (launch, end) in enumerate(drivers):
        controller = inside("TrainController", launch, end)
        worker = inside("RayTrainWorker", launch, end)
        nxt = drivers[i + 1][0] - end if i + 1 < len(drivers) else None
        out.append({"driver up": controller[0] - launch, "controller up": worker[0] - controller[0],
                    "worker overhead": worker[1] - worker[0] - work[i], "epochs + eval": work[i],
                    "wrap-up": end - worker[1], "next launch": nxt})
    return out


def summarise(label: str, trials: list[dict]) -> float:
    """Print the median of each phase; return the median fixed cost (the cycle minus epochs and evaluation)."""
    gap = statistics.median(t["next launch"] for t in trials[:-1])  # the last trial has no next one
    rows = [{**t, "next launch": gap if t["next launch"] is None else t["next launch"]} for t in trials]
    medians = {k: statistics.median(r[k] for r in rows) for k in PHASES}
    fixed = statistics.median(sum(v for k, v in r.items() if k != "epochs + eval") for r in rows)
    print(f"{label}: " + ", ".join(f"{k} {v:.1f} s" for k, v in medians.items())
          + f"; fixed cost {fixed:.1f} s per trial", flush=True)
    return fixed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--trials", type=int, default=5)
    args = p.parse_args()
    if args.trials < 2:
        sys.exit("--trials: at least 2 (the gap between trials is measured between them)")
    if args.data != "synthetic" and not Path(args.data).exists():
        sys.exit(f"{args.data}: FER-2013 not found (pass --data)")
    fixed = {}
    for label, poll in ((f"Ray Train's default poll ({RAY_DEFAULT_POLL_S} s)", RAY_DEFAULT_POLL_S),
                        (f"sweep.run's poll ({TRAIN_POLL_S} s)", None)):
        with tempfile.TemporaryDirectory() as tmp:
            fixed[label] = summarise(label, run_sweep(args.data, args.trials, poll, Path(tmp)))
    (base_label, base), (ours_label, ours) = fixed.items()
    print(f"fixed cost per trial: {ours:.1f} s with {ours_label} vs {base:.1f} s with {base_label}: "
          f"{ours / base:.2f}x")

if __name__ == "__main__":
    main()
