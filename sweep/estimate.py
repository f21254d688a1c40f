"""The plan's time estimate: a few real training steps per model, extrapolated to the sweep.

It times the project's own training step (fer_models.training.train_one_epoch) on random batches
of the trial's input size with the trial's threads, so it tracks the hardware it runs on.
"""
from __future__ import annotations

import time

import torch

from fer_models import build_model, make_optimizer, set_threads, train_one_epoch

FIXED_TRIAL_S = 12.0  # measured Tune + TorchTrainer start-up per trial (../shared/RAY_NOTES.md)
EVAL_FACTOR = 1.15  # validation each epoch + augmentation, relative to the training step alone


def images_per_second(model_name: str, overrides: dict, input_size: int, batch_size: int, threads: int,
                      steps: int = 2) -> float:
    """Training-step throughput; batches capped at 64 images: the plan's calibration is part of every
    sweep's fixed cost (warm-up + 3 steps of 128 took ~25 s for the quick profile's six models)."""
    previous = torch.get_num_threads()
    set_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_model(model_name, input_size=input_size, **overrides)
        from fer_models.training import TrainConfig

        opt = make_optimizer(model, TrainConfig())
        batch_size = min(batch_size, 64)
        x = torch.rand(batch_size, 1, input_size, input_size)
        y = torch.randint(0, 7, (batch_size,))
        train_one_epoch(model, [(x, y)], opt)  # warm-up: allocator, oneDNN kernels for this shape
        stats = train_one_epoch(model, [(x, y)] * steps, opt)
        return stats["images"] / stats["seconds"]
    finally:
        torch.set_num_threads(previous)


def estimate_seconds(configs, prepared, resources, max_concurrent) -> str:
    """Human-readable estimate for `configs` (TrialConfig list), or why there is none."""
    if resources.use_gpu and not torch.cuda.is_available():
        return "not measured (GPU trials; no GPU on this machine to calibrate on)"
    if configs[0].data.limit_per_split and configs[0].data.limit_per_split <= 512:
        return "seconds per trial plus ~12 s of Ray start-up each (smoke-sized data)"
    from sweep.trial import data_key

    speeds, total = {}, 0.0
    for cfg in configs:
        key = (cfg.model.name, tuple(sorted(cfg.model.overrides.items())), cfg.data.input_size)
        if key not in speeds:
            speeds[key] = images_per_second(cfg.model.name, dict(cfg.model.overrides), cfg.data.input_size,
                                            cfg.train.batch_size, resources.cpus_per_worker) * resources.workers
        n_train = prepared[data_key(cfg.data)]["counts"]["train"]
        # + the final forward-only pass over train, val and test (~1/3 of a training step per image)
        total += FIXED_TRIAL_S + (cfg.train.epochs * EVAL_FACTOR + 0.45) * n_train / speeds[key]
    wall = total / max(1, min(max_concurrent, len(configs)))
    return (f"~{wall / 60:.0f} min ({total / 3600:.2f} trial-hours over {min(max_concurrent, len(configs))} "
            f"concurrent slots; from a {len(speeds)}-model calibration of the training step)")
