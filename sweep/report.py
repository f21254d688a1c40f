"""Build `report.md` (+ PNG figures) from an experiment folder written by `sweep.run`.

Run:
    python -m sweep.report EXPERIMENT_DIR [--out report.md]

or from Python (the sweep calls this at the end): `build_report(exp_dir, out=None) -> Path`.

The input is the experiment-folder format pinned in docs/DESIGN.md. The report groups trials into
variants (every varying grid axis but the seed), summarises each metric across seeds, sets chance
references (majority class, 1/7) beside them, compares each variant with the baseline (paired by seed
when seeds are shared, Welch otherwise; Holm-adjusted within each table), flags collapsed predictions and
runs still improving at their last epoch, judges the study's claims on the split the study reports them
for, isolates the leaky protocol's effect, and lists failed, stopped and odd trials.

Modules: report_load (reading, grouping), report_claims (paper numbers, comparisons, verdicts),
report_leak (leakage audit), report_search (search sweeps), report_format, report_figures; the
statistics and verdict names are in sweep.stats. The output is deterministic: the same folder gives a
byte-identical report.md and identical PNGs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import traceback
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sweep import stats
from sweep.report_claims import (  # noqa: F401  (re-exported)
    STUDY_REPORTED,
    ClaimResult,
    Comparison,
    claimed_difference_pp,
    evaluate_claims,
    family,
    reading,
    study_pct,
)
from sweep.report_format import (  # noqa: F401  (re-exported)
    STAT_NOTE,
    alt,
    fmt_ci,
    fmt_diff,
    fmt_effect,
    fmt_interval,
    fmt_p,
    fmt_seconds,
    fmt_summary,
    md_table,
    pct,
    slug,
    test_name,
)
from sweep.report_axes import section_comparisons
from sweep.report_leak import leak_audit, leak_bars_data, section_leakage
from sweep.report_load import (  # noqa: F401  (re-exported)
    BASELINE,
    LABEL_DEFAULTS,
    LEAKY,
    MODEL_ORDER,
    OFFICIAL,
    SUBSETS,
    TRIAL_FILES,
    Experiment,
    ReportError,
    Trial,
    Variant,
    _num,
    baseline_for,
    group_variants,
    is_search,
    is_seed_key,
    load_experiment,
    load_trial,
    merge_params,
    official_variant,
    variant_axes,
)
from sweep.report_search import param_importance, sampled_keys, section_search  # noqa: F401
from sweep.stats import still_improving  # noqa: F401  (re-exported)

try:  # the canonical tuple lives in fer_data (pinned by a test there)
    from fer_data import CLASS_NAMES
except ImportError:  # report must still render when fer_data is not importable; same order as DESIGN.md
    CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

FIRST_LINE = "<!-- sweep.report: trials={n} -->"
FIRST_LINE_RE = re.compile(r"<!-- sweep\.report: trials=(\d+) -->")
LEGACY_TRIALS_RE = re.compile(r"^- trials: (\d+)\b", re.M)  # reports written before FIRST_LINE existed
FIGURES = "figures"
# Keys the header states (the budget); absent ones ran at the code's default of the time.
BUDGET_KEYS = (
    ("input size", ("data.input_size",)),
    ("epochs", ("train.epochs",)),
    ("optimizer / lr / batch", ("train.optimizer", "train.lr", "train.batch_size")),
    ("lr schedule", ("train.lr_schedule", "train.warmup_epochs")),
    ("class balancing", ("data.balance",)),
)


def _mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _meta_get(meta: dict, *names: str) -> Any:
    for n in names:
        if n in meta and meta[n] not in (None, "", {}, []):
            return meta[n]
    return None


def _trial_values(exp: Experiment, key: str) -> list[str]:
    """The distinct values of one parameter across the trials that set it, as sorted strings."""
    return sorted({str(t.params[key]) for t in exp.trials if key in t.params})


def _seed_order(t: Trial) -> tuple:
    """Numeric seeds in numeric order, then anything else by its text."""
    s = t.seed
    return (0, s, t.name) if isinstance(s, (int, float)) and not isinstance(s, bool) else (1, str(s), t.name)


def _setting(exp: Experiment, key: str) -> str:
    vals = _trial_values(exp, key)
    return "/".join(vals) if vals else "not recorded"


# ----------------------------------------------------------------------------- header


def section_header(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    meta = exp.meta
    name = _meta_get(meta, "name", "experiment") or exp.path.name
    cmd = meta.get("command")
    if isinstance(cmd, list):
        cmd = shlex.join(str(c) for c in cmd)
    counts: dict[str, int] = defaultdict(int)
    for t in exp.trials:
        counts[t.status] += 1
    out = [FIRST_LINE.format(n=len(exp.trials)), f"# Report: {name}", ""]
    out.append("Generated by `python -m sweep.report` from the experiment folder; do not edit by hand.")
    out.append("")
    out.append("Command that produced the runs:")
    out += ["", "```", str(cmd) if cmd else "(command not recorded in sweep_meta.json)"]
    for r in meta.get("resumes") or []:  # an interrupted sweep continued with --resume
        out.append(f"{r.get('command')}    # resumed {r.get('at', '')}"
                   + (f" at commit {r['git_commit'][:12]}" if r.get("git_commit") else ""))
    out += ["```", ""]
    if meta.get("description"):
        out.append(f"- description: {meta['description']}")
    out.append(f"- experiment folder: `{exp.path.name}` (trial folders below are named relative to it)")
    out.append(f"- grid: `{_meta_get(meta, 'grid') or '—'}`; profile: `{_meta_get(meta, 'profile') or '—'}`")
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out.append(f"- trials: {len(exp.trials)} ({status}); variants: {len(variants)}")
    seeds = sorted({str(t.seed) for t in exp.trials if t.seed is not None}, key=lambda s: (len(s), s))
    out.append(f"- seeds: {', '.join(seeds) or '—'}")
    for label, keys in BUDGET_KEYS:
        out.append(f"- {label}: " + ", ".join(f"`{k}` {_setting(exp, k)}" for k in keys))
    aug = sorted({k for t in exp.trials for k in t.params if k.startswith("augment.")})
    if aug:
        out.append("- augmentation: " + ", ".join(f"`{k}` {_setting(exp, k)}" for k in aug))
    else:
        out.append("- augmentation: not recorded in params.json (the trials ran the code's default augmentation)")
    out.append("- settings marked \"not recorded\" are absent from every trial's params.json: those trials ran "
               "the code's default of the time")
    axes = variant_axes(exp)
    out.append(f"- variant axes: {', '.join(f'`{a}`' for a in axes)} (everything else fixed or a seed)")
    spec = meta.get("grid_spec") if isinstance(meta.get("grid_spec"), dict) else meta
    for part in ("scientific", "nuisance", "fixed"):
        if spec.get(part):
            out.append(f"- {part} parameters: `{json.dumps(spec[part], default=str)}`")
    for p in exp.problems:
        out.append(f"- note: {p}")
    out.append("")
    out.append(f"Budget per variant. **still improving**: the mean validation curve rose more than "
               f"{stats.IMPROVING_THRESHOLD_PP:g} pp over the last {stats.IMPROVING_WINDOW} epochs "
               "(`sweep.stats.still_improving`); **not settled**: still improving (a best epoch at the last "
               "epoch alone does not count: a learning rate annealed to 0 makes the last epoch the best by a hair "
               "on a flat curve, so the column only informs). Claims involving a not-settled variant get "
               f"the verdict \"{stats.NOT_SETTLED}\". **collapsed**: seeds whose test predictions collapsed "
               f"(macro recall within {100 * stats.COLLAPSE_RECALL_MARGIN:g} pp of 1/7, or ≥ "
               f"{100 * stats.COLLAPSE_SHARE:g}% of predictions in one class).")
    out.append("")
    rows = []
    for v in variants:
        b = v.budget()
        bests = ", ".join(f"{t.best_epoch if t.best_epoch is not None else '?'}/"
                          f"{t.epochs_run if t.epochs_run is not None else '?'}" for t in v.done) or "—"
        if not v.done:
            rows.append([v.label, 0, "—", "—", "—", "—", "—"])
            continue
        rows.append([v.label, len(v.done), bests, "—" if b.gain_pp is None else f"{b.gain_pp:+.2f}",
                     "yes" if b.improving else "no", "yes" if b.not_settled else "no",
                     ", ".join(f"seed {t.seed}" for t, _ in v.collapsed()) or "none"])
    out += md_table(["variant", "seeds", "best epoch / epochs per seed", "val gain, last 2 epochs (pp)",
                     "still improving", "not settled", "collapsed"], rows)
    out.append("")
    return out


# ----------------------------------------------------------------------------- results


def _epochs_cell(v: Variant) -> str:
    ep = [t.epochs_run for t in v.done if t.epochs_run is not None]
    best = [t.best_epoch for t in v.done if t.best_epoch is not None]
    if not ep:
        return "—"
    return f"{np.mean(ep):.3g}" + (f" (best {np.mean(best):.3g})" if best else "")


def _chance_rows(variants: Sequence[Variant], width: int) -> list[list[str]]:
    """Majority-class accuracy per split (from final.json per_class.support) for each distinct data
    setting (protocol and balancing), and uniform chance 1/7."""
    groups: dict[str, list[float | None]] = {}
    for v in variants:
        tags = ([] if v.protocol == OFFICIAL else [v.protocol]) + [
            f"{k}={x}" for k, x in v.extras.items() if k.startswith("data.") and (k, x) not in LABEL_DEFAULTS]
        label = "chance: majority class" + (f" [{', '.join(tags)}]" if tags else "")
        if label in groups:
            continue
        rates: list[float | None] = []
        for split in ("train", "val", "test"):
            r = next((x for x in (stats.majority_rate(t.support(split)) for t in v.done) if x is not None), None)
            rates.append(r)
        if any(r is not None for r in rates):
            groups[label] = rates
    rows = [[label, "—"] + [pct(r) for r in rates] + ["—"] * (width - 5) for label, rates in groups.items()]
    rows.append(["chance: uniform 1/7", "—"] + [f"{100 / 7:.2f}"] * 3 + ["—"] * (width - 5))
    return rows


def section_main_table(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    out = ["## Results per variant", ""]
    search = is_search(exp)
    if search:
        out.append("**Search sweep:** a variant's trials are different sampled configurations, not seeds of "
                   "one configuration, so the spread below is over configurations; see the Search section.")
        out.append("")
    out.append(
        "Accuracies in percent: mean ± sample std over seeds [95% interval of the mean, Student t with n-1 df, "
        "clipped to [0, 100]]. Train/val/test = Training / PublicTest / PrivateTest under the official "
        "protocol; checkpoints and early stopping use val only. *test, no copy in train*: test accuracy on "
        "the test faces with no exact pixel copy in that trial's training set (final.json "
        "`metrics.test.subsets`; — for trials written before it existed). Macro precision/recall/F1 on test. "
        "The chance rows at the bottom give each split's majority-class accuracy and uniform chance. Only "
        "completed trials count; stopped and failed trials are listed below."
    )
    out.append("")
    header = ["variant", "trials n (configs)" if search else "seeds n", "train acc", "val acc", "test acc",
              "test acc, no copy in train", "macro P (test)", "macro R (test)", "macro F1 (test)", "params",
              "epochs", "still improving", "collapsed seeds", "wall time / trial"]
    rows = []
    for v in variants:
        extra = []
        for status in ("stopped", "failed", "no results"):
            k = sum(t.status == status for t in v.trials)
            if k:
                extra.append(f"+{k} {status}")
        n = f"{len(v.done)}" + (f" ({', '.join(extra)})" if extra else "")
        params = sorted({p for p in (t.n_params for t in v.done) if p is not None})
        params_s = "—" if not params else f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}"
        b = v.budget()
        collapsed = v.collapsed()
        rows.append([
            v.label, n,
            fmt_summary(v.summary("train")), fmt_summary(v.summary("val")), fmt_summary(v.summary("test")),
            fmt_summary(v.summary("test", "acc", "no_copy_in_train")),
            fmt_summary(v.summary("test", "macro_precision")),
            fmt_summary(v.summary("test", "macro_recall")),
            fmt_summary(v.summary("test", "macro_f1")),
            params_s, _epochs_cell(v), "—" if not v.done else "yes" if b.improving else "no",
            f"{len(collapsed)} of {len(v.done)}" if collapsed else "none" if v.done else "—",
            fmt_seconds(_mean([t.wall_s for t in v.done])),
        ])
    rows += _chance_rows(variants, len(header))
    out += md_table(header, rows)
    out.append("")
    return out


def reference_families(variants: Sequence[Variant], split: str) -> list[list[Comparison]]:
    """One Holm family per reference (the baseline under one protocol and set of axes) on `split`."""
    fams = []
    for ref in variants:
        if ref.model != BASELINE or not ref.done:
            continue
        members = [v for v in variants if v is not ref and v.done and baseline_for(v, variants) is ref]
        if members:
            fams.append(family([(v, ref) for v in members], split))
    return fams


# ----------------------------------------------------------------------------- claims, paper, per seed


def forest_panels(variants: Sequence[Variant], claims: Sequence[ClaimResult]):
    """Rows of the forest plot: the official reference family on val and on test, with the study's
    claimed differences and the verdicts (the claim's where a claim is about that row)."""
    from sweep.report_figures import ForestRow

    ref = official_variant(BASELINE, variants)
    if ref is None or not ref.done:
        return {}
    claim_of = {}
    for c in claims:
        for comp in c.comparisons:
            if comp.reference is ref:
                claim_of[(comp.variant.model, comp.split)] = f"claim {c.number}: {c.verdict}"
    panels = {}
    for split in ("val", "test"):
        fams = [f for f in reference_families(variants, split) if f and f[0].reference is ref]
        rows = []
        for c in fams[0] if fams else []:
            d = c.diff
            rows.append(ForestRow(
                c.variant.label, 100 * d.diff,
                100 * d.lo if d.tested else math.nan, 100 * d.hi if d.tested else math.nan,
                claimed_difference_pp(c.variant.model, split) if c.variant.protocol == OFFICIAL else None,
                claim_of.get((c.variant.model, split), reading(c.verdict(+1)))))
        panels[split] = rows
    return panels


def section_claims(exp: Experiment, variants: Sequence[Variant], out_dir: Path) -> list[str]:
    out = ["## The study's claims against our runs", ""]
    out.append(f"Study: *{STUDY_REPORTED['source']}*. It reports single runs (no seeds, no intervals).")
    out.append("")
    if is_search(exp):
        out.append("_Not judged here: claims are decided from ablation sweeps (seeds of fixed configurations); "
                   "in a search sweep the trials of a variant are different configurations._")
        out.append("")
        return out
    claims = evaluate_claims(variants)
    panels = forest_panels(variants, claims)
    if any(panels.values()):
        try:  # a figure failure must not take the claims table with it
            from sweep import report_figures as figs

            figs.forest_figure(panels, out_dir / FIGURES / "forest.png", tie_margin_pp=stats.TIE_MARGIN_PP)
        except Exception as exc:
            print(f"sweep.report: forest plot failed: {exc!r}", file=sys.stderr)
            out += [f"_The forest plot could not be drawn: `{exc!r}`._", ""]
            panels = {}
    if any(panels.values()):
        out.append(f"![forest plot: differences from the baseline]({FIGURES}/forest.png)")
        out.append("")
        out.append("*Each variant minus the baseline (official protocol) in pp with its 95% interval, the study's "
                   "claimed difference as a red diamond, the grey band ±2 pp (a tie): look for intervals that "
                   "miss the diamond or straddle zero; the verdict is written beside each row.*")
        out.append("")
    out.append(
        f"Verdict rule, applied in this order: **{stats.COLLAPSED}** when a variant in the claim has any seed "
        f"whose predictions collapsed; **{stats.NOT_SETTLED}** when a variant in the claim was still improving "
        "(see the header's budget table); **holds** / **does not hold** when the 95% interval of the difference "
        "lies entirely on the claimed / the other side of zero *and* the Holm-adjusted p-value is below 0.05; "
        f"**{stats.TIE}** when the whole interval lies within ±{stats.TIE_MARGIN_PP:g} pp (TIE_MARGIN_PP, a "
        f"demonstrated tie); **{stats.INCONCLUSIVE}** otherwise, including n<2 or zero variance. Claims 1-3 "
        "compare validation accuracy, the split the study states them on, and form one Holm family; claim 4 "
        "compares test accuracy against the four other study models (one family of four) and holds only if "
        "every comparison holds; claim 5 holds when our 95% interval of the optimized model's test accuracy "
        f"lies at or above the study's {STUDY_REPORTED['test_acc_pct']['optimized']:.2f}%. Only the official "
        "protocol without rebalancing counts. " + STAT_NOTE)
    out.append("")
    epochs, sizes = _trial_values(exp, "train.epochs"), _trial_values(exp, "data.input_size")
    if epochs:
        out.append(f"These verdicts are for this experiment's training budget only: {'/'.join(epochs)} "
                   f"epoch(s) per trial at {'/'.join(f'{s}x{s}' for s in sizes) or 'the default'} input. "
                   "The study does not state its epochs.")
        out.append("")
    rows = [[c.number, c.claim, c.split, c.study, c.ours, c.difference, f"**{c.verdict}**", c.note]
            for c in claims]
    out += md_table(["#", "claim", "split", "study (%)", "ours (%)", "our difference (95% interval)", "verdict",
                     "note"], rows)
    out.append("")
    return out


def section_paper(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    if is_search(exp):
        return []
    out = ["## The study's table beside ours", ""]
    out.append(
        "The study's validation and test accuracy for its five CNNs (its tables 5.1 and 5.1.2) beside ours "
        "(official protocol, no rebalancing; mean [95% interval] over seeds). The study states claims 1-3 "
        "on validation and the optimized model's result on test; its text compared the optimized model's "
        "test accuracy with the ablations' validation accuracy, a mix of splits. The claims above compare "
        "like with like: validation with validation for claims 1-3, test with test for claim 4.")
    out.append("")
    rows = []
    for model in MODEL_ORDER:
        v = official_variant(model, variants)
        ours = {s: (fmt_ci(v.summary(s)) if v is not None and v.done else "not run") for s in ("val", "test")}
        nocopy = fmt_ci(v.summary("test", "acc", "no_copy_in_train")) if v is not None and v.done else "—"
        gap = {}
        for s in ("val", "test"):
            sm = v.summary(s) if v is not None and v.done else None
            gap[s] = "—" if sm is None or not sm.n else f"{100 * sm.mean - study_pct(model, s):+.2f}"
        rows.append([model, f"{study_pct(model, 'val'):.2f}", ours["val"], gap["val"],
                     f"{study_pct(model, 'test'):.2f}", ours["test"], gap["test"], nocopy])
    out += md_table(["model", "study val", "ours val", "ours − study (val, pp)", "study test", "ours test",
                     "ours − study (test, pp)", "ours test, no copy in train"], rows)
    out.append("")
    return out


def section_per_seed(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    if is_search(exp):
        return []
    out = ["## Per-seed results", ""]
    out.append("Every completed trial, in percent. Best epoch = the epoch whose weights were evaluated "
               "(highest validation accuracy).")
    out.append("")
    rows = []
    for v in variants:
        for t in sorted(v.done, key=_seed_order):
            hit, why = t.collapse()
            rows.append([v.label, t.seed if t.seed is not None else "—", t.name,
                         pct(t.metric("train")), pct(t.metric("val")), pct(t.metric("test")),
                         pct(t.metric("test", "acc", "no_copy_in_train")),
                         f"{t.best_epoch if t.best_epoch is not None else '—'} / "
                         f"{t.epochs_run if t.epochs_run is not None else '—'}",
                         fmt_seconds(t.wall_s), f"yes: {why}" if hit else "no"])
    out += md_table(["variant", "seed", "trial dir", "train acc", "val acc", "test acc",
                     "test acc, no copy in train", "best epoch / epochs", "wall time", "collapsed"], rows)
    out.append("")
    return out


# ----------------------------------------------------------------------------- per class, figures


def section_per_class(variants: Sequence[Variant]) -> list[str]:
    out = ["## Per-class F1 (test, mean over seeds)", ""]
    rows = []
    width = 0
    for v in variants:
        f1s = []
        for t in v.done:
            f1 = (t.split_metrics("test").get("per_class") or {}).get("f1")
            if isinstance(f1, list) and all(_num(x) is not None for x in f1):
                f1s.append([float(x) for x in f1])
        if not f1s or len({len(f) for f in f1s}) != 1:
            rows.append([v.label, len(f1s)] + ["—"] * len(CLASS_NAMES))
            continue
        mean = np.mean(np.asarray(f1s), axis=0)
        width = max(width, len(mean))
        rows.append([v.label, len(f1s)] + [f"{100 * x:.1f}" for x in mean])
    names = list(CLASS_NAMES) if width in (0, len(CLASS_NAMES)) else [f"class {i}" for i in range(width)]
    out += md_table(["variant", "n"] + names, rows)
    out.append("")
    return out


def variant_confusion(v: Variant) -> tuple[np.ndarray | None, int]:
    """Test confusion matrices summed over completed seeds (counts; rows = true class)."""
    mats = []
    for t in v.done:
        cm = t.split_metrics("test").get("confusion")
        try:
            a = np.asarray(cm, dtype=float)
        except (TypeError, ValueError):
            continue
        if a.ndim == 2 and a.shape[0] == a.shape[1] and a.size and np.isfinite(a).all():
            mats.append(a)
    if not mats or len({m.shape for m in mats}) != 1:
        return None, 0
    return np.sum(mats, axis=0), len(mats)


def section_figures(variants: Sequence[Variant], out_dir: Path) -> list[str]:
    from sweep import report_figures as figs  # matplotlib import only when figures are drawn

    out = ["## Learning curves and confusion matrices", ""]
    fig_dir = out_dir / FIGURES
    curves = {}
    for v in variants:
        series = {k: v.mean_curve(k) for k in ("val/acc", "train/acc")}
        if any(series.values()):
            curves[v.label] = series
    if curves:
        figs.curves_figure(curves, fig_dir / "curves.png")
        out.append(f"![validation and train curves of every variant]({FIGURES}/curves.png)")
        out.append("")
        out.append("*Mean accuracy per epoch over seeds (band: min-max over seeds; ★: best epoch of the mean "
                   "validation curve), validation left, train right: look for curves still rising at the last "
                   "epoch (not settled) and for a train curve far above its validation curve (overfitting).*")
    else:
        out.append("_No learning curves (no result.json rows with an epoch and train metrics)._")
    out.append("")
    mats, missing = [], []
    for v in variants:
        cm, n = variant_confusion(v)
        if cm is None:
            missing.append(v.label)
        else:
            mats.append((v.label, cm, n))
    if mats:
        figs.confusion_grid(mats, CLASS_NAMES, fig_dir / "confusion.png")
        out.append(f"![test confusion matrices of every variant]({FIGURES}/confusion.png)")
        out.append("")
        out.append("*Test confusion matrices, counts summed over seeds and row-normalised (rows = true class), "
                   "one colour scale for all: look for a dark column (predictions collapsing onto one class) "
                   "and for the classes each variant confuses.*")
    if missing:
        out.append("")
        out.append("No confusion matrix (no completed trial with a valid `metrics.test.confusion`): "
                   + ", ".join(f"`{x}`" for x in missing) + ".")
    out.append("")
    return out


def section_leak_figure(variants: Sequence[Variant], out_dir: Path) -> list[str]:
    groups = {r.model: leak_bars_data(r) for r in leak_audit(variants)}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return []
    from sweep import report_figures as figs

    figs.leak_figure(groups, out_dir / FIGURES / "leak.png")
    return [f"![test accuracy on copied and not-copied faces per protocol]({FIGURES}/leak.png)", "",
            "*Test accuracy on all faces, on faces with an exact copy in train and on faces without, per "
            "protocol (error bars: 95% interval over seeds): look for the gap between copy and no copy under "
            "the leaky protocol, and compare leaky with the control on the no-copy faces.*", ""]


# ----------------------------------------------------------------------------- provenance, issues


def _resources(meta: dict) -> tuple[float | None, float | None]:
    """(CPUs, GPUs) per trial from meta `resources_per_trial`: sweep.run's
    {workers, cpus_per_worker, gpus_per_worker}, or a plain {cpu, gpu} (any case)."""
    r = meta.get("resources_per_trial")
    if not isinstance(r, dict):
        return None, None
    low = {str(k).lower(): v for k, v in r.items()}
    if "cpus_per_worker" in low or "gpus_per_worker" in low:
        workers = _num(low.get("workers"))
        workers = 1.0 if workers is None else workers
        cpw, gpw = _num(low.get("cpus_per_worker")), _num(low.get("gpus_per_worker"))
        return (None if cpw is None else workers * cpw), (0.0 if gpw is None else workers * gpw)
    return _num(low.get("cpu")), _num(low.get("gpu"))


def section_repro(exp: Experiment) -> list[str]:
    meta = exp.meta
    out = ["## Reproducibility", ""]
    items = [
        ("git commit", _meta_get(meta, "git_commit", "git", "commit")),
        ("profile", _meta_get(meta, "profile")),
        ("grid", _meta_get(meta, "grid")),
        ("data sha256", _meta_get(meta, "data_sha256", "sha256")),
        ("data source", _meta_get(meta, "data", "data_path", "data_spec")),
        ("started", _meta_get(meta, "started")),
        ("finished", _meta_get(meta, "finished")),
        ("resources per trial", _meta_get(meta, "resources_per_trial")),
    ]
    for k, v in items:
        out.append(f"- {k}: `{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v if v is not None else '—'}`")
    for block in ("hardware", "versions"):
        v = meta.get(block)
        if isinstance(v, dict) and v:
            out.append(f"- {block}: " + ", ".join(f"{k} `{v[k]}`" for k in sorted(v)))
        else:
            out.append(f"- {block}: {v if v else '—'}")
    walls = [t.wall_s for t in exp.trials if t.wall_s is not None]
    total_h = sum(walls) / 3600
    cpu, gpu = _resources(meta)
    if cpu is None and gpu is None:
        out.append(f"- total trial wall time: {total_h:.2f} h over {len(walls)} trial(s) "
                   "(`resources_per_trial` absent: CPU/GPU hours unknown)")
    else:
        out.append(f"- total compute (sum over trials of wall time x resources per trial, failed and stopped "
                   f"trials included): {total_h * (cpu or 0):.2f} CPU hours, {total_h * (gpu or 0):.2f} GPU hours "
                   f"({total_h:.2f} trial-hours over {len(walls)} trial(s))")
    shown = {"name", "experiment", "command", "git_commit", "git", "commit", "profile", "grid", "data_sha256",
             "sha256", "data", "data_path", "data_spec", "started", "finished", "resources_per_trial",
             "hardware", "versions", "data_audit", "search", "grid_spec", "scientific", "nuisance", "fixed",
             "description"}
    rest = {k: v for k, v in meta.items() if k not in shown}
    if rest:
        out.append("- other metadata: " + ", ".join(
            f"{k} `{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}`" for k, v in sorted(rest.items())))
    out.append("")
    return out


def section_trial_issues(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    label_of = {id(t): v.label for v in variants for t in v.trials}
    out = ["## Failed, stopped and odd trials", ""]
    failed = [t for t in exp.trials if t.error is not None]
    if failed:
        out.append("Failed or errored trials (first line of `error.txt`; with Tune's `Failure #` header the "
                   "exception line is appended). A trial with both `error.txt` and `final.json` recovered "
                   "after a retry and is counted above.")
        out.append("")
        out += md_table(["trial dir", "variant", "error", "counted"],
                        [[t.name, label_of.get(id(t), "—"), t.error,
                          "yes (final.json present)" if t.status == "completed" else "no"] for t in failed])
    else:
        out.append("No failed trials.")
    out.append("")
    stopped = [t for t in exp.trials if t.status == "stopped"]
    if stopped:
        out.append("Stopped early by the scheduler (e.g. ASHA) or unfinished when the report was built: "
                   "`result.json` but no `final.json`; not counted in the per-variant statistics:")
        out.append("")
        out += md_table(["trial dir", "variant", "epochs run", "best val acc (%)"],
                        [[t.name, label_of.get(id(t), "—"),
                          t.epochs_run if t.epochs_run is not None else "—", pct(t.best_val_acc)] for t in stopped])
    else:
        out.append("No trials stopped early.")
    out.append("")
    odd = [t for t in exp.trials if t.problems or t.status == "no results"]
    if odd:
        out.append("Odd trials (kept, with what was wrong):")
        out.append("")
        out += md_table(["trial dir", "status", "problem"],
                        [[t.name, t.status, "; ".join(t.problems) or "no result rows"] for t in odd])
        out.append("")
    return out


# ----------------------------------------------------------------------------- entry points


def _guarded(name: str, fn, *args) -> list[str]:
    """Render one section; a bug in one section must not lose the rest of a long sweep's report."""
    try:
        return fn(*args)
    except ReportError:
        raise
    except Exception as exc:
        print(f"sweep.report: section '{name}' failed: {exc!r}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return [f"## {name}", "", f"_This section could not be built: `{exc!r}`._", ""]


def section_tuning(exp: Experiment) -> list[str]:
    """What each scientific point's tuned nuisance values were (sweep_meta.json `tuning`, written by sweep.run)."""
    t = exp.meta.get("tuning")
    if not isinstance(t, dict) or not t.get("chosen"):
        return []
    keys = list(t.get("space") or {})
    out = ["## Nuisance tuning", "",
           f"Before the seeded comparison each scientific point tuned {', '.join(f'`{k}`' for k in keys)} over "
           f"`{json.dumps(t.get('space'), default=str)}` at seed {t.get('seed', 0)} for {t.get('epochs', 1)} "
           "epoch(s), chosen by validation accuracy only (tuning trials never see test; they sit in `tuning/`). "
           "The comparison below trains every variant at its own chosen values. A value on the edge of its "
           "range means the range may have cut off a better one.", ""]
    rows = []
    for c in t["chosen"]:
        point = ", ".join(f"{k}={v}" for k, v in (c.get("point") or {}).items())
        vals = ", ".join(f"{k}={c['values'].get(k)}" for k in keys)
        rows.append([point, vals, pct(c.get("val_acc")), c.get("trials", "?"),
                     ", ".join(c.get("on_edge") or []) or "no"])
    out += md_table(["scientific point", "chosen", "tuning val acc", "tuning trials", "on the edge"], rows)
    return out + [""]


def is_study_ablation(variants: Sequence[Variant]) -> bool:
    """The study's baseline and at least one of its other four CNNs ran under the official protocol."""
    models = {v.model for v in variants if v.protocol == OFFICIAL and v.done}
    return BASELINE in models and bool(models & set(MODEL_ORDER[1:]))


def render_report(exp: Experiment, out_dir: Path) -> str:
    variants = group_variants(exp)  # raises ReportError on duplicate seeds
    lines: list[str] = []
    lines += _guarded("Header", section_header, exp, variants)
    lines += _guarded("Results per variant", section_main_table, exp, variants)
    lines += _guarded("Nuisance tuning", section_tuning, exp)
    lines += _guarded("Differences from the reference level", section_comparisons, exp, variants)
    if is_study_ablation(variants):  # keyed on the variants the claims are about, not on the grid's name
        lines += _guarded("The study's claims", section_claims, exp, variants, out_dir)
        lines += _guarded("The study's table beside ours", section_paper, exp, variants)
    lines += _guarded("Per-seed results", section_per_seed, exp, variants)
    lines += _guarded("Leakage audit", section_leakage, exp, variants)
    if any(v.protocol == LEAKY for v in variants):
        lines += _guarded("Leakage figure", section_leak_figure, variants, out_dir)
    lines += _guarded("Per-class F1", section_per_class, variants)
    lines += _guarded("Search", section_search, exp, out_dir)
    lines += _guarded("Figures", section_figures, variants, out_dir)
    lines += _guarded("Failed, stopped and odd trials", section_trial_issues, exp, variants)
    lines += _guarded("Reproducibility", section_repro, exp)
    return "\n".join(lines).rstrip() + "\n"


def trials_listed(report: Path) -> int | None:
    """How many trials an existing report.md was built from (its first line; older reports: the
    header's "- trials: N" line), or None when it does not say."""
    try:
        text = report.read_text(errors="replace")
    except OSError:
        return None
    first = text.split("\n", 1)[0]
    m = FIRST_LINE_RE.fullmatch(first.strip()) or LEGACY_TRIALS_RE.search(text)
    return int(m.group(1)) if m else None


def _remove_stale_figures(fig_dir: Path) -> None:
    """Per-variant PNGs written by older versions of this module; the grid figures replace them."""
    if fig_dir.is_dir():
        for p in sorted(fig_dir.glob("confusion_*.png")) + sorted(fig_dir.glob("curves_*.png")):
            p.unlink()


def build_report(exp_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report for `exp_dir` to `out` (default `<exp_dir>/report.md`), figures in `figures/` beside it.

    Raises ReportError when `exp_dir` is not an experiment folder (missing, no trial folders, no
    sweep_meta.json), when a variant has duplicate seeds, or when `out` is an existing report built from
    more trials than `exp_dir` holds now. Returns the path of the written markdown file.
    """
    exp = load_experiment(exp_dir)
    out_path = Path(out) if out is not None else exp.path / "report.md"
    if out_path.exists() and out_path.is_dir():
        raise ReportError(f"{out_path}: --out is a directory; give a file name such as report.md")
    if out_path.exists():
        listed = trials_listed(out_path)
        if listed is not None and listed > len(exp.trials):
            raise ReportError(f"{out_path}: lists {listed} trials but {exp.path} holds {len(exp.trials)}; "
                              "refusing to overwrite it (rebuild from the complete experiment folder, or --out "
                              "another file)")
    group_variants(exp)  # duplicate seeds are refused before anything is written
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_figures(out_path.parent / FIGURES)
    out_path.write_text(render_report(exp, out_path.parent))
    return out_path


def export_raw(exp_dir: str | Path, dest: str | Path) -> Path:
    """Copy what a report is built from, and nothing heavier, from `exp_dir` into the new folder `dest`."""
    import shutil

    src, dest = Path(exp_dir), Path(dest)
    load_experiment(src)  # refuses a folder that is not an experiment, before anything is written
    if dest.exists():
        raise ReportError(f"--export {dest}: already exists; choose a new folder")
    files = [src / "sweep_meta.json"] + [f for sub in sorted(src.iterdir()) if sub.is_dir()
                                          for f in (sub / n for n in TRIAL_FILES) if f.is_file()]
    tuning = src / "tuning"
    if tuning.is_dir():  # nuisance-tuning trials: what each variant's tuned value was chosen from
        files += sorted(f for f in tuning.glob("*/*/*") if f.name in TRIAL_FILES and f.is_file())
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment_dir", help="<storage>/<name>/ folder written by sweep.run")
    ap.add_argument("--out", default=None, help="output markdown file (default: EXPERIMENT_DIR/report.md)")
    ap.add_argument("--export", default=None, metavar="DIR",
                    help="copy the experiment's small raw files (sweep_meta.json and every trial's params, per-epoch "
                         "results, final metrics and errors; no checkpoints or event files) into the new folder DIR "
                         "and build the report there: a folder to commit that rebuilds with `python -m sweep.report DIR`")
    args = ap.parse_args(argv)
    try:
        exp_dir = args.experiment_dir
        if args.export:
            if args.out:
                raise ReportError("--export builds DIR/report.md; it cannot be combined with --out")
            exp_dir = export_raw(args.experiment_dir, args.export)
        path = build_report(exp_dir, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
