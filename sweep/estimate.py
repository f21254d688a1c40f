"""The plan's time estimate: a few real training steps per model, extrapolated to the sweep.

It times the project's own training step (fer_models.training.train_one_epoch) on random batches
of the trial's input size with the trial's threads, so it tracks the hardware it runs on.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch

from fer_models import build_model, make_optimizer, set_threads, train_one_epoch, tune_malloc

# A trial's time outside its epochs and final evaluation (driver, TrainController and worker start, data
# fetch, wrap-up): 15-16 s measured on the 2-core machine (benchmarks/results/trial_fixed_cost_2core.txt).
FIXED_TRIAL_S = 16.0
EVAL_FACTOR = 1.15  # validation each epoch + augmentation, relative to the training step alone


def images_per_second(model_name: str, overrides: dict, input_size: int, *, batch_size: int, threads: int,
                      steps: int = 2, copies: int = 1) -> float:
    """Training-step throughput of one copy while `copies` copies train at once, as concurrent trials do
    (they share memory bandwidth and caches: two 1-thread trials on a 2-core CPU each ran ~17% slower
    than one alone). Batches are capped at 64 images: the calibration is part of every sweep's fixed
    cost (warm-up + 3 steps of 128 took ~25 s for the quick profile's six models)."""
    previous = torch.get_num_threads()
    set_threads(threads)
    tune_malloc()  # as the trials do (sweep.loop.train_trial), or the estimate prices the default allocator
    try:
        # torch ops release the GIL, so Python threads train the copies in parallel.
        with ThreadPoolExecutor(copies) as pool:
            rates = list(pool.map(lambda _: _train_rate(model_name, overrides, input_size, min(batch_size, 64), steps),
                                  range(copies)))
        return sum(rates) / len(rates)
    finally:
        torch.set_num_threads(previous)


def _train_rate(model_name: str, overrides: dict, input_size: int, batch_size: int, steps: int) -> float:
    from fer_models.training import TrainConfig

    gen = torch.Generator().manual_seed(0)
    model = build_model(model_name, input_size=input_size, **overrides)
    opt = make_optimizer(model, TrainConfig())
    x = torch.rand(batch_size, 1, input_size, input_size, generator=gen)
    y = torch.randint(0, 7, (batch_size,), generator=gen)
    train_one_epoch(model, [(x, y)], opt)  # warm-up: allocator, oneDNN kernels for this shape
    stats = train_one_epoch(model, [(x, y)] * steps, opt)
    return stats["images"] / stats["seconds"]


def asha_expected(epochs: int, grace: int = 1, reduction: float = 2) -> tuple[float, float]:
    """(expected epochs per trial, fraction of trials that finish) when ASHA keeps the best 1/reduction at each
    rung (grace * reduction**k epochs, below `epochs`), as synchronous successive halving would. Ray's async ASHA
    lets a trial that reaches an empty or small rung go on, so with few trials the real cost lies above this."""
    done, expected, alive, rung = 0, 0.0, 1.0, grace
    while rung < epochs:
        expected += alive * (rung - done)
        done, alive, rung = rung, alive / reduction, rung * reduction
    return expected + alive * (epochs - done), alive


def estimate_seconds(configs, prepared, resources, max_concurrent, asha: dict | None = None) -> str:
    """Human-readable estimate for `configs` (TrialConfig list), or why there is none. With `asha` (a search's
    `asha:` block) the estimate counts the epochs ASHA is expected to leave (`asha_expected`)."""
    if resources.use_gpu and not torch.cuda.is_available():
        return "not measured (GPU trials; no GPU on this machine to calibrate on)"
    if configs[0].data.limit_per_split and configs[0].data.limit_per_split <= 512:
        return f"seconds per trial plus ~{FIXED_TRIAL_S:.0f} s of Ray start-up each (smoke-sized data)"
    from sweep.trial import data_key

    slots = max(1, min(max_concurrent, len(configs)))
    copies = 1 if resources.use_gpu else max(1, min(slots, (os.cpu_count() or 1) // resources.cpus_per_worker))
    speeds, trial_s, full_s = {}, [], []
    for cfg in configs:
        key = (cfg.model.name, tuple(sorted(cfg.model.overrides.items())), cfg.data.input_size)
        if key not in speeds:
            speeds[key] = images_per_second(cfg.model.name, dict(cfg.model.overrides), cfg.data.input_size,
                                            batch_size=cfg.train.batch_size, threads=resources.cpus_per_worker,
                                            copies=copies) * resources.workers
        n_train = prepared[data_key(cfg.data)]["counts"]["train"]
        epochs, finishing = cfg.train.epochs, 1.0
        if asha is not None:
            epochs, finishing = asha_expected(cfg.train.epochs, asha.get("grace_period", 1),
                                              asha.get("reduction_factor", 2))
        # + the final evaluation over train, val and test: ~1.25 x n_train forward passes at ~1/2 the cost
        # of a training step each (measured: 600 vs 290 images/s for the baseline on 2 threads); only the
        # trials ASHA lets finish run it
        trial_s.append(FIXED_TRIAL_S + (epochs * EVAL_FACTOR + 0.6 * finishing) * n_train / speeds[key])
        full_s.append(FIXED_TRIAL_S + (cfg.train.epochs * EVAL_FACTOR + 0.6) * n_train / speeds[key])
    head = (f"~{_wall(trial_s, slots) / 60:.0f} min ({sum(trial_s) / 3600:.2f} trial-hours over {slots} concurrent "
            f"slots; from a {len(speeds)}-model calibration of the training step, {copies} at once)")
    if asha is None:
        return head
    return (f"{head} if ASHA stops trials as successive halving would (its async rungs let early trials go on, so "
            f"expect more); ~{_wall(full_s, slots) / 60:.0f} min if it stopped none")


def _wall(trial_s: list[float], slots: int) -> float:
    """Tune starts trials in grid order as slots free up: the wall time is the busiest slot's, which a long
    trial (the leaky audit: 1.75x the training faces) can dominate."""
    busy = [0.0] * slots
    for seconds in trial_s:
        busy[busy.index(min(busy))] += seconds
    return max(busy)
