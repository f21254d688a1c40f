"""What `sweep.run` sets up in the local Ray instance it starts reaches the processes a trial runs in."""
import os
from argparse import Namespace

import pytest

from sweep.run import TRAIN_POLL_ENV, TRAIN_POLL_S, _init_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
LOCAL_ONLY = ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED")


def test_every_process_of_the_sweep_sees_the_faster_train_poll_and_the_local_settings(monkeypatch):
    import ray

    for var in (TRAIN_POLL_ENV, *LOCAL_ONLY):
        monkeypatch.delenv(var, raising=False)  # restored after the test, like everything _init_ray sets
    if ray.is_initialized():
        ray.shutdown()
    _init_ray(Namespace(address=None, verbose=True, num_cpus=1))
    try:
        @ray.remote(num_cpus=0)
        class TrialDriver:  # stands in for a Tune driver, which starts Ray Train's controller from inside
            def child_env(self):
                return ray.get(read_env.remote())

        @ray.remote(num_cpus=0)
        def read_env():
            return {var: os.environ.get(var) for var in (TRAIN_POLL_ENV, *LOCAL_ONLY)}

        seen = ray.get(TrialDriver.remote().child_env.remote())
    finally:
        ray.shutdown()
    assert seen == {TRAIN_POLL_ENV: TRAIN_POLL_S, "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                    "RAY_TRAIN_METRICS_ENABLED": "0"}
    assert float(TRAIN_POLL_S) < 2.0  # Ray Train's default, which made every trial wait on its polls
