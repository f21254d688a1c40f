"""Whether the verdicts depend on a setting: one grid run twice, read line by line. Either with one nuisance
setting shared by every variant and with each variant's own tuned values (a grid's `tune:` block), or at two
values of any constant setting (input size, epochs, learning rate).

The tuning playbook compares each variant at its own best nuisance setting (a learning rate that suits the
baseline may starve a variant without batch norm). When a reading changes between the two runs, the verdict
is about the setting as much as about the component. The counterpart is another experiment folder of the same
grid: `python -m sweep.report TUNED --shared SHARED`; `--export DIR` copies the counterpart's raw files into
`DIR/shared/`, where the report finds it again, so a committed report rebuilds from its own folder.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sweep import stats
from sweep.report_axes import axis_families, scientific_axes
from sweep.report_claims import evaluate_claims, reading
from sweep.report_format import fmt_interval, fmt_p, md_table, test_name
from sweep.report_load import (ADDED_LATER, Experiment, ReportError, Variant, constants, differing_settings,
                               group_variants, load_experiment, run_host_kind, tuned_keys)
from sweep.report_study import is_study_ablation

SHARED_DIR = "shared"  # where an exported experiment keeps its shared-setting counterpart
DECISIVE = ("higher", "lower", stats.HOLDS, stats.DOES_NOT_HOLD)  # a change between two of these reverses


@dataclass
class Counterpart:
    exp: Experiment
    variants: list[Variant]
    where: str  # how the report names it: `shared/` inside the folder, else the path given


def find_counterpart(exp: Experiment, given: str | Path | None = None) -> Counterpart | None:
    """The experiment to read `exp` against: `given`, else `exp`'s own `shared/` folder, else None.

    Raises ReportError when it is not an experiment folder or its scientific axes differ from `exp`'s."""
    if given is None:
        inside = exp.path / SHARED_DIR
        if not (inside / "sweep_meta.json").is_file():
            return None
        path, where = inside, f"`{SHARED_DIR}/`"
    else:
        path, where = Path(given), f"`{given}`"
    other = load_experiment(path)
    mine, theirs = list(scientific_axes(exp)), list(scientific_axes(other))
    if mine != theirs:
        raise ReportError(f"--shared {path}: its scientific axes ({', '.join(theirs)}) differ from {exp.path.name}'s "
                          f"({', '.join(mine)}); the sensitivity reads the same grid run two ways")
    return Counterpart(other, group_variants(other), where)


def setting(exp: Experiment, keys: Sequence[str], *, tuned: bool = True) -> str:
    """`tuned` or `shared train.lr=0.001` (the values of the keys the other run tuned); with `tuned=False` (neither
    run tuned anything) the values of the settings that differ, e.g. `data.input_size=48`."""
    if tuned_keys(exp.meta):
        return "tuned"
    consts = constants(exp)
    if not tuned:
        def value(k):
            return consts[k] if k in consts else f"{ADDED_LATER[k]} (not recorded)" if k in ADDED_LATER else "unset"

        return ", ".join(f"{k}={value(k)}" for k in keys) or "the same settings"
    vals = ", ".join(f"{k}={consts[k]}" for k in keys if k in consts)
    return f"shared {vals}".strip()


def change(here: str, there: str) -> str:
    if here == there:
        return "no"
    if here in DECISIVE and there in DECISIVE:  # never higher vs holds: claims and comparisons are read apart
        return "**reverses**"
    return "**yes**"


def _comparison_rows(exp: Experiment, variants: Sequence[Variant]) -> dict[tuple, tuple[str, str]]:
    """(axis, variant, reference, split) -> (difference with its interval, reading)."""
    out = {}
    for split in ("val", "test"):
        for fam in axis_families(exp, variants, split):
            for c in fam.comparisons:
                out[(fam.axis, c.variant.label, c.reference.label, split)] = (fmt_interval(c.diff),
                                                                              reading(c.verdict(+1)))
    return out


def _setting_effect_rows(variants: Sequence[Variant], others: Sequence[Variant]) -> list[list]:
    """Each variant run in both experiments, this run minus the other, paired over the seeds both ran (Welch when
    fewer than two are shared); Holm within each split over the variants."""
    theirs = {v.label: v for v in others}
    rows = []
    for split in ("val", "test"):
        diffs = []
        for v in variants:
            if v.label in theirs:
                a, b = v.by_seed(split), theirs[v.label].by_seed(split)
                if a and b:
                    d = stats.compare(a, b)
                    seeds = sorted(set(a) & set(b), key=repr) if d.test == "paired" else None
                    diffs.append((v.label, d, seeds, a, b))
        adjusted = stats.holm([d.p for _, d, *_ in diffs])
        for (label, d, seeds, a, b), p_adj in zip(diffs, adjusted):
            means = [100 * float(np.mean([m[s] for s in seeds] if seeds else list(m.values()))) for m in (a, b)]
            rows.append([label, split, ", ".join(str(s) for s in seeds) if seeds else "all (unpaired)",
                         f"{means[0]:.2f}", f"{means[1]:.2f}", fmt_interval(d), test_name(d), fmt_p(d.p),
                         fmt_p(p_adj), reading(stats.statistical_verdict(d, +1, p_adj))])
    return rows


def section_sensitivity(exp: Experiment, variants: Sequence[Variant], other: Counterpart) -> list[str]:
    tuned = tuned_keys(exp.meta) or tuned_keys(other.exp.meta)
    keys = tuned or differing_settings(exp, other.exp)
    here, there = setting(exp, keys, tuned=bool(tuned)), setting(other.exp, keys, tuned=bool(tuned))
    what = "the nuisance setting" if tuned else ", ".join(keys) or "nothing in the settings (a replication)"
    mine, theirs = _comparison_rows(exp, variants), _comparison_rows(other.exp, other.variants)
    rows, changed, reversed_ = [], 0, 0
    for key in list(mine) + [k for k in theirs if k not in mine]:
        axis, label, ref, split = key
        a, b = mine.get(key, ("not run", "—")), theirs.get(key, ("not run", "—"))
        ch = change(a[1], b[1]) if key in mine and key in theirs else "—"
        changed += ch != "no" and ch != "—"
        reversed_ += ch == "**reverses**"
        rows.append([label, split, ref, f"{a[0]}: {a[1]}", f"{b[0]}: {b[1]}", ch, axis])
    intro = (f"The same grid run twice: this experiment ({here}) and {other.where} "
             f"(`{other.exp.meta.get('name', other.exp.path.name)}`, {there}).")
    if rows:
        intro += (" Each comparison of the section *Differences from the reference level*, computed the same way in "
                  "both runs (paired t-test over shared seeds, Holm within each run), side by side. A reading that "
                  f"**reverses** (higher in one run, lower in the other) depends on {what}; a change between a "
                  "decisive reading and inconclusive or tie may be the intervals' width alone.")
    out = [f"## Sensitivity to {'the nuisance setting' if tuned else 'the setting'}", "", intro, ""]
    hosts = [run_host_kind(e.meta) for e in (exp, other.exp)]
    if all(hosts) and hosts[0] != hosts[1]:  # e.g. bf16 on one, fp32 on the other: a difference of its own
        out += [f"The two ran on different kinds of host: {hosts[0]} here, {hosts[1]} there.", ""]
    if rows:
        out += md_table(["variant", "split", "reference", f"this run ({here}): Δ pp [95%]: reading",
                         f"{other.where} ({there}): Δ pp [95%]: reading", "reading changes", "axis"], rows)
        both = sum(1 for k in mine if k in theirs)
        out += ["", f"{changed} of {both} readings present in both runs change; {reversed_} reverse.", ""]
    else:  # e.g. two runs of one CNN at two learning rates: only what the setting does to it compares
        out += ["_Neither run has a variant with a completed reference-level partner: no within-run comparison to "
                "set side by side._", ""]
    if effect := _setting_effect_rows(variants, other.variants):
        out += [f"What the setting does to each variant run in both: its accuracy in this run minus in {other.where}, "
                "paired over the seeds both ran, Holm within each split; the means are over those seeds. A seed fixes "
                "the batch order and the flips, so where both runs' code draws them alike a pair differs in the "
                "setting alone; where a change between their commits (each run's *Reproducibility*) draws them "
                "otherwise, the pairs share only the seed number: the test stays valid, only less sharp.", ""]
        out += md_table(["variant", "split", "seeds", f"this run ({here}) %", f"{other.where} ({there}) %",
                         "Δ pp [95%]", "test", "p", "Holm p", "reading"], effect)
        out.append("")
    if is_study_ablation(variants) and is_study_ablation(other.variants):
        def verdict(c) -> str:
            return "not run" if c is None or c.ours == "—" else c.verdict

        theirs_ = {c.number: c for c in evaluate_claims(other.variants)}
        crow = []
        for c in evaluate_claims(variants):
            a, b = verdict(c), verdict(theirs_.get(c.number))
            if a != "not run" or b != "not run":
                crow.append([c.number, c.claim, c.split, a, b, "—" if "not run" in (a, b) else change(a, b)])
        out += ["The study's claims (verdicts as in *The study's claims*; holds / does not hold take the "
                "place of higher / lower):", ""]
        out += md_table(["#", "claim", "split", f"this run ({here})", f"{other.where} ({there})",
                         "verdict changes"], crow)
        out.append("")
    return out
