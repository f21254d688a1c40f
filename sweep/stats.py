"""Across-seed statistics for the report: mean/std with a Student-t 95% interval, Welch's t-test
on the difference of two groups of seeds, and the interval-based verdict rule for a claim.

Pure functions over plain sequences of floats (accuracies as fractions 0..1); no I/O.
`sweep.report` formats what these return.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Summary:
    """Mean over seeds; `std` is the sample std (ddof=1); `lo`/`hi` the 95% t interval of the mean.

    With n=1 std/lo/hi are NaN (no interval); with n=0 everything is NaN.
    """

    n: int
    mean: float
    std: float
    lo: float
    hi: float

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.lo) and math.isfinite(self.hi)


@dataclass(frozen=True)
class Difference:
    """Welch comparison of group a minus group b: mean difference, its 95% interval and p-value.

    `lo`, `hi`, `p`, `df` are NaN when either side has fewer than 2 values (`tested` is False).
    """

    n_a: int
    n_b: int
    diff: float
    lo: float
    hi: float
    p: float
    df: float

    @property
    def tested(self) -> bool:
        return self.n_a >= 2 and self.n_b >= 2 and math.isfinite(self.lo) and math.isfinite(self.hi)


def _clean(values: Sequence[float]) -> np.ndarray:
    """Drop missing / non-finite values (an odd trial must not poison the mean)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    return arr[np.isfinite(arr)]


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample std and 95% Student-t interval (n-1 degrees of freedom) of `values`."""
    x = _clean(values)
    n = int(x.size)
    nan = float("nan")
    if n == 0:
        return Summary(0, nan, nan, nan, nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, nan, nan, nan)
    std = float(x.std(ddof=1))
    half = float(st.t.ppf(1.0 - ALPHA / 2.0, df=n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Welch's unequal-variance t-test of mean(a) - mean(b) with its 95% interval (scipy)."""
    xa, xb = _clean(a), _clean(b)
    nan = float("nan")
    diff = float(xa.mean() - xb.mean()) if xa.size and xb.size else nan
    if xa.size < 2 or xb.size < 2:
        return Difference(int(xa.size), int(xb.size), diff, nan, nan, nan, nan)
    with warnings.catch_warnings():
        # identical seeds (zero variance) make scipy warn about precision; the result is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        res = st.ttest_ind(xa, xb, equal_var=False)
        ci = res.confidence_interval(confidence_level=CONFIDENCE)
    return Difference(
        int(xa.size), int(xb.size), diff, float(ci.low), float(ci.high), float(res.pvalue), float(res.df)
    )


def interval_verdict(lo: float, hi: float, claimed_sign: int) -> str:
    """Verdict for a claim that a quantity is > 0 (claimed_sign=+1) or < 0 (claimed_sign=-1).

    "holds" when the whole 95% interval lies on the claimed side of 0, "does not hold" when it lies
    entirely on the other side, "inconclusive" when it contains 0 or is undefined (n<2).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if claimed_sign > 0:
        return HOLDS if lo > 0 else DOES_NOT_HOLD if hi < 0 else INCONCLUSIVE
    return HOLDS if hi < 0 else DOES_NOT_HOLD if lo > 0 else INCONCLUSIVE
