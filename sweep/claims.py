"""The study's five claims in every run at once: one row per experiment folder, each claim's difference, interval
and verdict as that run's own report computes them (sweep.report_claims.evaluate_claims), beside the settings in
which the runs differ. A reader sees which verdicts survive a change of input size, budget or recipe without opening
a dozen reports; every cell links back to a report that rebuilds from its raw files.

    python -m sweep.claims reports/ --out reports/CLAIMS.md   # every committed run with the study's CNNs, and
                                                              # reports/CLAIMS.png, the forest plot of claims 1-3
    python -m sweep.claims runs/a runs/b                        # two runs, printed

A folder is an experiment folder (holding sweep_meta.json) or a folder of them. Runs without the study's baseline
and another of its CNNs under the official protocol (leak audits, searches) are named below the table, not dropped
silently. A report's `shared/` counterpart is not a row of its own; its `pooled/` runs count, as in its report.
Its last section sets each CNN at its best recipe per input size (`best_recipes`) and decides the claims there
on test, over seeds and then over seeds and faces together.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sweep import stats
from sweep.report_claims import (PAIRWISE_CLAIMS, PAIRWISE_SPLIT, STUDY_REPORTED, STUDY_SETTINGS, ClaimResult,
                                 claimed_difference_pp, evaluate_claims)
from sweep.report_faces import face_family
from sweep.report_figures import ForestRow, claims_across_figure
from sweep.report_format import fmt_ci, fmt_interval, fmt_p, md_table, pct
from sweep.report_load import (ADDED_LATER, BASELINE, MODEL_ORDER, OFFICIAL, Experiment, ReportError, Variant,
                               constants, group_variants, is_search, is_seed_key, load_experiment, official_variant,
                               run_host_kind, tuned_keys)
from sweep.report_study import is_study_ablation

# Settings that are not a run's recipe: which variants count is fixed by the claims (official, no rebalancing).
NOT_RECIPE = {"model.name", "data.protocol", "data.balance"}
FIRST_KEYS = ("data.input_size", "train.epochs")  # the columns a reader looks for first
TUNED = "tuned"
MIN_SEEDS_TO_CHOOSE = 3  # a recipe is chosen on a mean of 3 seeds or more: the mean of 2 is the noisiest winner
HOST_SHORT = {"without native bf16": "CPU fp32", "with native bf16": "CPU bf16", "GPU": "GPU"}


@dataclass
class RunClaims:
    path: Path
    settings: dict  # the run's constant settings, a setting added later at its old value, tuned ones as TUNED
    hosts: list[str]
    variants: list[Variant]
    claims: list[ClaimResult]


@dataclass
class BestRecipes:
    """At one input size, each of the study's CNNs in the run where its mean validation accuracy is highest, and
    the claims decided on test accuracy (which played no part in the choice)."""

    input_size: object
    runs: list[RunClaims]  # the runs at this input size with a candidate recipe (`is_plain`)
    chosen: dict[str, tuple[RunClaims, Variant]]  # model -> the run it was chosen from, its variant there
    tried: dict[str, int]  # model -> how many candidate recipes it was chosen among
    claims: list[ClaimResult]


def is_plain(v: Variant) -> bool:
    """The study's CNN as the study defines it, trained honestly (official split, no rebalancing), nothing else
    varied beside it within its run, on enough seeds to be chosen: a candidate recipe."""
    return (v.model in MODEL_ORDER and v.protocol == OFFICIAL and v.balance == "none"
            and not set(v.extras) - NOT_RECIPE and len(v.done) >= MIN_SEEDS_TO_CHOOSE)


def best_recipes(runs: Sequence[RunClaims]) -> list[BestRecipes]:
    """Per input size with two runs or more: each CNN at its best recipe among them (the tuning playbook's fair
    comparison, each variant at its own best settings, over the recipes that were run), chosen on validation.
    `runs` may hold runs of one CNN alone (a recipe tried for it only); searches belong elsewhere."""
    by_size: dict[object, list[RunClaims]] = defaultdict(list)
    for r in sorted(runs, key=_order):
        if any(is_plain(v) for v in r.variants):
            by_size[r.settings.get("data.input_size")].append(r)
    out = []
    for size, group in by_size.items():
        if len(group) < 2:
            continue
        chosen, tried = {}, {}
        for model in MODEL_ORDER:
            cands = [(r, v) for r in group for v in r.variants if v.model == model and is_plain(v)]
            if cands:  # ties go to the run with more seeds, then to the table's order
                chosen[model] = max(cands, key=lambda rv: (rv[1].summary("val").mean, len(rv[1].done)))
                tried[model] = len(cands)
        if BASELINE in chosen and len(chosen) > 1:
            variants = [v for _, v in chosen.values()]
            out.append(BestRecipes(size, group, chosen, tried, evaluate_claims(variants, pairwise_split="test")))
    return out


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Each path that is an experiment folder, and the experiment folders directly inside each path that is not."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "sweep_meta.json").is_file():
            out.append(p)
        elif not p.is_dir():
            raise ReportError(f"{p}: does not exist")
        elif runs := sorted(q.parent for q in p.glob("*/sweep_meta.json")):
            out += runs
        else:
            raise ReportError(f"{p}: neither an experiment folder nor a folder of them (no sweep_meta.json in it "
                              "or in its sub-folders)")
    return list(dict.fromkeys(out))


def host_short(kind: str | None) -> str:
    for words, short in HOST_SHORT.items():
        if kind and words in kind:
            return short
    return kind or "not recorded"


def run_claims(exp: Experiment, variants: list[Variant]) -> RunClaims:
    settings = {k: v for k, v in {**ADDED_LATER, **constants(exp)}.items()
                if k not in NOT_RECIPE and not is_seed_key(k)}
    settings.update({k: TUNED for k in tuned_keys(exp.meta)})
    kinds = [run_host_kind(exp.meta)] + [r.get("host") for r in exp.meta.get("pooled") or []]
    hosts = list(dict.fromkeys(host_short(k) for k in kinds))
    return RunClaims(exp.path, settings, hosts, variants, evaluate_claims(variants))


def differing_keys(runs: Sequence[RunClaims]) -> list[str]:
    """The settings whose values are not the same in every run: input size and epochs first."""
    keys = list(dict.fromkeys(k for r in runs for k in r.settings))
    differ = [k for k in keys if len({repr(r.settings.get(k)) for r in runs}) > 1]
    return [k for k in FIRST_KEYS if k in differ] + [k for k in differ if k not in FIRST_KEYS]


def _value(v) -> str:
    return "not recorded" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def claim_cell(c: ClaimResult, variants: Sequence[Variant]) -> str:
    """`diff [lo, hi] (n) **verdict**`; claim 4 gives its weakest comparison, claim 5 the optimized CNN's test."""
    if c.ours == "—" or (c.number != 5 and not c.comparisons):
        return "not run"
    if c.number == 5:
        v = official_variant("optimized", variants)
        return f"{fmt_ci(v.summary('test'))} (n={len(v.done)}) **{c.verdict}**"
    # claim 4 holds only if every comparison does: the smallest difference is the one closest to deciding it
    comp = min(c.comparisons, key=lambda x: x.diff.diff)
    d = comp.diff
    head = "" if c.number != 4 else f"vs {comp.reference.model} "
    interval = f"[{_pp(d.lo)}, {_pp(d.hi)}]" if d.tested else f"({d.note or 'no test'})"
    return f"{head}{_pp(d.diff)} {interval} (n={d.n}) **{c.verdict}**"


def _chance(runs: Sequence[RunClaims]) -> str:
    """The majority class's share of validation and test faces (the accuracy of always predicting it)."""
    rates = {tuple(official_variant(BASELINE, r.variants).majority_rate(s) for s in ("val", "test")) for r in runs}
    said = [f"{pct(v)}% val and {pct(t)}% test" for v, t in sorted(rates, key=repr)]
    return f"Chance: predicting the majority class scores {' or '.join(said)}."


def _order(r: RunClaims) -> tuple:
    """Rows by input size, then epochs, then folder name."""
    return (*(v if isinstance(v := r.settings.get(k), (int, float)) else float("inf") for k in FIRST_KEYS),
            r.path.name)


def study_row(keys: Sequence[str]) -> list[str]:
    """The study's own numbers in the table's columns: single runs, its settings largely unstated."""
    val, test = STUDY_REPORTED["val_acc_pct"], STUDY_REPORTED["test_acc_pct"]
    cells = [f"{claimed_difference_pp(m, PAIRWISE_SPLIT):+.2f} (one run)" for _, _, m, _ in PAIRWISE_CLAIMS]
    rival = max((m for m in test if m != "optimized"), key=test.get)
    cells.append(f"vs {rival} {test['optimized'] - test[rival]:+.2f} (one run)")
    cells.append(f"{test['optimized']:.2f} (one run)")
    settings = [_value(STUDY_SETTINGS[k]) if k in STUDY_SETTINGS else "not stated" for k in keys]
    return ["the study", *settings, "not stated", f"{val[BASELINE]:.2f} (one run)", *cells]


def run_label(r: RunClaims) -> str:
    """The run's folder name with its input side and epochs, the settings a reader looks for first."""
    size, epochs = (r.settings.get(k) for k in FIRST_KEYS)
    return f"{r.path.name} ({_value(size)} px, {_value(epochs)} ep)"


def figure_panels(runs: Sequence[RunClaims]) -> dict[str, list[ForestRow]]:
    """Claims 1-3, one panel each: every run's difference from its baseline on validation, in the table's order."""
    panels = {}
    for number, _, model, _ in PAIRWISE_CLAIMS:
        rows = []
        for r in runs:
            c = next(c for c in r.claims if c.number == number)
            d = c.comparisons[0].diff if c.comparisons else None
            diff, lo, hi = ((100 * d.diff, 100 * d.lo, 100 * d.hi) if d is not None and d.tested else
                            (100 * d.diff if d is not None else math.nan, math.nan, math.nan))
            rows.append(ForestRow(run_label(r), diff, lo, hi, claimed_difference_pp(model, PAIRWISE_SPLIT), c.verdict))
        panels[f"claim {number}: {model} − baseline, {PAIRWISE_SPLIT}"] = rows
    return panels


def render(runs: Sequence[RunClaims], left_out: Sequence[tuple[Path, str]], recipes: Sequence[RunClaims],
           base: Path, figure: Path | None = None) -> str:
    runs = sorted(runs, key=_order)
    keys = differing_keys(runs)
    common = {k: v for k, v in runs[0].settings.items() if k not in keys} if runs else {}
    lines = ["# The study's claims in every run", "",
             "Generated by `python -m sweep.claims` from the experiment folders' raw trial files; do not edit by hand.",
             "", "Each row is one run (its pooled runs included), each claim cell what that run's report says: the "
             "difference in pp with its 95% interval and the seeds behind it (paired by seed where shared), and the "
             "verdict under the report's rule (Holm within each run's family; a verdict holds for that run's budget "
             "and recipe only). Claims 1-3: validation accuracy, the variant minus the baseline. Claim 4: test "
             "accuracy, the optimized CNN minus the other CNN closest to beating it (the claim needs every such "
             "difference to hold). Claim 5: the optimized CNN's test accuracy against the study's "
             f"{STUDY_REPORTED['test_acc_pct']['optimized']:.2f}%. "
             "Baseline: its validation accuracy, mean [95% interval]. " + _chance(runs) + " The rows are not "
             "independent replications (they share seed numbers, the data and often trials' settings; a row's "
             "pooled runs are in it once), so a count of verdicts down a column is no test: read a column for how a "
             "claim's reading moves with the settings.", ""]
    if figure is not None:
        claims_across_figure(figure_panels(runs), figure, tie_margin_pp=stats.TIE_MARGIN_PP)
        lines += [f"![claims 1-3 in every run]({figure.name})", "",
                  "*Claims 1-3 in every run below (top to bottom as in the table): the difference from the baseline "
                  "on validation with its 95% interval, coloured by the run's verdict; the study's claimed "
                  f"difference dashed red, the grey band the ±{stats.TIE_MARGIN_PP:g} pp tie margin; an interval too "
                  "wide for the axis is cut at its edge, with an arrow.*", ""]
    if common:
        lines += ["Settings shared by every row: " + ", ".join(f"`{k}` {_value(v)}" for k, v in common.items()), ""]
    header = ["run", *(k.split(".")[-1] for k in keys), "host", "baseline val",
              *(f"claim {n}" for n in range(1, 6))]
    rows = [study_row(keys)]
    for r in runs:
        report = Path(os.path.relpath(r.path.resolve() / "report.md", base)).as_posix()
        baseline = official_variant(BASELINE, r.variants)
        rows.append([f"[{r.path.name}]({report})", *(_value(r.settings.get(k)) for k in keys), ", ".join(r.hosts),
                     f"{fmt_ci(baseline.summary('val'))} (n={len(baseline.done)})",
                     *(claim_cell(c, r.variants) for c in r.claims)])
    lines += md_table(header, rows)
    lines += ["", "The claims, as the study states them: " + "; ".join(
        f"{c.number}. {c.claim}" for c in (runs[0].claims if runs else [])) + "."]
    if left_out:
        lines += ["", "Runs without the study's baseline and another of its CNNs under the official protocol, so "
                  "without a claim to decide: " + "; ".join(f"`{p.name}` ({why})" for p, why in left_out) + "."]
    lines += render_best(best_recipes(recipes))
    return "\n".join(lines) + "\n"


def render_best(best: Sequence[BestRecipes]) -> list[str]:
    """The section that sets each CNN at its best recipe per input size, its claims decided on test."""
    if not best:
        return []
    lines = ["", "## Each CNN at its best recipe", "",
             "A recipe that suits the baseline may starve a variant (claim 1 at 64x64 moves with "
             "`train.dense_lr_fan_in`), so the fair comparison sets each CNN at its own best settings. At each input "
             "size with two runs or more, each of the study's CNNs takes the run (its recipe: epochs, learning rate, "
             "warmup, `dense_lr_fan_in`, the host's precision) where its mean validation accuracy is highest, over "
             f"at least {MIN_SEEDS_TO_CHOOSE} seeds. Candidates are the table's runs and those below it that trained "
             "a CNN as the study defines it (official split, no rebalancing, nothing else varied beside it in the "
             "run), so a run of one CNN alone is a recipe tried for that CNN; searches are not. The claims are "
             "then decided on **test** accuracy, which played no part in the choice: claims 1-3 as each variant at "
             "its best recipe minus the baseline at its own (paired over the seeds both ran, since the runs share "
             "seed numbers; Welch when they share fewer than two), Holm within claims 1-3; claims 4 and 5 as above, "
             "on the chosen optimized CNN. The choice reuses the validation seeds, so the chosen validation means "
             "are optimistic and the test differences are not. It chooses among the recipes that were run, which "
             "is no search: an untried recipe may move a claim again, and a CNN chosen among fewer recipes (\"best "
             "of k\") has had fewer chances at its best than one chosen among more.", ""]
    header = ["input size", "runs", "recipe chosen per CNN: run (val mean, seeds, best of k recipes)",
              *(f"claim {n}" for n in range(1, 6))]
    rows = []
    for b in best:
        variants = [v for _, v in b.chosen.values()]
        chosen = "; ".join(f"{m}: `{r.path.name}` ({pct(v.summary('val').mean)}, n={len(v.done)}, "
                           f"best of {b.tried[m]})" for m, (r, v) in b.chosen.items())
        rows.append([_value(b.input_size), str(len(b.runs)), chosen, *(claim_cell(c, variants) for c in b.claims)])
    return lines + md_table(header, rows) + render_best_faces(best)


def render_best_faces(best: Sequence[BestRecipes]) -> list[str]:
    """Claims 1-3 at the best recipes again, with the test faces as a sample too (`sweep.stats.seeds_and_faces`):
    the intervals above hold the 3,589 faces fixed, while at 64x64 a third to four fifths of a difference's variance
    comes from which faces were drawn."""
    signs = {number: sign for number, _, _, sign in PAIRWISE_CLAIMS}
    rows, missing = [], []
    for b in best:
        comps = [(c.number, c.comparisons[0]) for c in b.claims if c.number in signs and c.comparisons]
        fam = face_family([comp for _, comp in comps])  # Holm over the claims with predictions on both sides
        number = {id(comp): n for n, comp in comps}
        for comp, fd, p_adj in fam:
            n = number[id(comp)]
            verdict = replace(comp, diff=fd.both, p_adj=p_adj).verdict(signs[n])
            rows.append([_value(b.input_size), f"claim {n}", f"{comp.variant.model} − {comp.reference.model}",
                         f"{fd.n_seeds} × {fd.n_faces:,}", fmt_interval(fd.seeds), fmt_interval(fd.both),
                         f"{100 * fd.face_share:.0f}%", fmt_p(p_adj), f"**{verdict}**"])
        have = {id(x[0]) for x in fam}
        missing += [f"{_value(b.input_size)}: claim {n}" for n, comp in comps if id(comp) not in have]
    if not rows and not missing:
        return []
    lines = ["", "Claims 1-3 above again, with the test faces as a sample too: the intervals above are over seeds "
             "on the same 3,589 PrivateTest faces, so they hold the faces fixed. From the per-face predictions "
             "the chosen trials recorded, each difference is estimated as a crossed seeds × faces random-effects "
             "model over the seeds both sides share (`sweep.stats.seeds_and_faces`, as in a report's *Uncertainty "
             "from the faces*), Holm within claims 1-3, and read with the same verdict rule.", ""]
    if rows:
        lines += md_table(["input size", "claim", "difference", "seeds × faces", "seeds only: Δ (pp) [95%]",
                           "seeds and faces: Δ (pp) [95%]", "faces' share", "Holm p", "verdict"], rows)
    if missing:
        lines += ["", "Not available (fewer than two shared seeds with per-face predictions on both sides; trials "
                  "written before 2026-12-03 recorded none): " + ", ".join(missing) + "."]
    return lines


def claims_markdown(paths: Sequence[str | Path], base: str | Path, figure: Path | None = None) -> str:
    """The markdown table for the runs under `paths`, its links relative to the folder `base`; with `figure`, the
    forest plot of claims 1-3 is drawn there and shown by its file name (it belongs beside the markdown)."""
    runs, left_out, recipes = [], [], []
    for path in find_runs(paths):
        exp = load_experiment(path)
        variants = group_variants(exp)
        claims = run_claims(exp, variants)
        if not is_search(exp):  # a search's trials each ran their own settings: no recipe of its own
            recipes.append(claims)
        if is_study_ablation(variants):
            runs.append(claims)
        else:
            models = sorted({v.model for v in variants if v.done}, key=lambda m: (m not in MODEL_ORDER, m))
            official = {v.model for v in variants if v.done and v.protocol == OFFICIAL}
            why = ("models: " + ", ".join(models)) if models else "no completed trial"
            if official and BASELINE not in official:
                why += "; no official baseline"
            left_out.append((exp.path, why))
    if not runs:
        raise ReportError("none of the runs has the study's baseline and another of its CNNs under the official "
                          "protocol: no claim to tabulate")
    return render(runs, left_out, recipes, Path(base).resolve(), figure)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.claims", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="experiment folders, or folders of them (reports/)")
    ap.add_argument("--out", default=None, help="write the markdown here (default: print it)")
    args = ap.parse_args(argv)
    try:
        out = Path(args.out) if args.out else None
        text = claims_markdown(args.paths, out.resolve().parent if out else Path.cwd(),
                               out.with_suffix(".png") if out else None)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out:
        out.write_text(text)
        print(out)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
