"""The study's own sections: its claims judged against our runs (with the forest plot) and its table beside
ours. They appear only when the study's CNNs are among the variants (`is_study_ablation`)."""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from sweep import stats
from sweep.report_claims import (STUDY_REPORTED, ClaimResult, Comparison, claimed_difference_pp, evaluate_claims,
                                 family, reading, study_pct)
from sweep.report_format import STAT_NOTE, fmt_ci, md_table
from sweep.report_load import BASELINE, MODEL_ORDER, OFFICIAL, Experiment, Variant, baseline_for, is_search, official_variant
from sweep.report_tables import FIGURES, _trial_values


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


def is_study_ablation(variants: Sequence[Variant]) -> bool:
    """The study's baseline and at least one of its other four CNNs ran under the official protocol."""
    models = {v.model for v in variants if v.protocol == OFFICIAL and v.done}
    return BASELINE in models and bool(models & set(MODEL_ORDER[1:]))
