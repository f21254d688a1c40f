"""Ray Tune schedulers for the search grids."""
from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler


class DefaultKeepingASHA(AsyncHyperBandScheduler):
    """ASHA that never stops the search's reference sample, the model's own setting (`Plan.search_default`).

    The report sets the best sample against it at the same seed, and a reference cut off after two epochs by an
    unlucky rung is no reference. Its results still enter the rungs, so the other trials are judged as before;
    it only costs its own remaining epochs."""

    def __init__(self, default: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self._default = dict(default or {})

    def is_default(self, config: dict) -> bool:
        return bool(self._default) and all(config.get(k) == v for k, v in self._default.items())

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and self.is_default(trial.config) \
                and result.get(self._time_attr, 0) < self._max_t:
            self._num_stopped -= 1  # counted by the parent; not stopped after all
            return TrialScheduler.CONTINUE
        return action
