"""The report's intervals with the evaluated faces as a sample too, not only the seeds.

Every other interval in the report is a t interval over seeds on the same PublicTest / PrivateTest faces: it
says how much a difference moves with the training's randomness and holds the 3,589 faces fixed. Whether the
difference would hold on another draw of faces from the same population is a second source of uncertainty.
Trials that record their per-face predictions (final.json `predictions`, from 2026-12-03 on) let the report
estimate both at once (`sweep.stats.seeds_and_faces`: a crossed seeds x faces random-effects model); this
section gives, per comparison of *Differences from the reference level*, the seeds-only and the seeds-and-faces
interval over the seeds whose trials recorded them, and the reading the verdict rule gives the wider view.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from sweep import stats
from sweep.report_axes import axis_families, off_reference
from sweep.report_claims import DIFF_CLIP, Comparison, reading
from sweep.report_format import fmt_interval, fmt_p, md_table
from sweep.report_load import Experiment, Variant, is_search

SPLITS = ("val", "test")


def face_pairs(c: Comparison) -> tuple[list, list]:
    """Per-face correctness of the comparison's two variants on its split, over the seeds both recorded on
    the same faces in the same order (equal label strings): ([variant's arrays], [reference's arrays])."""
    def by_seed(v: Variant) -> dict:
        out = {}
        for t in v.done:
            p = t.predictions(c.split)
            if p is not None:
                out[t.seed_key] = p
        return out

    a, b = by_seed(c.variant), by_seed(c.reference)
    shared = [s for s in set(a) & set(b) if a[s][0] == b[s][0]]
    # the model's face effect is one per face across seeds: every seed must have seen the same faces
    faces = Counter(a[s][0] for s in shared).most_common(1)
    shared = sorted((s for s in shared if faces and a[s][0] == faces[0][0]), key=repr)
    return [a[s][1] for s in shared], [b[s][1] for s in shared]


def face_family(comps: Sequence[Comparison]) -> list[tuple[Comparison, stats.FaceDifference, float]]:
    """`seeds_and_faces` for each comparison of one family that has >= 2 seeds with predictions on both
    sides, Holm-adjusted over those (the family of *Differences from the reference level*, as far as it has
    predictions)."""
    rows = []
    for c in comps:
        a, b = face_pairs(c)
        if len(a) >= 2:
            rows.append((c, stats.seeds_and_faces(a, b, clip=DIFF_CLIP)))
    adj = stats.holm([fd.both.p for _, fd in rows])
    return [(c, fd, p) for (c, fd), p in zip(rows, adj)]


def section_faces(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    if is_search(exp):
        return []
    out = ["## Uncertainty from the faces", ""]
    if not off_reference(exp, variants):
        return out + ["_Nothing to estimate: this run makes no within-run comparison (see above)._", ""]
    out.append(
        "Every other interval here is over seeds, on the same validation and test faces: it covers the "
        "training's randomness and holds the faces fixed, so it does not say how far a difference would move on "
        "another draw of faces. From the per-face predictions the trials recorded (final.json `predictions`), "
        "each comparison of *Differences from the reference level* is estimated again as a crossed seeds × "
        "faces random-effects model: the per-face, per-seed difference (correct or not) is the mean plus a seed "
        "effect, a face effect and noise; the variance of the mean is (MS_seed + MS_face − MS_err) / (seeds × "
        "faces) from the two-way ANOVA's mean squares, with the seeds' degrees of freedom (seeds − 1), which "
        "keeps it conservative: never narrower than the seeds-only interval (`sweep.stats.seeds_and_faces`). "
        "*seeds only* is the paired t interval over the same seeds (the faces fixed); *faces' share* the part of "
        "the wider variance that comes from the faces. Holm within each axis and split, as above; the reading "
        "applies the same verdict rule to the seeds-and-faces interval.")
    out.append("")
    rows = []
    for split in SPLITS:
        for fam in axis_families(exp, variants, split):
            for c, fd, p_adj in face_family(fam.comparisons):
                v = replace(c, diff=fd.both, p_adj=p_adj).verdict(+1)  # the same rule, on the wider interval
                rows.append([c.variant.label, split, c.reference.label, f"{fd.n_seeds} × {fd.n_faces:,}",
                             fmt_interval(fd.seeds), fmt_interval(fd.both), f"{100 * fd.face_share:.0f}%",
                             fmt_p(fd.both.p), fmt_p(p_adj), reading(v), fam.axis])
    if rows:
        out += md_table(["variant", "split", "reference", "seeds × faces", "seeds only: Δ (pp) [95%]",
                         "seeds and faces: Δ (pp) [95%]", "faces' share", "p", "Holm p", "reading", "axis"], rows)
    else:
        out.append("_Not available: no comparison has two or more seeds whose trials recorded per-face predictions "
                   "on both sides (trials written before 2026-12-03 did not). The intervals in this report hold "
                   "the evaluated faces fixed._")
    out.append("")
    return out
