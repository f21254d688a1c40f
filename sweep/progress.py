"""Ray Tune callbacks on the driver: a readable line per trial and epoch while a sweep runs, and the per-epoch
rows of a trial restarted by `--resume` kept."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ray.tune import Callback

# The files Tune's default loggers append a trial's results to, in the driver's staging folder.
ROW_FILES = ("result.json", "progress.csv")


class KeepTrialRows(Callback):
    """A resumed sweep restarts an unfinished trial in a fresh staging folder, where Tune's loggers find no
    result.json unless the trial had a Tune checkpoint (ours checkpoint inside Ray Train); the next sync then
    overwrites the stored file, and the epochs reported before the interrupt are lost. Copying the stored rows
    in first, before the loggers open the files (user callbacks run before Tune's loggers), makes the restarted
    trial append to them, as it continues from its Train checkpoint."""

    def on_trial_start(self, iteration, trials, trial, **info):
        import pyarrow.fs

        for name in ROW_FILES:
            local = Path(trial.local_path, name)
            if local.exists():  # this run's own file: a retry within the run appends to it already
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                pyarrow.fs.copy_files(Path(trial.path, name).as_posix(), local.as_posix(),
                                      source_filesystem=trial.storage.storage_filesystem)
            except FileNotFoundError:  # a trial's first start: nothing stored yet
                pass
            except Exception as exc:  # never stop a sweep over its log files; say what was not carried over
                print(f"warning: {trial.trial_id}: could not carry its stored {name} over ({exc}); its rows from "
                      "before the interrupt may be overwritten", file=sys.stderr)


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
