"""Tests for `sweep.stats`: every number here is checked against a hand computation (t-table values,
Holm by hand) or scipy's reference implementation. Pure functions: no files, no Ray."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from sweep import stats
from sweep.stats import Difference


def test_interval_arithmetic_matches_hand_computation():
    s = stats.summarize([0.50, 0.52, 0.54])
    assert s.n == 3
    assert s.mean == pytest.approx(0.52)
    assert s.std == pytest.approx(0.02)
    # t(0.975, df=2) = 4.302653 (table value) -> half-width 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert s.hi - s.mean == pytest.approx(0.049683, abs=1e-6)
    assert s.mean - s.lo == pytest.approx(0.049683, abs=1e-6)


def test_summary_small_n_zero_variance_and_clip():
    one = stats.summarize([0.4])
    assert one.n == 1 and one.mean == 0.4 and not one.has_interval and math.isnan(one.std)
    assert one.note == "n<2"
    assert stats.summarize([]).n == 0
    # missing / non-finite values from an odd trial are dropped, not propagated
    assert stats.summarize([0.5, None, float("nan"), 0.7]).mean == pytest.approx(0.6)
    flat = stats.summarize([0.3, 0.3, 0.3])
    assert flat.std == 0.0 and not flat.has_interval and flat.note == "zero variance"
    # 0.98, 0.99, 1.00: the t interval reaches 1.0248; an accuracy cannot exceed 1
    high = stats.summarize([0.98, 0.99, 1.00], clip=(0.0, 1.0))
    assert high.hi == 1.0 and high.lo == pytest.approx(0.99 - 4.302653 * 0.01 / math.sqrt(3), abs=1e-6)


def test_welch_difference_matches_hand_computation():
    a, b = [0.55, 0.56, 0.57], [0.48, 0.49, 0.50]
    d = stats.welch(a, b)
    assert d.test == "welch" and d.diff == pytest.approx(0.07)
    # equal variances 1e-4 and n=3: se = sqrt(2e-4/3), Welch df = 4, t(0.975, 4) = 2.776445
    se = math.sqrt(2e-4 / 3)
    assert d.df == pytest.approx(4.0)
    assert d.hi - d.diff == pytest.approx(2.776445 * se, rel=1e-5)
    assert d.p == pytest.approx(0.0010167, rel=1e-3)  # t = 0.07 / se = 8.573 on 4 df, two-sided
    assert d.effect == pytest.approx(7.0)  # Cohen's d: 0.07 / pooled sd 0.01
    nd = stats.welch([0.5], b)
    assert not nd.tested and nd.diff == pytest.approx(0.01) and nd.note == "n<2"


def test_welch_zero_variance_is_said_not_p_zero():
    d = stats.welch([0.3, 0.3], [0.5, 0.5])
    assert d.diff == pytest.approx(-0.2)
    assert not d.tested and math.isnan(d.p) and math.isnan(d.lo) and math.isnan(d.hi)
    assert "zero variance" in d.note
    # one side flat is fine for Welch: the other side's variance gives the standard error
    assert stats.welch([0.3, 0.3], [0.5, 0.52]).tested


def test_paired_matches_hand_computation_and_scipy():
    a, b = [0.50, 0.52, 0.55], [0.48, 0.49, 0.50]
    d = stats.paired(a, b)
    # differences 0.02, 0.03, 0.05: mean 0.033333, sd 0.015275, se 0.0088192, t = 3.7796 on 2 df
    assert d.test == "paired" and d.n_pairs == 3 and d.df == 2
    assert d.diff == pytest.approx(0.033333, abs=1e-6)
    assert d.hi - d.diff == pytest.approx(4.302653 * 0.0088192, rel=1e-4)
    assert d.p == pytest.approx(st.ttest_rel(a, b).pvalue, rel=1e-9)
    assert d.effect_name == "d_z" and d.effect == pytest.approx(0.033333 / 0.015275, rel=1e-4)
    flat = stats.paired([0.5, 0.6], [0.4, 0.5])  # every seed differs by exactly 0.1
    assert not flat.tested and "zero variance" in flat.note and flat.diff == pytest.approx(0.1)
    assert stats.paired([0.5], [0.4]).note == "n<2"


def test_compare_pairs_by_seed_value_and_falls_back_to_welch():
    a = {2: 0.55, 0: 0.50, 1: 0.52, 3: 0.90}  # seed 3 only in a: left out of the pairs
    b = {0: 0.48, 1: 0.49, 2: 0.50}
    d = stats.compare(a, b)
    assert d.test == "paired" and d.n_pairs == 3
    assert d.diff == pytest.approx(stats.paired([0.50, 0.52, 0.55], [0.48, 0.49, 0.50]).diff)
    assert d.p == pytest.approx(st.ttest_rel([0.50, 0.52, 0.55], [0.48, 0.49, 0.50]).pvalue)
    disjoint = stats.compare({0: 0.50, 1: 0.52}, {5: 0.40, 6: 0.43})
    assert disjoint.test == "welch" and disjoint.p == pytest.approx(
        st.ttest_ind([0.50, 0.52], [0.40, 0.43], equal_var=False).pvalue)
    one_shared = stats.compare({0: 0.50, 1: 0.52}, {0: 0.40, 6: 0.43})
    assert one_shared.test == "welch"  # a single shared seed is no basis for a paired test


def test_holm_matches_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # untested entries stay NaN and do not count: m = 2
    adj = stats.holm([0.02, float("nan"), 0.04])
    assert adj[0] == pytest.approx(0.04) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.04)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []


def _diff(lo, hi, p):
    return Difference(3, 3, (lo + hi) / 2, lo, hi, p, 2.0, "paired", 3)


@pytest.mark.parametrize(
    "lo, hi, sign, expected",
    [(0.01, 0.05, +1, "holds"), (-0.05, -0.01, +1, "does not hold"), (-0.01, 0.05, +1, "inconclusive"),
     (-0.05, -0.01, -1, "holds"), (0.01, 0.05, -1, "does not hold"), (float("nan"), float("nan"), -1, "inconclusive")],
)
def test_interval_verdict(lo, hi, sign, expected):
    assert stats.interval_verdict(lo, hi, sign) == expected


def test_verdict_rule_order_and_tie():
    clear = _diff(0.03, 0.05, 0.001)
    assert stats.verdict(clear, +1) == stats.HOLDS
    assert stats.verdict(clear, -1) == stats.DOES_NOT_HOLD
    # significant alone, not after Holm
    assert stats.verdict(clear, +1, p_adj=0.08) == stats.INCONCLUSIVE
    # inside +-2 pp: a demonstrated tie
    assert stats.verdict(_diff(-0.015, 0.012, 0.7), +1) == stats.TIE
    assert stats.verdict(_diff(-0.025, 0.012, 0.4), +1) == stats.INCONCLUSIVE
    # collapsed beats not settled beats the interval
    assert stats.verdict(clear, +1, collapsed=True, not_settled=True) == stats.COLLAPSED
    assert stats.verdict(clear, +1, not_settled=True) == stats.NOT_SETTLED
    assert stats.verdict(stats.welch([0.3, 0.3], [0.5, 0.5]), -1) == stats.INCONCLUSIVE
    assert stats.TIE_MARGIN_PP == 2.0
    assert set(stats.VERDICTS) == {"holds", "does not hold", "tie", "inconclusive", "collapsed",
                                   "not settled at this budget"}


def test_still_improving():
    assert stats.still_improving([0.30, 0.40, 0.50])  # +20 pp over the last two epochs
    assert not stats.still_improving([0.30, 0.50, 0.50, 0.505])  # +0.5 pp
    assert not stats.still_improving([0.40, 0.50, 0.505, 0.51])  # exactly +1 pp is not "more than 1"
    assert stats.still_improving([0.40, 0.50, 0.505, 0.52])  # +2 pp
    assert stats.still_improving([0.30, 0.50])  # shorter than the window: against the first epoch
    assert not stats.still_improving([0.5]) and not stats.still_improving([])
    assert not stats.still_improving([0.2, 0.6, 0.55, 0.6])  # 0.6 two epochs before
    assert stats.still_improving([0.2, 0.3, 0.4], window=1, threshold_pp=5.0)


def test_flat_from_is_the_epoch_after_the_last_rise():
    # epoch 5 rose 5.5 pp over epochs 3-5; from epoch 6 on every two-epoch gain is <= 1 pp (exactly 1 counts flat)
    assert stats.flat_from([0.30, 0.40, 0.45, 0.50, 0.505, 0.51, 0.51]) == 6
    assert stats.flat_from([0.30, 0.40, 0.50]) is None  # still rising at its last epoch
    assert stats.flat_from([0.50, 0.505, 0.50]) == 1  # never rose more than 1 pp
    # a late rise resets it: flat at epochs 4-5, then +3 and +2 pp at epochs 6 and 7
    assert stats.flat_from([0.30, 0.50, 0.50, 0.50, 0.51, 0.53, 0.53, 0.53]) == 8
    assert stats.flat_from([0.30, None, 0.50, float("nan"), 0.50, 0.50]) == 4  # gaps skipped: 0.3, 0.5, 0.5, 0.5
    assert stats.flat_from([]) is None


def test_collapse_rule():
    happy = [[0, 0, 0, n, 0, 0, 0] for n in (491, 55, 528, 879, 594, 416, 626)]
    hit, why = stats.is_collapsed(happy, 1 / 7)
    assert hit and "100.0% of predictions in class 3" in why
    assert stats.is_collapsed(None, 0.15)[0]  # macro recall 15% is within 2 pp of 14.29%
    assert not stats.is_collapsed(None, 0.17)[0]
    healthy = [[8 if i == j else (2 if j == (i + 1) % 7 else 0) for j in range(7)] for i in range(7)]
    assert stats.is_collapsed(healthy, 0.8) == (False, "")
    nine_tenths = [[9 if j == 0 else 0 for j in range(7)] for _ in range(6)] + [[0, 0, 0, 0, 0, 0, 6]]
    assert stats.is_collapsed(nine_tenths)[0]  # 54 of 60 predictions = 90% in class 0
    assert stats.is_collapsed() == (False, "")


def test_majority_rate():
    assert stats.majority_rate([491, 55, 528, 879, 594, 416, 626]) == pytest.approx(879 / 3589)
    assert stats.majority_rate([899] * 7) == pytest.approx(1 / 7)
    assert stats.majority_rate(None) is None and stats.majority_rate([0, 0]) is None


def test_stratified_accuracies_compare_two_groups_at_one_class_mix():
    # A confounded pair: group a is mostly the easy class, b mostly the hard one. Within each class a is
    # exactly as accurate as b, so the raw gap (0.86 vs 0.54) is all class mix and the stratified gap is 0.
    n_a, c_a = [90, 10], [81, 5]  # 0.9 on class 0, 0.5 on class 1
    n_b, c_b = [10, 90], [9, 45]
    a, b = stats.stratified_accuracies(n_a, c_a, n_b, c_b)
    assert a == pytest.approx(b) and a == pytest.approx(0.7)  # equal weights 9 and 9
    # A class absent from one group carries no weight; weights are n_a*n_b/(n_a+n_b): 10*30/40 = 7.5, 5.
    a, b = stats.stratified_accuracies([30, 10, 7], [30, 5, 7], [10, 10, 0], [5, 5, 0])
    assert a == pytest.approx((7.5 * 1.0 + 5 * 0.5) / 12.5) and b == pytest.approx(0.5)
    assert stats.stratified_accuracies([5, 0], [5, 0], [0, 5], [0, 1]) is None  # no class holds both
    with pytest.raises(ValueError, match="unequal shapes"):
        stats.stratified_accuracies([1, 2], [1, 2], [1], [1])
