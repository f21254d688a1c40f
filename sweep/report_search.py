"""The search section of the report: best trial by validation accuracy, optuna's (fANOVA) parameter
importance over a study rebuilt from the trials, and every trial's sampled parameters."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sweep.report_format import md_table, pct
from sweep.report_load import (
    Experiment,
    Trial,
    _hashable,
    _num,
    is_search,
    is_seed_key,
    search_block,
    space_keys,
    varying_keys,
)


def sampled_keys(exp: Experiment) -> list[str]:
    """Parameters a search sweep sampled: the `search.space` keys from meta, else every varying key
    except model, protocol and seeds."""
    present = {k for t in exp.trials for k in t.params}
    space = [k for k in space_keys(exp.meta) if k in present]
    if space:
        return space
    return [k for k in varying_keys(exp.trials)
            if not is_seed_key(k) and k not in ("model.name", "data.protocol")]


def param_importance(trials: Sequence[Trial], keys: Sequence[str]) -> tuple[dict[str, float] | None, str]:
    """Optuna's (fANOVA) importance of `keys` for best val acc, from a study rebuilt from the trials.

    Returns (importances, "") or (None, why it is absent).
    """
    usable = [t for t in trials if t.best_val_acc is not None and all(k in t.params for k in keys)]
    if len(usable) < 2:
        return None, f"needs >= 2 trials with a val accuracy and all sampled parameters; have {len(usable)}"
    keys = [k for k in keys if len({_hashable(t.params[k]) for t in usable}) > 1]
    if not keys:
        return None, "no sampled parameter varies across the usable trials"
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for k in keys:
        vals = [t.params[k] for t in usable]
        if all(_num(x) is not None and isinstance(x, int) for x in vals):
            dists[k] = IntDistribution(min(vals), max(vals))
        elif all(_num(x) is not None for x in vals):
            lo, hi = float(min(vals)), float(max(vals))
            # log scale when the sampled range spans orders of magnitude (e.g. L2 1e-5..1e-2)
            dists[k] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:
            dists[k] = CategoricalDistribution(sorted({_hashable(x) for x in vals}, key=str))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for t in usable:
        params = {k: (float(t.params[k]) if isinstance(dists[k], FloatDistribution) else _hashable(t.params[k]))
                  for k in keys}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=t.best_val_acc))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # seeded: same report every run
    imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in imp.items()}, ""


def section_search(exp: Experiment) -> list[str]:
    if not is_search(exp):
        return []
    keys = sampled_keys(exp)
    out = ["## Search", ""]
    search = search_block(exp.meta)
    if search:
        out.append(f"Search settings from `sweep_meta.json`: `{json.dumps(search, default=str, sort_keys=True)}`")
        out.append("")
    scored = [t for t in exp.trials if t.best_val_acc is not None]
    if scored:
        best = max(scored, key=lambda t: t.best_val_acc)
        out.append(f"Best trial by best validation accuracy (`best_val_acc`; the test split is never used to "
                   f"select): `{best.name}`, val {pct(best.best_val_acc)}%.")
        out.append("")
        out += md_table(["parameter", "value"], [[k, best.params.get(k, "—")] for k in keys])
        out.append("")
        if best.metric("test", "acc") is not None:
            out.append(f"Test accuracy of that trial, measured once after selection: {pct(best.metric('test', 'acc'))}%.")
            out.append("")
    else:
        out.append("_No trial reported a validation accuracy; no best parameters._")
        out.append("")
    out.append("### Parameter importance (optuna, fANOVA)")
    out.append("")
    out.append("A study is rebuilt from the trials (`optuna.create_study` + `optuna.trial.create_trial`, "
               "objective = best val accuracy). Trials stopped early by ASHA are added as complete with "
               "their truncated score, which biases importances toward parameters that help early.")
    out.append("")
    imp, why = param_importance(exp.trials, keys)
    if imp is None:
        out.append(f"_Parameter importance not computed: {why}._")
    else:
        out += md_table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()])
    out.append("")
    out.append("### Trials")
    out.append("")
    rows = []
    for t in sorted(exp.trials, key=lambda t: -(t.best_val_acc if t.best_val_acc is not None else -1)):
        rows.append([t.name] + [t.params.get(k, "—") for k in keys] + [
            pct(t.best_val_acc), t.epochs_run if t.epochs_run is not None else "—",
            "yes" if t.status == "stopped" else "no", t.status])
    out += md_table(["trial"] + keys + ["best val acc (%)", "epochs run", "stopped early", "status"], rows)
    out.append("")
    return out


