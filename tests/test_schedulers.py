"""sweep.schedulers.DefaultKeepingASHA on real Ray Tune trial objects (no cluster: a scheduler is plain Python)."""
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from sweep.schedulers import DefaultKeepingASHA

DEFAULT = {"model.l2": 1e-4, "model.dropout": 0.5}
ASHA = {"time_attr": "t", "metric": "acc", "mode": "max", "max_t": 10, "grace_period": 1, "reduction_factor": 2}


def _rung_one(scheduler, accs):
    """Add a trial per accuracy (the first at the default setting, the rest elsewhere) and report each at t=1."""
    trials = [Trial("f", config={**DEFAULT, "model.dropout": 0.5 if i == 0 else 0.1 * i}, stub=True)
              for i in range(len(accs))]
    for t in trials:
        scheduler.on_trial_add(None, t)
    # the default reports last and worst: plain ASHA stops it at the first rung
    order = list(range(1, len(accs))) + [0]
    return {i: scheduler.on_trial_result(None, trials[i], {"t": 1, "acc": accs[i]}) for i in order}


def test_the_default_setting_is_never_stopped_and_the_others_are_judged_as_before():
    accs = [0.20, 0.60, 0.50, 0.40]
    plain = _rung_one(AsyncHyperBandScheduler(**ASHA), accs)
    keeping = DefaultKeepingASHA(default=DEFAULT, **ASHA)
    kept = _rung_one(keeping, accs)
    assert plain[0] == TrialScheduler.STOP and kept[0] == TrialScheduler.CONTINUE
    assert {i: a for i, a in kept.items() if i} == {i: a for i, a in plain.items() if i}  # the others unchanged
    assert kept[2] == TrialScheduler.STOP  # a worse non-default trial is still stopped
    assert keeping._num_stopped == sum(a == TrialScheduler.STOP for a in kept.values())


def test_without_a_default_it_is_plain_asha():
    accs = [0.20, 0.60, 0.50, 0.40]
    assert _rung_one(DefaultKeepingASHA(default=None, **ASHA), accs) == _rung_one(AsyncHyperBandScheduler(**ASHA), accs)
