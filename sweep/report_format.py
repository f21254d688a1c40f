"""Formatting helpers for report.md: percentages, summaries, differences, markdown tables."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from sweep import stats
from sweep.stats import Difference, Summary


def pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def fmt_summary(s: Summary, scale: float = 100.0, digits: int = 2) -> str:
    """`mean ± std [lo, hi]` (in percent by default); n=1 and zero variance say so; n=0 is a dash."""
    if s.n == 0:
        return "—"
    f = lambda x: f"{scale * x:.{digits}f}"  # noqa: E731
    if s.n == 1:
        return f"{f(s.mean)} (n=1, no interval)"
    if not s.has_interval:
        return f"{f(s.mean)} ± {f(s.std)} (n={s.n}, {s.note or 'no interval'}: no interval)"
    return f"{f(s.mean)} ± {f(s.std)} [{f(s.lo)}, {f(s.hi)}]"


def fmt_ci(s: Summary, digits: int = 2) -> str:
    """Compact `mean [lo, hi]` in percent (n=1: `mean (n=1)`)."""
    if s.n == 0:
        return "—"
    if not s.has_interval:
        return f"{100 * s.mean:.{digits}f} (n={s.n}{'' if s.n < 2 else ', ' + s.note})"
    return f"{100 * s.mean:.{digits}f} [{100 * s.lo:.{digits}f}, {100 * s.hi:.{digits}f}]"


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def test_name(d: Difference) -> str:
    if d.test == "paired":
        return f"paired t ({d.n_pairs} shared seeds)"
    if d.test == "welch":
        return f"Welch t (n={d.n_a} vs {d.n_b})"
    return "—"


def fmt_interval(d: Difference) -> str:
    """`+5.00 pp [+4.00, +6.00]`; untested differences say why."""
    if not math.isfinite(d.diff):
        return "—"
    head = f"{100 * d.diff:+.2f} pp"
    if not d.tested:
        return f"{head} ({d.note or 'no test'})"
    return f"{head} [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}]"


def fmt_effect(d: Difference) -> str:
    return "—" if not math.isfinite(d.effect) else f"{d.effect_name}={d.effect:+.2f}"


def fmt_diff(d: Difference, p_adj: float | None = None) -> str:
    """One-cell difference: interval, test, raw and Holm-adjusted p, effect size."""
    head = fmt_interval(d)
    if not d.tested:
        return head
    adj = "" if p_adj is None else f", Holm p={fmt_p(p_adj)}"
    eff = "" if not math.isfinite(d.effect) else f", {fmt_effect(d)}"
    name = "paired" if d.test == "paired" else "Welch"
    return f"{head}, {name} p={fmt_p(d.p)}{adj}{eff}"


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def verdict_cell(v: str) -> str:
    return f"**{v}**"


def _cell(x: Any) -> str:
    """Make a value safe inside a markdown table cell."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "variant"


def alt(label: str) -> str:
    """Image alt text: square brackets would end markdown's `![...]` early."""
    return label.replace("[", "(").replace("]", ")")


STAT_NOTE = (
    f"Intervals are 95% Student-t intervals; intervals of accuracies are clipped to [0, 100]. "
    f"A tie means the whole 95% interval of a difference lies within ±{stats.TIE_MARGIN_PP:g} pp "
    "(TIE_MARGIN_PP)."
)
