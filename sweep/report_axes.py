"""Comparisons along a grid's scientific axes, for any grid, not only the study's.

Every scientific axis has a reference level: the grid's `reference:` entry for it, else its first listed
value (the study's `model.name` axis lists `baseline` first). A variant that differs from the reference
on one axis is compared with the variant that has that axis at its reference level and every other
setting (the other axes, the protocol, the balance) the same: with two or more axes, each axis is
compared at every combination of the others. One Holm family per axis and split: all the comparisons that
ask whether that axis matters, whatever the other axes' levels.

With two axes or more, the interaction of two axes A and B at levels (a, b) is the difference of
differences (Y[a,b] - Y[a0,b]) - (Y[a,b0] - Y[a0,b0]): how much A's effect changes when B leaves its
reference. It is tested like any difference (paired over the seeds all four cells share).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep import stats
from sweep.report_claims import DIFF_CLIP, Comparison, family, reading
from sweep.report_format import STAT_NOTE, fmt_effect, fmt_interval, fmt_p, md_table, test_name
from sweep.report_load import Experiment, Variant, _hashable, _level, is_search

STUDY_AXIS = "model.name"  # experiments recorded without their scientific axes: the study's ablation


def scientific_axes(exp: Experiment) -> dict[str, Any]:
    """{axis: reference level} for the axes with two or more levels, in grid order."""
    sci = exp.meta.get("scientific")
    if not isinstance(sci, dict) or not sci:
        sci = {STUDY_AXIS: ["baseline"]}
    explicit = exp.meta.get("reference") or {}
    out = {}
    for axis, levels in sci.items():
        levels = levels if isinstance(levels, list) else [levels]
        if levels:
            out[axis] = explicit.get(axis, levels[0])
    return out


def axis_value(v: Variant, axis: str) -> Any:
    if axis == "model.name":
        return v.model
    if axis == "data.protocol":
        return v.protocol
    if axis in v.extras:
        return v.extras[axis]
    return next((t.params[axis] for t in v.trials if axis in t.params), None)


def _setting(v: Variant) -> dict:
    """Everything that makes `v` a variant: model, protocol and the other varying keys."""
    return {"model.name": v.model, "data.protocol": v.protocol, **v.extras}


def partner(v: Variant, changes: dict, variants: Sequence[Variant]) -> Variant | None:
    """The variant equal to `v` except for `changes` ({axis: level}), if one ran."""
    want = {**_setting(v), **changes}
    for w in variants:
        have = _setting(w)
        if w is not v and set(have) == set(want) and all(_hashable(have[k]) == _hashable(want[k]) for k in want):
            return w
    return None


def _off_reference(v: Variant, axis: str, ref: Any) -> bool:
    return _hashable(axis_value(v, axis)) != _hashable(ref)


@dataclass
class AxisFamily:
    axis: str
    comparisons: list[Comparison]


def axis_families(exp: Experiment, variants: Sequence[Variant], split: str) -> list[AxisFamily]:
    """Each variant off the reference on one axis against its partner at that axis's reference level."""
    out = []
    for axis, ref in scientific_axes(exp).items():
        by_ref: dict[int, tuple[Variant, list[Variant]]] = {}  # reference's id -> (reference, its variants)
        for v in variants:
            if not v.done or not _off_reference(v, axis, ref):
                continue
            r = partner(v, {axis: ref}, variants)
            if r is not None and r.done:
                by_ref.setdefault(id(r), (r, []))[1].append(v)
        # One Holm family per axis and split: every comparison asking whether this axis matters, at every
        # combination of the other axes (rows grouped by their reference).
        pairs = [(v, r) for r, members in by_ref.values() for v in members]
        if pairs:
            out.append(AxisFamily(axis, family(pairs, split)))
    return out


def off_reference(exp: Experiment, variants: Sequence[Variant]) -> list[Variant]:
    """Completed variants off the reference level on some scientific axis: what a comparison could be about."""
    axes = scientific_axes(exp)
    return [v for v in variants if v.done and any(_off_reference(v, a, r) for a, r in axes.items())]


NO_COMPARISON = ("_Nothing to compare within this run: every completed variant is at the reference level ({refs}). "
                 "A run read `--against` another is compared with it under *Sensitivity*._")


def uncompared(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    """Variants off the reference on some axis whose reference partner did not run (or finished no seed)."""
    lone = []
    for v in variants:
        for axis, ref in scientific_axes(exp).items():
            if v.done and _off_reference(v, axis, ref):
                r = partner(v, {axis: ref}, variants)
                if r is None or not r.done:
                    lone.append(f"`{v.label}` ({axis} vs {_level(ref)})")
    return lone


def section_comparisons(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    if is_search(exp):
        return []
    axes = scientific_axes(exp)
    out = ["## Differences from the reference level", ""]
    refs = ", ".join(f"`{a}` = {_level(r)}" for a, r in axes.items())
    if not off_reference(exp, variants):  # e.g. a one-model run: the paragraph below would describe nothing
        return out + [NO_COMPARISON.format(refs=refs), ""]
    out.append(
        f"Reference levels: {refs} (a grid's `reference:` entry, else the axis's first listed value). Each "
        "variant off the reference on one axis minus the variant with that axis at its reference and everything "
        "else equal, in percentage points [95% interval, clipped to ±100]. The test: a **paired t-test** on the "
        "per-seed differences when both ran at least two of the same seeds (only the shared seeds count), "
        "**Welch's** unequal-variance t-test otherwise. *p* is the raw two-sided p-value, *Holm p* the "
        "Holm-adjusted one within the family of all rows of one axis and split (its every level, at every "
        "combination of the other axes). Effect "
        "size: Cohen's d (Welch, pooled sd) or d_z (paired: mean difference / sd of the differences). *reading* "
        "is the verdict rule of the claims section applied two-sided (higher / lower / tie / inconclusive / "
        "collapsed / not settled). " + STAT_NOTE)
    out.append("")
    rows = []
    for split in ("val", "test"):
        for fam in axis_families(exp, variants, split):
            for c in fam.comparisons:
                rows.append([c.variant.label, split, c.reference.label, test_name(c.diff), fmt_interval(c.diff),
                             fmt_p(c.diff.p), fmt_p(c.p_adj), fmt_effect(c.diff), reading(c.verdict(+1)), fam.axis])
    if rows:
        out += md_table(["variant", "split", "reference", "test", "Δ accuracy (pp) [95% interval]", "p",
                         "Holm p", "effect size", "reading", "axis"], rows)
    else:
        out.append("_No variant has a reference-level partner under the same protocol and other settings._")
    lone = uncompared(exp, variants)
    if lone:
        out += ["", "Not compared (no completed reference-level partner): " + ", ".join(lone) + "."]
    out.append("")
    return out + section_interactions(exp, variants)


@dataclass
class Interaction:
    a: str
    b: str
    cell: Variant  # off the reference on both axes
    diff: stats.Difference
    p_adj: float = float("nan")


def _seed_diff(x: Variant, y: Variant, split: str) -> dict:
    xs, ys = x.by_seed(split), y.by_seed(split)
    return {s: xs[s] - ys[s] for s in set(xs) & set(ys)}


def interactions(exp: Experiment, variants: Sequence[Variant], split: str) -> list[Interaction]:
    """A x B interactions of every pair of axes, at every cell off both references; Holm over all of them."""
    axes = scientific_axes(exp)
    out = []
    for (a, ra), (b, rb) in itertools.combinations(axes.items(), 2):
        for v in variants:
            if not (v.done and _off_reference(v, a, ra) and _off_reference(v, b, rb)):
                continue
            v_a0, v_b0, v_00 = (partner(v, ch, variants) for ch in ({a: ra}, {b: rb}, {a: ra, b: rb}))
            if not all(w is not None and w.done for w in (v_a0, v_b0, v_00)):
                continue
            # A's effect where B is off its reference, minus A's effect at B's reference
            d = stats.compare(_seed_diff(v, v_a0, split), _seed_diff(v_b0, v_00, split), clip=DIFF_CLIP)
            out.append(Interaction(a, b, v, d))
    for x, adj in zip(out, stats.holm([x.diff.p for x in out])):
        x.p_adj = adj
    return out


def section_interactions(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    axes = scientific_axes(exp)
    if len(axes) < 2:
        return []
    out = ["## Interactions between axes", ""]
    out.append(
        "Whether one axis's effect depends on another: for a variant off the reference on axes A and B, "
        "(its value minus the same with A at its reference) minus (the same two with B at its reference), in pp "
        "[95% interval], per seed where all four variants share seeds (paired t-test), Welch otherwise; Holm over "
        "every row of a split. An interval that straddles zero shows no evidence that the effects interact; "
        "that is not evidence that they add up.")
    out.append("")
    rows = []
    for split in ("val", "test"):
        for x in interactions(exp, variants, split):
            rows.append([x.cell.label, f"{x.a} × {x.b}", split, test_name(x.diff), fmt_interval(x.diff),
                         fmt_p(x.diff.p), fmt_p(x.p_adj)])
    if rows:
        out += md_table(["cell", "axes", "split", "test", "interaction (pp) [95% interval]", "p", "Holm p"], rows)
    else:
        out.append("_No cell off the reference on two axes has all three partner variants completed._")
    out.append("")
    return out
