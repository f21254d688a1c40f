"""A readable line per trial and epoch while a sweep runs (a Ray Tune callback on the driver)."""
from __future__ import annotations

import sys

from ray.tune import Callback

from sweep.params import flatten_params


def trial_label(config: dict) -> str:
    cfg = flatten_params(config or {})
    label = str(cfg.get("model.name", "?"))
    if str(cfg.get("data.protocol", "official")) != "official":
        label += f" [{cfg['data.protocol']}]"
    if str(cfg.get("data.balance", "none")) != "none":
        label += f" [{cfg['data.balance']}]"
    sampled = [f"{k.split('.')[-1]}={v:.3g}" for k, v in cfg.items()
               if k in ("model.l2", "model.dropout") and isinstance(v, float)]
    return " ".join([label, f"seed {cfg.get('seed', 0)}", *sampled])


class EpochLines(Callback):
    def __init__(self, stream=None):
        self.stream = stream  # None: whatever sys.stdout is when a line is printed (the quiet console's filter)

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(f"[{trial.trial_id}] start   {trial_label(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        label = trial_label(trial.config)
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
        self._print(f"[{trial.trial_id}] done    {trial_label(trial.config)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(f"[{trial.trial_id}] ERROR   {trial_label(trial.config)}: see {trial.local_path}/error.txt")
