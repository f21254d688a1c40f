"""The study's numbers, the comparisons against a reference variant, and the verdict on each claim.

Every number the study reports lives in STUDY_REPORTED and nowhere else. Comparisons pair by seed when
seeds are shared (stats.compare) and are Holm-adjusted within their family: the rows of one table that
share one reference. Verdict names are defined in sweep.stats (HOLDS, DOES_NOT_HOLD, TIE, INCONCLUSIVE,
COLLAPSED, NOT_SETTLED).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sweep import stats
from sweep.report_format import fmt_diff, fmt_summary, test_name
from sweep.report_load import BASELINE, LEAKY, MODEL_ORDER, Variant, official_variant
from sweep.stats import Difference

# The study's tables 5.1 and 5.1.2, in percent: validation and test accuracy of its five CNNs.
STUDY_REPORTED = {
    "source": (
        'Analysing deep CNN components for emotion classification: an ablation study on ICML face '
        'dataset (2025)'
    ),
    "val_acc_pct": {"baseline": 48.05, "no_batchnorm": 54.25, "no_dropout": 47.26, "fewer_layers": 46.27,
                    "optimized": 85.12},
    "test_acc_pct": {"baseline": 47.23, "no_batchnorm": 52.8, "no_dropout": 43.95, "fewer_layers": 44.12,
                     "optimized": 80.38},
}
# What the study states of its recipe, as run settings (its preprocessing resizes the faces to 64x64).
STUDY_SETTINGS = {"data.input_size": 64}
STUDY_SPLIT_KEY = {"val": "val_acc_pct", "test": "test_acc_pct"}
DIFF_CLIP = (-1.0, 1.0)  # a difference of two accuracies cannot leave [-100, 100] pp

# (number, text, model, claimed sign vs baseline)
PAIRWISE_CLAIMS = (
    (1, "Removing batch norm improves accuracy over the baseline", "no_batchnorm", +1),
    (2, "Removing dropout lowers accuracy slightly", "no_dropout", -1),
    (3, "Fewer conv layers lowers accuracy", "fewer_layers", -1),
)
PAIRWISE_SPLIT = "val"  # the split the study states claims 1-3 on; one Holm family, so one split
CLAIM4 = "The optimized model is the best of the study's five variants"
CLAIM5 = "The optimized model reaches about 80% test accuracy"
SPLIT_NAME = {"train": "train", "val": "val", "test": "test"}


def study_pct(model: str, split: str) -> float | None:
    return STUDY_REPORTED[STUDY_SPLIT_KEY[split]].get(model)


@dataclass
class Comparison:
    """`variant` minus `reference` on one split; `p_adj` is Holm within the comparison's family."""

    variant: Variant
    reference: Variant
    split: str
    diff: Difference
    p_adj: float = float("nan")

    @property
    def collapsed(self) -> list[str]:
        return [f"{v.label} seed {t.seed} ({why})" for v in (self.variant, self.reference)
                for t, why in v.collapsed()]

    @property
    def unsettled(self) -> list[str]:
        out = []
        for v in (self.variant, self.reference):
            b = v.budget()
            if b.not_settled:
                out.append(f"{v.label}: {b.reason}")
        return out

    def verdict(self, claimed_sign: int = +1) -> str:
        return stats.verdict(self.diff, claimed_sign, self.p_adj, collapsed=bool(self.collapsed),
                             not_settled=bool(self.unsettled))

    def statistical(self, claimed_sign: int = +1) -> str:
        return stats.statistical_verdict(self.diff, claimed_sign, self.p_adj)

    def cell(self) -> str:
        return fmt_diff(self.diff, self.p_adj if self.diff.tested else None)


def compare_variants(v: Variant, ref: Variant, split: str, key: str = "acc") -> Difference:
    return stats.compare(v.by_seed(split, key), ref.by_seed(split, key), clip=DIFF_CLIP)


def family(pairs: Sequence[tuple[Variant, Variant]], split: str, key: str = "acc") -> list[Comparison]:
    """Comparisons of each (variant, reference) on `split`, Holm-adjusted together."""
    comps = [Comparison(v, r, split, compare_variants(v, r, split, key)) for v, r in pairs]
    for c, adj in zip(comps, stats.holm([c.diff.p for c in comps])):
        c.p_adj = adj
    return comps


def reading(verdict: str) -> str:
    """A two-sided comparison's verdict in words (claimed sign +1: holds = higher)."""
    return {stats.HOLDS: "higher", stats.DOES_NOT_HOLD: "lower"}.get(verdict, verdict)


@dataclass(frozen=True)
class ClaimResult:
    number: int
    claim: str
    split: str
    study: str
    ours: str
    difference: str
    verdict: str
    note: str = ""
    comparisons: tuple = field(default=(), compare=False)  # the Comparison(s) behind the verdict


def _context_note(comps: Sequence[Comparison], claimed_sign: int, verdict: str) -> str:
    """Why a verdict is collapsed / not settled, and what the interval alone says then."""
    notes = []
    collapsed = sorted({x for c in comps for x in c.collapsed})
    unsettled = sorted({x for c in comps for x in c.unsettled})
    if verdict == stats.COLLAPSED:
        notes.append("collapsed predictions: " + "; ".join(collapsed))
    if verdict in (stats.COLLAPSED, stats.NOT_SETTLED) and unsettled:
        notes.append("still improving: " + "; ".join(unsettled))
    if verdict in (stats.COLLAPSED, stats.NOT_SETTLED):
        inner = [c.statistical(claimed_sign) for c in comps]
        notes.append("the interval alone would say: " + ", ".join(inner))
    for c in comps:
        if not c.diff.tested and c.diff.note:
            notes.append(f"{c.variant.label} vs {c.reference.label}: {c.diff.note}")
        elif (c.diff.tested and c.diff.p < stats.ALPHA <= c.p_adj
              and verdict not in (stats.COLLAPSED, stats.NOT_SETTLED)):
            notes.append(f"vs {c.reference.label}: p<0.05 before Holm, not after")
    return "; ".join(notes)


def _combine(verdicts: Sequence[str]) -> str:
    """Claim 4 from its comparisons: any does-not-hold decides; all must hold; a tie is not 'best'."""
    if stats.DOES_NOT_HOLD in verdicts:
        return stats.DOES_NOT_HOLD
    if verdicts and all(v == stats.HOLDS for v in verdicts):
        return stats.HOLDS
    if stats.TIE in verdicts:
        return stats.TIE
    return stats.INCONCLUSIVE


def evaluate_claims(variants: Sequence[Variant], pairwise_split: str | None = None) -> list[ClaimResult]:
    """Decide each of the study's five claims from our runs (official protocol, no rebalancing).

    Claims 1-3 compare validation accuracy (where the paper states them; `pairwise_split` overrides it, for
    variants chosen on validation) and form one Holm family; claim 4 compares test accuracy against the four
    other study models (one family of four); claim 5 sets the optimized model's test interval against the
    paper's test accuracy.
    """
    base = official_variant(BASELINE, variants)
    results: list[ClaimResult] = []

    split = pairwise_split or PAIRWISE_SPLIT
    pending = []
    for number, text, model, sign in PAIRWISE_CLAIMS:
        s_m, s_b = study_pct(model, split), study_pct(BASELINE, split)
        study = f"{split} {s_m:.2f} vs {s_b:.2f} ({s_m - s_b:+.2f} pp)"
        v = official_variant(model, variants)
        if v is None or base is None or not v.done or not base.done:
            missing = model if (v is None or not v.done) else BASELINE
            results.append(ClaimResult(number, text, split, study, "—", "—", stats.INCONCLUSIVE,
                                       f"{missing} not run"))
            continue
        pending.append((number, text, model, sign, study, v))
    comps = family([(p[5], base) for p in pending], split)
    for (number, text, model, sign, study, v), c in zip(pending, comps):
        verdict = c.verdict(sign)
        ours = f"{split} {fmt_summary(v.summary(split))} vs {fmt_summary(base.summary(split))}"
        results.append(ClaimResult(number, text, split, study, ours, f"{c.cell()}; {test_name(c.diff)}",
                                   verdict, _context_note([c], sign, verdict), (c,)))

    test = STUDY_REPORTED["test_acc_pct"]
    others_study = max(x for m, x in test.items() if m != "optimized")
    study4 = (f"test {test['optimized']:.2f} vs ≤ {others_study:.2f} (test). The paper's text set the optimized "
              f"model's test {test['optimized']:.2f} against the ablations' validation (≤ "
              f"{max(x for m, x in STUDY_REPORTED['val_acc_pct'].items() if m != 'optimized'):.2f}); "
              "compared here like with like, test against test")
    opt = official_variant("optimized", variants)
    # the study's claim is about its own five CNNs; stronger models beyond it are not part of it
    others = [official_variant(m, variants) for m in MODEL_ORDER if m != "optimized"]
    others = [o for o in others if o is not None and o.done]
    if opt is None or not opt.done or not others:
        results.append(ClaimResult(4, CLAIM4, "test", study4, "—", "—", stats.INCONCLUSIVE,
                                   "optimized not run" if opt is None or not opt.done else "nothing to compare"))
    else:
        comps4 = family([(opt, o) for o in others], "test")
        if any(c.collapsed for c in comps4):
            v4 = stats.COLLAPSED
        elif any(c.unsettled for c in comps4):
            v4 = stats.NOT_SETTLED
        else:
            v4 = _combine([c.statistical(+1) for c in comps4])
        parts = [f"vs {c.reference.model}: {c.cell()} ({c.statistical(+1)})" for c in comps4]
        results.append(ClaimResult(4, CLAIM4, "test", study4, f"test {fmt_summary(opt.summary('test'))}",
                                   "; ".join(parts), v4, _context_note(comps4, +1, v4), tuple(comps4)))

    target = test["optimized"] / 100.0
    study5 = f"test {test['optimized']:.2f}"
    if opt is None or not opt.done:
        results.append(ClaimResult(5, CLAIM5, "test", study5, "—", "—", stats.INCONCLUSIVE, "optimized not run"))
        return sorted(results, key=lambda c: c.number)
    s = opt.summary("test")
    notes = []
    if not s.has_interval:
        inner = stats.INCONCLUSIVE
        notes.append(f"{s.note}: no interval")
    elif s.lo >= target:
        inner = stats.HOLDS
    elif s.hi < target:
        inner = stats.DOES_NOT_HOLD
        notes.append(f"our interval lies below {test['optimized']:.2f}")
    else:
        inner = stats.INCONCLUSIVE
    collapsed = opt.collapsed()
    budget = opt.budget()
    if collapsed:
        v5 = stats.COLLAPSED
        notes.insert(0, "collapsed predictions: " + "; ".join(f"seed {t.seed} ({why})" for t, why in collapsed))
    elif budget.not_settled:
        v5 = stats.NOT_SETTLED
        notes.insert(0, f"still improving: {budget.reason}")
    else:
        v5 = inner
    if v5 != inner:
        notes.append(f"the interval alone would say: {inner}")
    diff = f"{100 * s.mean - test['optimized']:+.2f} pp vs the study" if s.n else "—"
    leaky = [v for v in variants if v.model == "optimized" and v.protocol == LEAKY and v.done]
    if leaky:
        notes.append(f"under the leaky protocol: test {fmt_summary(leaky[0].summary('test'))} (see leakage audit)")
    results.append(ClaimResult(5, CLAIM5, "test", study5, f"test {fmt_summary(s)}", diff, v5, "; ".join(notes)))
    return sorted(results, key=lambda c: c.number)


def claimed_difference_pp(model: str, split: str) -> float | None:
    """The study's difference model - baseline on `split`, in pp (for the forest plot's markers)."""
    a, b = study_pct(model, split), study_pct(BASELINE, split)
    return None if a is None or b is None or model == BASELINE else a - b
