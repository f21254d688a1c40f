"""A readable line per trial and epoch while a sweep runs (a Ray Tune callback on the driver)."""
from __future__ import annotations

import sys
from typing import Callable

from ray.tune import Callback



class EpochLines(Callback):
    """`label(config)` names a trial (`sweep.run.trial_label`: its variant as the report names it, and seed)."""

    def __init__(self, label: Callable[[dict], str], stream=None):
        self.label = label
        self.stream = stream  # None: whatever sys.stdout is when a line is printed (the quiet console's filter)

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(f"[{trial.trial_id}] start   {self.label(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        label = self.label(trial.config)
        if "final/test/acc" in result:
            self._print(f"[{trial.trial_id}] final   {label}: best epoch {result.get('best_epoch')} "
                        f"train {result['final/train/acc']:.2%}  val {result['final/val/acc']:.2%}  "
                        f"test {result['final/test/acc']:.2%}")
        elif "train/loss" in result:
            self._print(
                f"[{trial.trial_id}] epoch {result['epoch']:>3}/{trial.config.get('train.epochs', '?')} {label}: "
                f"train loss {result['train/loss']:.3f} acc {result['train/acc']:.2%} | "
                f"val loss {result['val/loss']:.3f} acc {result['val/acc']:.2%} | "
                f"{result['epoch_s']:.0f} s, {result['train/images_per_s']:.0f} img/s")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._print(f"[{trial.trial_id}] done    {self.label(trial.config)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(f"[{trial.trial_id}] ERROR   {self.label(trial.config)}: see {trial.local_path}/error.txt")
