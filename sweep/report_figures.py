"""The report's figures, drawn with matplotlib's Agg backend and written as PNGs beside report.md.

- `forest_figure`: each variant's difference from the reference in pp with its 95% interval, the study's
  claimed difference as a marker, zero as a line, verdicts beside the rows (one panel per split);
- `curves_figure`: every variant's mean validation curve (min-max band over seeds, best epoch marked)
  beside the train curves;
- `confusion_grid`: one row-normalised confusion matrix per variant on one colour scale;
- `leak_figure`: test accuracy on all / copied / not-copied faces per protocol, with intervals;
- `claims_across_figure`: one panel per claim, one row per run (sweep.claims), coloured by verdict.

Deterministic: a fixed style, font and dpi, and no "Software" metadata, so a rebuilt report gives
byte-identical files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: sweeps run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sweep import stats  # noqa: E402

DPI = 100
# Everything that could vary between machines or runs is pinned here.
RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib
    "font.size": 9,
    "svg.hashsalt": "sweep-report",
    "path.simplify": True,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "axes.prop_cycle": matplotlib.cycler(color=list(matplotlib.colormaps["tab10"].colors)),
}


@contextmanager
def _style():
    with plt.style.context("default"), matplotlib.rc_context(RC):
        yield


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def save_optuna(draw, path: Path) -> Path:
    """Draw one of optuna.visualization.matplotlib's figures (`draw()` returns its Axes or an array of them) in
    the report's pinned style and save it deterministically."""
    with _style():
        axes = draw()
        ax = np.asarray(axes).ravel()[0]
        return _save(ax.figure, path)  # optuna sizes and lays out its own figures (colour bars included)


@dataclass(frozen=True)
class ForestRow:
    label: str
    diff_pp: float
    lo_pp: float  # NaN: no interval
    hi_pp: float
    claimed_pp: float | None  # the study's difference, or None
    verdict: str


def forest_figure(panels: Mapping[str, Sequence[ForestRow]], path: Path,
                  tie_margin_pp: float | None = None) -> dict[str, list[tuple[str, float, float, float]]]:
    """Draw one panel per split (title = key). Returns, per panel, (label, diff, lo, hi) in pp read back
    from the drawn artists (top row first), so tests can check the figure against the table."""
    names = [k for k, rows in panels.items() if rows]
    drawn: dict[str, list[tuple[str, float, float, float]]] = {}
    if not names:
        return drawn
    n_rows = max(len(panels[k]) for k in names)
    # axes placed by hand (inches), so long labels and verdicts always fit and the layout is fixed
    label_in = 0.45 + 0.085 * max(len(r.label) for k in names for r in panels[k])
    verdict_in = 0.3 + 0.06 * max(len(r.verdict) for k in names for r in panels[k])
    panel_in = 3.6
    block_in = label_in + panel_in + verdict_in
    width, height = block_in * len(names), 0.42 * n_rows + 1.7
    with _style():
        fig = plt.figure(figsize=(width, height))
        for p, name in enumerate(names):
            ax = fig.add_axes(((p * block_in + label_in) / width, 0.65 / height, panel_in / width,
                               (height - 1.35) / height))
            rows = list(panels[name])
            ys = np.arange(len(rows))[::-1].astype(float)  # first row on top
            labels = [r.label for r in rows]
            if tie_margin_pp:
                ax.axvspan(-tie_margin_pp, tie_margin_pp, color="0.9", zorder=0, label=f"tie ±{tie_margin_pp:g} pp")
            ax.axvline(0.0, color="0.3", lw=1, zorder=1)
            x = np.array([r.diff_pp for r in rows], dtype=float)
            lo = np.array([r.lo_pp for r in rows], dtype=float)
            hi = np.array([r.hi_pp for r in rows], dtype=float)
            has = np.isfinite(lo) & np.isfinite(hi)
            back: dict[int, tuple[float, float]] = {}
            if has.any():
                eb = ax.errorbar(x[has], ys[has], xerr=np.vstack([x[has] - lo[has], hi[has] - x[has]]),
                                 fmt="o", color="C0", ecolor="C0", capsize=3, label="ours (95% interval)", zorder=3)
                for i, seg in zip(np.flatnonzero(has), eb.lines[2][0].get_segments()):
                    back[int(i)] = (float(seg[0][0]), float(seg[1][0]))
            if (~has).any():
                ax.plot(x[~has], ys[~has], "o", mfc="white", color="C0", label="ours (no interval)", zorder=3)
            claimed = [(y, r.claimed_pp) for y, r in zip(ys, rows) if r.claimed_pp is not None]
            if claimed:
                ax.plot([c for _, c in claimed], [y for y, _ in claimed], "D", color="C3", ms=6,
                        label="study's claimed difference", zorder=4)
            ax.set_yticks(ys, labels)
            ax.set_xlabel(f"{name}: difference from the reference (pp)")
            ax.grid(axis="x", alpha=0.3)
            finite = [v for v in np.concatenate([x, lo, hi]) if math.isfinite(v)]
            finite += [c for _, c in claimed] + [0.0]
            left, right = min(finite), max(finite)
            pad = max(1.0, 0.08 * (right - left))
            ax.set_xlim(left - pad, right + pad)
            ax.set_ylim(-0.6, len(rows) - 0.4)
            for y, r in zip(ys, rows):  # verdicts beside the rows, outside the axes on the right
                ax.annotate(r.verdict, xy=(1.03, y), xycoords=("axes fraction", "data"), va="center",
                            fontsize=8, annotation_clip=False)
            ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
            drawn[name] = [(labels[i], float(x[i]), *back.get(i, (math.nan, math.nan))) for i in range(len(rows))]
        _save(fig, path)
    return drawn


CLAIMS_AXIS_PAD_PP = 5.0  # how far beyond the estimates the axis of claims_across_figure reaches
# a verdict's colour in the figure across runs
VERDICT_COLOURS = {stats.HOLDS: "C2", stats.DOES_NOT_HOLD: "C3", stats.TIE: "C0", stats.INCONCLUSIVE: "0.45",
                   stats.NOT_SETTLED: "C1", stats.COLLAPSED: "C4"}


def claims_across_figure(panels: Mapping[str, Sequence[ForestRow]], path: Path,
                         tie_margin_pp: float | None = None) -> dict[str, list[tuple[str, float, float, float]]]:
    """One panel per claim, one row per run (the same runs, in the same order, in every panel, labelled once on the
    left): each run's difference with its 95% interval coloured by its verdict, the study's claimed difference as a
    dashed line, zero as a line, the tie band grey; a run that did not run the claim's CNN reads "not run". An
    interval reaching more than CLAIMS_AXIS_PAD_PP beyond every estimate is cut at the axis' edge, an arrow there.
    Returns, per panel, (label, diff, lo, hi) in pp read back from the drawn artists (top row first; cut ends as
    drawn)."""
    names = list(panels)
    labels = [r.label for r in panels[names[0]]]
    n = len(labels)
    label_in, panel_in, gap_in = 0.3 + 0.075 * max(map(len, labels)), 3.0, 0.25
    width, height = label_in + len(names) * (panel_in + gap_in), 0.34 * n + 1.9
    drawn: dict[str, list[tuple[str, float, float, float]]] = {}
    with _style():
        fig = plt.figure(figsize=(width, height))
        ys = np.arange(n)[::-1].astype(float)  # first run on top
        seen: dict[str, object] = {}
        for p, name in enumerate(names):
            ax = fig.add_axes(((label_in + p * (panel_in + gap_in)) / width, 0.55 / height, panel_in / width,
                               (height - 1.45) / height))
            rows = list(panels[name])
            if tie_margin_pp:
                ax.axvspan(-tie_margin_pp, tie_margin_pp, color="0.9", zorder=0)
            ax.axvline(0.0, color="0.3", lw=1, zorder=1)
            claimed = {r.claimed_pp for r in rows if r.claimed_pp is not None}
            for c in claimed:
                seen["study"] = ax.axvline(c, color="C3", ls="--", lw=1.2, zorder=2)
            # the axis spans the estimates, the study's value and zero, plus CLAIMS_AXIS_PAD_PP: an interval reaching
            # beyond (two seeds, say) is cut at the edge and marked with an arrow, its numbers being in the table
            points = [r.diff_pp for r in rows if math.isfinite(r.diff_pp)] + [0.0, *claimed]
            ends = [v for r in rows for v in (r.lo_pp, r.hi_pp) if math.isfinite(v)]
            left = max(min(points) - CLAIMS_AXIS_PAD_PP, min(points + ends))
            right = min(max(points) + CLAIMS_AXIS_PAD_PP, max(points + ends))
            pad = max(0.5, 0.05 * (right - left))
            ax.set_xlim(left - pad, right + pad)
            back = []
            for y, r in zip(ys, rows):
                if not math.isfinite(r.diff_pp):
                    ax.annotate("not run", xy=(0.02, y), xycoords=("axes fraction", "data"), va="center",
                                fontsize=7, color="0.55")
                    back.append((r.label, math.nan, math.nan, math.nan))
                    continue
                colour = VERDICT_COLOURS.get(r.verdict, "0.45")
                if math.isfinite(r.lo_pp) and math.isfinite(r.hi_pp):
                    lo, hi = max(r.lo_pp, left - pad), min(r.hi_pp, right + pad)
                    eb = ax.errorbar([r.diff_pp], [y], xerr=[[r.diff_pp - lo], [hi - r.diff_pp]], fmt="o",
                                     color=colour, capsize=3, zorder=3)
                    for cut, end, mark in ((lo > r.lo_pp, lo, "<"), (hi < r.hi_pp, hi, ">")):
                        if cut:
                            ax.plot([end], [y], mark, color=colour, ms=6, zorder=3, clip_on=False)
                    (seg,) = eb.lines[2][0].get_segments()
                    back.append((r.label, r.diff_pp, float(seg[0][0]), float(seg[1][0])))
                else:
                    eb = ax.plot([r.diff_pp], [y], "o", mfc="white", color=colour, zorder=3)[0]
                    back.append((r.label, r.diff_pp, math.nan, math.nan))
                seen.setdefault(r.verdict, eb)
            ax.set_ylim(-0.6, n - 0.4)
            ax.set_yticks(ys, labels if p == 0 else [""] * n)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("difference (pp)")
            ax.grid(axis="x", alpha=0.3)
            drawn[name] = back
        order = [k for k in ("study", *VERDICT_COLOURS) if k in seen]
        fig.legend([seen[k] for k in order], ["study's claimed difference" if k == "study" else k for k in order],
                   loc="upper left", bbox_to_anchor=(label_in / width, 1.0), ncol=len(order), fontsize=8,
                   frameon=False)
        _save(fig, path)
    return drawn


def curves_figure(curves: Mapping[str, Mapping[str, Mapping[int, tuple[float, float, float, int]]]],
                  path: Path) -> Path:
    """`curves[label]["val/acc" | "train/acc"] = {epoch: (mean, min, max, n)}`: the validation curves
    of every variant on one axes (band = min-max over seeds, star = best epoch of the mean curve), the
    train curves in a second panel."""
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), sharey=True)
        for i, (label, series) in enumerate(curves.items()):
            color = f"C{i % 10}"
            for ax, key in zip(axes, ("val/acc", "train/acc")):
                s = series.get(key) or {}
                if not s:
                    continue
                ep = sorted(s)
                mean = np.array([100 * s[e][0] for e in ep])
                ax.plot(ep, mean, "-o", ms=3, color=color, label=label)
                if any(s[e][3] > 1 for e in ep):
                    ax.fill_between(ep, [100 * s[e][1] for e in ep], [100 * s[e][2] for e in ep],
                                    color=color, alpha=0.15, lw=0)
                if key == "val/acc":
                    b = int(np.argmax(mean))
                    ax.plot([ep[b]], [mean[b]], "*", ms=12, color=color, mec="black", mew=0.5)
        for ax, title in zip(axes, ("validation accuracy (★ = best epoch)", "train accuracy")):
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy (%)")
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[1].get_legend_handles_labels()
        # Four labels a row, two when they are long (a user grid's "baseline [augment.rotation_deg=10.0, ...]").
        ncol = min(len(labels), 4 if max(map(len, labels), default=0) <= 40 else 2) or 1
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // ncol if handles else 0), 1, 1))
        return _save(fig, path)


def confusion_grid(mats: Sequence[tuple[str, np.ndarray, int]], class_names: Sequence[str], path: Path) -> Path:
    """One panel per (label, summed count matrix [K,K], seeds): row-normalised (rows = true class), all on
    the same 0-1 colour scale with one colour bar."""
    n = len(mats)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    with _style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 0.8, 3.3 * nrows + 0.3), squeeze=False)
        im = None
        for ax, (label, cm, seeds) in zip(axes.flat, mats):
            cm = np.asarray(cm, dtype=float)
            rows = cm.sum(axis=1, keepdims=True)
            # a class absent from the split has an all-zero row: 0 instead of dividing by 0
            norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
            im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues")
            k = cm.shape[0]
            names = list(class_names) if len(class_names) == k else [f"c{i}" for i in range(k)]
            ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(k), names, fontsize=7)
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{norm[i, j]:.2f}"[1:] if norm[i, j] < 1 else "1.0", ha="center",
                            va="center", fontsize=6, color="white" if norm[i, j] > 0.5 else "black")
            ax.set_title(f"{label} ({seeds} seed{'s' if seeds != 1 else ''})", fontsize=8)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        for ax in axes[:, 0]:
            ax.set_ylabel("true")
        for ax in axes[-1, :]:
            ax.set_xlabel("predicted")
        fig.tight_layout(rect=(0, 0, 0.9, 1))
        if im is not None:  # its own axes in the reserved right margin, so no label is cut off
            cax = fig.add_axes((0.915, 0.15, 0.015, 0.7))
            fig.colorbar(im, cax=cax, label="share of the true class")
        return _save(fig, path)


def leak_figure(groups: Mapping[str, Sequence[tuple[str, str, float, float, float]]], path: Path) -> Path:
    """Grouped bars per model panel: for each role (official / control / leaky), test accuracy on all,
    copied and not-copied faces; `(role, subset, mean, lo, hi)` in percent (NaN ends: no error bar)."""
    names = list(groups)
    subsets = ("all", "copy", "no copy")
    with _style():
        fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names):
            data = groups[name]
            roles = [r for r in ("official", "control", "leaky") if any(d[0] == r for d in data)]
            w = 0.26
            for j, sub in enumerate(subsets):
                xs, ms, errs = [], [], []
                for i, role in enumerate(roles):
                    hit = [d for d in data if d[0] == role and d[1] == sub]
                    if not hit:
                        continue
                    _, _, m, lo, hi = hit[0]
                    xs.append(i + (j - 1) * w)
                    ms.append(m)
                    errs.append((m - lo, hi - m) if math.isfinite(lo) and math.isfinite(hi) else (0.0, 0.0))
                if xs:
                    ax.bar(xs, ms, w, yerr=np.array(errs).T, capsize=3, color=f"C{j}", label=sub)
            ax.set_xticks(range(len(roles)), roles)
            ax.set_xlim(-0.6, len(roles) - 0.4)
            ax.set_ylabel("test accuracy (%)")
            ax.set_ylim(0, 100)
            ax.set_title(name)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8, title="test faces", title_fontsize=8)
        fig.tight_layout()
        return _save(fig, path)
