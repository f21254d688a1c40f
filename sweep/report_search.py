"""The search section of the report: best trial by validation accuracy, optuna's (fANOVA) parameter
importance over a study rebuilt from the trials, and every trial's sampled parameters."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

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


# Tune names a trial folder `<trainable>_<trial id>_<index>_<sampled and constant params, truncated>_<date>`
TUNE_DIR_RE = re.compile(r"^[a-z_]*?_([0-9a-f]{5,8}_\d+)_")


def short_name(t: Trial) -> str:
    """`62335064_2` for a Tune trial folder (its id and launch index), else the folder's own name."""
    m = TUNE_DIR_RE.match(t.name)
    return m.group(1) if m else t.name


def value(x) -> str:
    """A sampled value at 4 significant digits (optuna samples floats to 16)."""
    return f"{x:.4g}" if isinstance(x, float) else str(x)


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


def optuna_study(trials: Sequence[Trial], space: dict):
    """An optuna study rebuilt from the trials with the search space's own distributions, for optuna's figures:
    completed trials with their best val accuracy, trials ASHA stopped as PRUNED, every epoch an intermediate value."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    dists = {}
    for key, spec in space.items():
        kind, args = next(iter(spec.items()))
        dists[key] = (CategoricalDistribution(args) if kind == "choice"
                      else FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for t in sorted(trials, key=lambda t: t.name):  # trial folders are named in launch order
        if t.best_val_acc is None or not all(k in t.params for k in dists):
            continue
        curve = t.curve("val/acc")
        params = {k: (float(t.params[k]) if isinstance(d, FloatDistribution) else t.params[k]) for k, d in dists.items()}
        done = t.status == "completed"
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, intermediate_values=curve,
            state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED,
            value=t.best_val_acc if done else None))
    return study


def search_figures(exp: Experiment, out_dir: Path) -> list[str]:
    """Optuna's own matplotlib figures of the search (history, importances, contour, slices, per-epoch curves)."""
    space = (search_block(exp.meta) or {}).get("space") or {}
    if not space:
        return ["_Figures need the search space in sweep_meta.json; not drawn._", ""]
    study = optuna_study(exp.trials, space)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return [f"_Figures need >= 2 completed trials; have {len(complete)}._", ""]
    import warnings

    import optuna
    import optuna.visualization.matplotlib as ovm

    from sweep.report_figures import save_optuna

    keys = list(space)
    best = max((t for t in exp.trials if t.best_val_acc is not None), key=lambda t: t.best_val_acc)
    edges = _edges(exp, best)
    plots = [("search_history.png", lambda: ovm.plot_optimization_history(study),
              "best validation accuracy so far against trial number: a curve still rising at the end wants more samples"),
             ("search_intermediate.png", lambda: ovm.plot_intermediate_values(study),
              "validation accuracy per epoch of every trial; the short curves are trials ASHA stopped (pruned)"),
             ("search_slice.png", lambda: _mark_best(ovm.plot_slice(study, params=keys), study, edges),
              "each parameter against validation accuracy; a dashed line marks the best value, red where it lies "
              "on the edge of its range (widen the range)")]
    if len(keys) >= 2:
        plots.insert(1, ("search_contour.png", lambda: ovm.plot_contour(study, params=keys[:2]),
                         f"validation accuracy over {keys[0]} and {keys[1]} (completed trials), interpolated"))
    if len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        plots.insert(1, ("search_importances.png", lambda: ovm.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)),
            "fANOVA importance of each parameter for validation accuracy (completed trials only)"))
    out = []
    for name, draw, caption in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
            save_optuna(draw, out_dir / "figures" / name)
        out += [f"![{caption}](figures/{name})", "", f"*{caption[0].upper() + caption[1:]}.*", ""]
    return out


def _mark_best(axes, study, edges: list[str]):
    """A vertical line at the best completed trial's value on each slice panel; red when that value is on the edge."""
    import numpy as np

    best = study.best_trial.params
    for ax in np.asarray(axes).ravel():
        key = ax.get_xlabel()
        if key in best and isinstance(best[key], (int, float)):
            ax.axvline(best[key], color="red" if key in edges else "black", ls="--", lw=1)
    return axes


def _edges(exp: Experiment, best: Trial) -> list[str]:
    from sweep.grid import on_edge

    space = (search_block(exp.meta) or {}).get("space") or {}
    return [k for k, spec in space.items() if k in best.params and _num(best.params[k]) is not None
            and on_edge(spec, best.params[k])]


def _is_default(t: Trial, default: dict) -> bool:
    return all(_num(t.params.get(k)) is not None and math.isclose(float(t.params[k]), float(v), rel_tol=1e-9)
               if isinstance(v, (int, float)) else t.params.get(k) == v for k, v in default.items())


def _versus_default(search: dict, scored: Sequence[Trial], best: Trial) -> list[str]:
    """The search's first trial, the setting without the search (sweep_meta.json `search.default`), against the best."""
    default = search.get("default")
    if not default:
        return []
    setting = ", ".join(f"{k}={value(v)}" for k, v in default.items())
    ref = next((t for t in scored if _is_default(t, default)), None)
    if ref is None:
        return [f"The default setting ({setting}) has no trial with a validation accuracy here.", ""]
    test = ref.metric("test", "acc")
    line = (f"The default setting ({setting}), tried first at the same seed and recipe: `{short_name(ref)}`, val "
            f"{pct(ref.best_val_acc)}%" + (f", test {pct(test)}%" if test is not None else "") + ". ")
    if ref.status != "completed":
        # a run before sweep.schedulers.DefaultKeepingASHA, or one cut short: a truncated score is no reference
        line += (f"It was {ref.status} after {ref.epochs_run or 0} epoch(s), so it is no reference at this budget: "
                 "set the best against the default in a seeded comparison of the two settings.")
    elif ref is best:
        line += "No sampled setting beat it on validation."
    else:
        line += (f"The best trial is {100 * (best.best_val_acc - ref.best_val_acc):+.2f} pp above it on validation: "
                 "one seed each, and the best of many flatters itself, so a gain the size of the seed-to-seed spread "
                 "is no evidence; a seeded comparison of the two settings decides.")
    return [line, ""]


def section_search(exp: Experiment, out_dir: Path | None = None) -> list[str]:
    if not is_search(exp):
        return []
    keys = sampled_keys(exp)
    out = ["## Search", ""]
    search = search_block(exp.meta)
    completed = [t for t in exp.trials if t.status == "completed"]
    if search:
        # num_samples is left out: the grid file's default, which --num-samples may have overridden
        shown = {k: v for k, v in search.items() if k != "num_samples"}
        out.append(f"Search settings from `sweep_meta.json`: `{json.dumps(shown, default=str, sort_keys=True)}`; "
                   f"{len(exp.trials)} sampled configurations, {len(completed)} trained to the last epoch "
                   f"(the others stopped early by ASHA or unfinished).")
        out.append("")
    scored = [t for t in exp.trials if t.best_val_acc is not None]
    if scored:
        best = max(scored, key=lambda t: t.best_val_acc)
        out.append(f"Best trial by best validation accuracy (`best_val_acc`; the test split is never used to "
                   f"select): `{short_name(best)}`, val {pct(best.best_val_acc)}%.")
        out.append("")
        edges = _edges(exp, best)
        out += md_table(["parameter", "value", "on the edge of its range"],
                        [[k, value(best.params.get(k, "—")), "**yes**" if k in edges else "no"] for k in keys])
        out.append("")
        if edges:
            out.append(f"The best value of {', '.join(edges)} lies in the outer 10% of its range (log scale for "
                       "loguniform): a better one may lie outside it; widen the range before trusting it.")
            out.append("")
        if best.metric("test", "acc") is not None:
            out.append(f"Test accuracy of that trial, measured once after selection: {pct(best.metric('test', 'acc'))}%. "
                       f"Its validation accuracy is the best of {len(scored)} noisy estimates, so it flatters the "
                       "configuration; the test figure does not, but it is one seed of one configuration. Whether the "
                       "search found a better setting than the default is for a seeded comparison of the two to say.")
            out.append("")
        out += _versus_default(search or {}, scored, best)
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
        rows.append([short_name(t)] + [value(t.params.get(k, "—")) for k in keys] + [
            pct(t.best_val_acc), t.epochs_run if t.epochs_run is not None else "—",
            "yes" if t.status == "stopped" else "no", t.status])
    out += md_table(["trial"] + keys + ["best val acc (%)", "epochs run", "stopped early", "status"], rows)
    out.append("")
    if out_dir is not None:
        out += ["### Figures (optuna.visualization.matplotlib, on a study rebuilt from the trials)", ""]
        out += search_figures(exp, out_dir)
    return out


