"""Leakage audit: what the study's leaky protocol adds to test accuracy, isolated from the class mix.

Per model with a leaky run there are up to three roles:
- official: the honest split (PrivateTest held out), no rebalancing;
- control: the honest split with oversampling of the training split after the split (about the same
  class mix and number of training faces as the leak, and no copies of test faces in train);
- leaky: `leaky-oversample-before-split` (oversampling the pooled data, then splitting).
Each trial's final.json may carry `metrics.test.subsets.{copy_in_train,no_copy_in_train}` (test faces
with / without an exact pixel copy in that trial's training set); older trials lack it, and trials before
2026-12-03 lack its per-class counts (`per_class_n`, `per_class_correct`), which the within-class comparison
of the two subsets needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fer_data.classes import CLASS_NAMES
from sweep import stats
from sweep.report_claims import DIFF_CLIP
from sweep.report_format import fmt_ci, fmt_diff, md_table, pct, test_name
from sweep.report_load import LEAKY, OFFICIAL, SUBSETS, Experiment, Variant, _num
from sweep.stats import Difference, Summary

ROLES = ("official", "control", "leaky")
ROLE_TEXT = {
    "official": "official split, no rebalancing",
    "control": "official split, oversampled after the split (honest control)",
    "leaky": "leaky: oversampled before the split",
}


def _others(v: Variant) -> dict:
    return {k: x for k, x in v.extras.items() if k != "data.balance"}


def roles_for(leaky: Variant, variants: Sequence[Variant]) -> dict[str, Variant | None]:
    """The official and control variants matching a leaky variant's model and other axes."""
    same = [v for v in variants if v.model == leaky.model and v.protocol == OFFICIAL and _others(v) == _others(leaky)]
    pick = lambda vs: max(vs, key=lambda v: len(v.done)) if vs else None  # noqa: E731
    return {"official": pick([v for v in same if v.balance == "none"]),
            "control": pick([v for v in same if v.balance == "oversample"]),
            "leaky": leaky}


def test_majority(v: Variant) -> float | None:
    """The test split's majority-class rate (from the first completed trial's support)."""
    for t in v.done:
        r = stats.majority_rate(t.support("test"))
        if r is not None:
            return r
    return None


@dataclass(frozen=True)
class RoleRow:
    role: str
    variant: Variant
    n: int
    majority: float | None
    acc: Summary
    recall: Summary
    copy_n: float | None  # mean number of test faces in the subset
    copy_acc: Summary
    copy_recall: Summary
    nocopy_n: float | None
    nocopy_acc: Summary
    nocopy_recall: Summary
    copy_minus_nocopy: Difference  # paired within each trial (same model, same test split)
    within_class: Difference  # the same at a common class mix (Mantel-Haenszel over classes)
    classes_left_out: tuple[str, ...]  # classes with faces in one subset only (in some trial): no pair
    strata: list  # per_class_table's rows; [] when no trial records per-class counts
    missing_subsets: int  # completed trials without metrics.test.subsets


def _mean_n(v: Variant, subset: str) -> float | None:
    ns = [x for x in (v_.metric("test", "n", subset) for v_ in v.done) if x is not None]
    return sum(ns) / len(ns) if ns else None


def _class_counts(t, subset: str) -> tuple[list, list] | None:
    sub = (t.split_metrics("test").get("subsets") or {}).get(subset)
    if not isinstance(sub, dict):
        return None
    n, correct = sub.get("per_class_n"), sub.get("per_class_correct")
    ok = lambda xs: (isinstance(xs, list) and len(xs) == len(CLASS_NAMES)  # noqa: E731
                     and all(isinstance(x, int) and x >= 0 for x in xs))
    # a malformed pair counts as not recorded: the headline says over how many trials the gap was paired
    return (n, correct) if ok(n) and ok(correct) and all(c <= k for c, k in zip(correct, n)) else None


def subset_counts(v: Variant) -> list[tuple[tuple[list, list], tuple[list, list]]]:
    """((n, correct) copied, (n, correct) not copied) per class, for each trial that records both."""
    counts = ((_class_counts(t, SUBSETS[0]), _class_counts(t, SUBSETS[1])) for t in v.done)
    return [(c, n) for c, n in counts if c is not None and n is not None]


def within_class(counts) -> tuple[Difference, tuple[str, ...]]:
    """Copied minus not-copied test accuracy at a common class mix, paired over the trials (`subset_counts`),
    and the classes that could not be compared (absent from one subset)."""
    pairs, left_out = [], set()
    for copy, nocopy in counts:
        acc = stats.stratified_accuracies(*copy, *nocopy)
        if acc is not None:
            pairs.append(acc)
        left_out |= {i for i, (a, b) in enumerate(zip(copy[0], nocopy[0])) if bool(a) != bool(b)}
    names = tuple(CLASS_NAMES[i] for i in sorted(left_out))
    return stats.paired([a for a, _ in pairs], [b for _, b in pairs], clip=DIFF_CLIP), names


def per_class_table(counts) -> list[list]:
    """Rows of the within-class comparison's strata: per class, faces per seed and pooled accuracy of each
    subset over the trials (`subset_counts`); [] when no trial records per-class counts."""
    if not counts:
        return []
    rows = []
    for i, name in enumerate(CLASS_NAMES):
        cn, cc, nn, nc = (sum(x[j][k][i] for x in counts) for j in (0, 1) for k in (0, 1))
        acc_c, acc_n = (cc / cn if cn else None), (nc / nn if nn else None)
        diff = f"{100 * (acc_c - acc_n):+.2f}" if acc_c is not None and acc_n is not None else "—"
        rows.append([name, _n(cn / len(counts)), pct(acc_c), _n(nn / len(counts)), pct(acc_n), diff])
    return rows


def role_row(role: str, v: Variant) -> RoleRow:
    s = lambda key, subset=None: v.summary("test", key, subset)  # noqa: E731
    with_both = [t for t in v.done
                 if t.metric("test", "acc", SUBSETS[0]) is not None and t.metric("test", "acc", SUBSETS[1]) is not None]
    within = stats.paired([t.metric("test", "acc", SUBSETS[0]) for t in with_both],
                          [t.metric("test", "acc", SUBSETS[1]) for t in with_both], clip=DIFF_CLIP)
    missing = sum(1 for t in v.done if not isinstance(t.split_metrics("test").get("subsets"), dict))
    counts = subset_counts(v)
    return RoleRow(role, v, len(v.done), test_majority(v), s("acc"), s("macro_recall"),
                   _mean_n(v, SUBSETS[0]), s("acc", SUBSETS[0]), s("macro_recall", SUBSETS[0]),
                   _mean_n(v, SUBSETS[1]), s("acc", SUBSETS[1]), s("macro_recall", SUBSETS[1]),
                   within, *within_class(counts), per_class_table(counts), missing)


@dataclass(frozen=True)
class LeakResult:
    model: str
    rows: dict  # role -> RoleRow
    inflation: Difference | None  # leaky - control, full test accuracy
    inflation_recall: Difference | None  # leaky - control, macro recall
    vs_official: Difference | None  # leaky - official (also mixes training size), when no control


def leak_audit(variants: Sequence[Variant]) -> list[LeakResult]:
    out = []
    for lv in variants:
        if lv.protocol != LEAKY or not lv.done:
            continue
        roles = roles_for(lv, variants)
        rows = {r: role_row(r, v) for r, v in roles.items() if v is not None and v.done}
        ctrl, off = roles["control"], roles["official"]

        def cmp(a, b, key):
            return stats.compare(a.by_seed("test", key), b.by_seed("test", key), clip=DIFF_CLIP)

        infl = cmp(lv, ctrl, "acc") if ctrl is not None and ctrl.done else None
        infl_r = cmp(lv, ctrl, "macro_recall") if ctrl is not None and ctrl.done else None
        vs_off = cmp(lv, off, "acc") if off is not None and off.done else None
        name = lv.model + "".join(f" [{k}={x}]" for k, x in _others(lv).items())
        out.append(LeakResult(name, rows, infl, infl_r, vs_off))
    return out


def _n(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


def _audit_by_protocol(meta: dict) -> dict[str, dict]:
    """sweep_meta.json `data_audit`: a dict keyed by protocol; tolerate a single audit or a list."""
    audit = meta.get("data_audit")
    if isinstance(audit, list):
        return {str(a.get("protocol", i)): a for i, a in enumerate(audit) if isinstance(a, dict)}
    if isinstance(audit, dict):
        if "test_exact_copies_in_train_fraction" in audit:
            return {str(audit.get("protocol", "?")): audit}
        return {str(k): v for k, v in audit.items() if isinstance(v, dict)}
    return {}


def section_leakage(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    results = leak_audit(variants)
    if not any(v.protocol == LEAKY for v in variants):
        return []
    out = ["## Leakage audit", ""]
    out.append(
        f"The `{LEAKY}` protocol oversamples the pooled data before splitting it, as many FER notebooks do, "
        "so copies of one image land in both train and test and test accuracy rewards memorisation. Three "
        "runs of one model isolate the leak: the official split; an honest control that oversamples the "
        "training split after the official split (about the same class mix and number of training faces as "
        "the leak, no test face copied into train); and the leaky protocol. For each: accuracy and macro "
        "recall on the full test split, and on its faces with (`copy_in_train`) and without "
        "(`no_copy_in_train`) an exact pixel copy in that run's training set. Values are in percent, "
        "mean [95% interval] over seeds."
    )
    out.append("")
    if not results:
        out.append("_No completed leaky trial._")
        out.append("")
    for res in results:
        out.append(f"### {res.model}")
        out.append("")
        rows = []
        for role in ROLES:
            r = res.rows.get(role)
            if r is None:
                rows.append([role, ROLE_TEXT[role], "0 (not run)"] + ["—"] * 11)
                continue
            rows.append([role, ROLE_TEXT[role], r.n, pct(r.majority), fmt_ci(r.acc), fmt_ci(r.recall),
                         _n(r.copy_n), fmt_ci(r.copy_acc), fmt_ci(r.copy_recall),
                         _n(r.nocopy_n), fmt_ci(r.nocopy_acc), fmt_ci(r.nocopy_recall),
                         fmt_diff(r.copy_minus_nocopy) if r.copy_minus_nocopy.n else "—",
                         fmt_diff(r.within_class) if r.within_class.n else "—"])
        out += md_table(["role", "protocol", "seeds", "test majority-class rate", "test acc", "test macro R",
                         "copy_in_train faces", "acc (copy)", "macro R (copy)", "no_copy faces",
                         "acc (no copy)", "macro R (no copy)", "acc copy − no copy (same trials)",
                         "the same within class (Mantel-Haenszel)"], rows)
        out.append("")
        missing = sum(r.missing_subsets for r in res.rows.values())
        if missing:
            out.append(f"_{missing} completed trial(s) have no `metrics.test.subsets` in final.json (written "
                       "before the copy / no-copy split existed): their subset columns are missing._")
            out.append("")
        out.append("**Headline.**")
        out.append("")
        if res.inflation is not None:
            out.append(f"- Inflation the leak causes (leaky − control, full test accuracy): "
                       f"{fmt_diff(res.inflation)} ({test_name(res.inflation)}); macro recall: "
                       f"{fmt_diff(res.inflation_recall)}.")
        else:
            out.append("- No honest control (official split with `data.balance=oversample`) was run: the "
                       "inflation the leak causes cannot be separated from the larger, rebalanced training set.")
            if res.vs_official is not None:
                out.append(f"- Leaky − official (full test accuracy; also mixes training-set size and class "
                           f"mix): {fmt_diff(res.vs_official)} ({test_name(res.vs_official)}).")
        lk = res.rows.get("leaky")
        if lk is not None:
            if lk.copy_minus_nocopy.n:
                out.append(f"- Within the leaky run, accuracy on copied minus not-copied test faces: "
                           f"{fmt_diff(lk.copy_minus_nocopy)} (paired over {lk.copy_minus_nocopy.n_pairs} "
                           "trial(s): same model, same test split).")
                if lk.within_class.n:
                    left = (f"; {', '.join(lk.classes_left_out)} left out, absent from one subset"
                            if lk.classes_left_out else "")
                    out.append(f"- The same at a common class mix (each class's copied minus not-copied accuracy, "
                               f"Mantel-Haenszel weighted{left}): {fmt_diff(lk.within_class)} (paired over "
                               f"{lk.within_class.n_pairs} trial(s)). Within a class, which faces have a copy is "
                               "mostly left to the random oversampling and split (FER-2013's own duplicates aside), "
                               "so this gap estimates memorisation rather than class difficulty.")
                else:
                    out.append("- The same within each class: not available (its trials do not record per-class "
                               "counts per subset, written before 2026-12-03).")
            else:
                out.append("- Within the leaky run, copied vs not-copied faces: not available (no trial has "
                           "`metrics.test.subsets`).")
        majorities = {r.role: r.majority for r in res.rows.values()}
        lm = majorities.get("leaky")
        om = next((majorities[k] for k in ("official", "control") if majorities.get(k) is not None), None)
        out.append(
            f"- Class mix: the leaky protocol's test split has a majority-class rate of {pct(lm)}% "
            f"(uniform chance 1/7 = {100 / 7:.2f}%); the official PrivateTest's is {pct(om)}%. The full-test "
            "comparison across protocols therefore mixes a different class mix into the difference, which macro "
            "recall does not. The copy / no-copy split within one run holds the model and the test split fixed, "
            "but its two subsets need not share a class mix (under the leaky protocol the copies are mostly faces "
            "of the oversampled minority classes), so their raw gap mixes class difficulty into memorisation; "
            "the within-class column compares them class by class instead.")
        out.append("")
        for role, r in res.rows.items():
            if r.strata:
                out.append(f"Per class, {role} run: test faces with and without a copy in train (accuracy pooled "
                           "over seeds; faces per seed):")
                out.append("")
                out += md_table(["class", "faces with a copy", "acc (copy)", "faces without", "acc (no copy)",
                                 "copy − no copy (pp)"], r.strata)
                out.append("")
    audits = _audit_by_protocol(exp.meta)
    if audits:
        arows = []
        for proto, a in sorted(audits.items()):
            frac = _num(a.get("test_exact_copies_in_train_fraction"))
            extra = ", ".join(f"{k}={a[k]}" for k in sorted(a)
                              if k not in ("protocol", "test_exact_copies_in_train_fraction")
                              and not isinstance(a[k], (dict, list)))
            arows.append([proto, "—" if frac is None else f"{100 * frac:.2f}%", extra or "—"])
        out.append("Fraction of test images with an exact pixel copy in train (from `sweep_meta.json` `data_audit`):")
        out.append("")
        out += md_table(["protocol", "test images with an exact copy in train", "other audit fields"], arows)
    else:
        out.append("_`sweep_meta.json` has no `data_audit`: the exact-copy fraction is not available._")
    out.append("")
    return out


def leak_bars_data(res: LeakResult) -> list[tuple[str, str, float, float, float]]:
    """(role, subset, mean, lo, hi) in percent for the leak figure; NaN ends when there is no interval."""
    out = []
    for role in ROLES:
        r = res.rows.get(role)
        if r is None:
            continue
        for subset, s in (("all", r.acc), ("copy", r.copy_acc), ("no copy", r.nocopy_acc)):
            if s.n:
                lo = 100 * s.lo if s.has_interval else math.nan
                hi = 100 * s.hi if s.has_interval else math.nan
                out.append((role, subset, 100 * s.mean, lo, hi))
    return out


__all__ = ["LeakResult", "RoleRow", "leak_audit", "per_class_table", "roles_for", "section_leakage", "subset_counts",
           "leak_bars_data"]
