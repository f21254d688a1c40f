"""Build `report.md` (+ PNG figures) from an experiment folder written by `sweep.run`.

Run:
    python -m sweep.report EXPERIMENT_DIR [--out report.md]

or from Python (the sweep calls this at the end): `build_report(exp_dir, out=None) -> Path`.

The input is the experiment-folder format pinned in docs/DESIGN.md. The report groups trials into
variants (every varying grid axis but the seed), summarises each metric across seeds, sets chance
references (majority class, 1/7) beside them, compares each variant with the baseline (paired by seed
when seeds are shared, Welch otherwise; Holm-adjusted within each table), flags collapsed predictions and
runs still improving at their last epoch, judges the study's claims on the split the study reports them
for, isolates the leaky protocol's effect, and lists failed, stopped and odd trials.

Modules, in three layers. Load: report_load (the folder into trials and variants). Analysis: report_claims
(the study's numbers, comparisons, verdicts), report_axes (any grid's axes against their reference levels,
interactions), report_faces (the same comparisons with the evaluated faces as a sample too), report_leak
(leakage audit), report_search (search sweeps), report_sensitivity (the same grid run at shared and at tuned
nuisance settings, read side by side), report_units (dead ReLU units per variant), with the statistics and verdict
names in sweep.stats. Render: report_tables, report_study (the study's claims and table), report_format,
report_figures, and this module (reproducibility, odd trials, the entry points). The output is deterministic: the same folder gives a
byte-identical report.md and identical PNGs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from sweep.report_axes import section_comparisons
from sweep.report_faces import section_faces
from sweep.report_format import md_table, pct
from sweep.report_leak import section_leakage
from sweep.report_load import (LEAKY, POOLED_DIR, TRIAL_FILES, Experiment, ReportError, Variant, _num,  # noqa: F401
                               group_variants, is_search, load_experiment, pooled_in)
from sweep.report_search import section_search
from sweep.report_sensitivity import SHARED_DIR, Counterpart, find_counterpart, section_sensitivity
from sweep.report_study import is_study_ablation, section_claims, section_paper
from sweep.report_tables import (FIGURES, _meta_get, section_figures, section_header, section_leak_figure,
                                 section_main_table, section_per_class, section_per_seed, section_tuning)
from sweep.report_units import section_units

FIRST_LINE_RE = re.compile(r"<!-- sweep\.report: trials=(\d+) -->")
LEGACY_TRIALS_RE = re.compile(r"^- trials: (\d+)\b", re.M)  # reports written before FIRST_LINE existed


# ----------------------------------------------------------------------------- provenance, issues


def _resources(meta: dict) -> tuple[float | None, float | None]:
    """(CPUs, GPUs) per trial from sweep.run's meta `resources_per_trial`: {workers, cpus_per_worker,
    gpus_per_worker}."""
    r = meta.get("resources_per_trial")
    if not isinstance(r, dict):
        return None, None
    workers = _num(r.get("workers"))
    workers = 1.0 if workers is None else workers
    cpw, gpw = _num(r.get("cpus_per_worker")), _num(r.get("gpus_per_worker"))
    return (None if cpw is None else workers * cpw), (0.0 if gpw is None else workers * gpw)


def section_repro(exp: Experiment) -> list[str]:
    meta = exp.meta
    out = ["## Reproducibility", ""]
    items = [
        ("git commit", _meta_get(meta, "git_commit")),
        ("profile", _meta_get(meta, "profile")),
        ("grid", _meta_get(meta, "grid")),
        ("data sha256", _meta_get(meta, "data_sha256")),
        ("data source", _meta_get(meta, "data")),
        ("started", _meta_get(meta, "started")),
        ("finished", _meta_get(meta, "finished")),
        ("resources per trial", _meta_get(meta, "resources_per_trial")),
    ]
    for k, v in items:
        out.append(f"- {k}: `{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v if v is not None else '—'}`")
    for block in ("hardware", "versions"):
        v = meta.get(block)
        if isinstance(v, dict) and v:
            out.append(f"- {block}: " + ", ".join(f"{k} `{v[k]}`" for k in sorted(v)))
        else:
            out.append(f"- {block}: {v if v else '—'}")
    for run in meta.get("pooled") or []:
        out.append(f"- pooled run `{run.get('name')}` (trials in `{run['folder']}/`, {run['trials']}): commit "
                   f"`{run.get('git_commit') or '—'}`, {run.get('started') or '—'} to {run.get('finished') or '—'}, "
                   f"host {run.get('host') or '—'}")
    walls = [t.wall_s for t in exp.trials if t.wall_s is not None]
    total_h = sum(walls) / 3600
    cpu, gpu = _resources(meta)
    if cpu is None and gpu is None:
        out.append(f"- total trial wall time: {total_h:.2f} h over {len(walls)} trial(s) "
                   "(`resources_per_trial` absent: CPU/GPU hours unknown)")
    else:
        out.append(f"- total compute (sum over trials of wall time x resources per trial, failed and stopped "
                   f"trials included): {total_h * (cpu or 0):.2f} CPU hours, {total_h * (gpu or 0):.2f} GPU hours "
                   f"({total_h:.2f} trial-hours over {len(walls)} trial(s))")
    shown = {"name", "command", "git_commit", "profile", "grid", "data_sha256", "data", "started", "finished",
             "resources_per_trial", "hardware", "versions", "data_audit", "search", "scientific", "nuisance", "fixed",
             "description", "pooled"}
    rest = {k: v for k, v in meta.items() if k not in shown}
    if rest:
        out.append("- other metadata: " + ", ".join(
            f"{k} `{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}`" for k, v in sorted(rest.items())))
    out.append("")
    return out


def section_trial_issues(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    label_of = {id(t): v.label for v in variants for t in v.trials}
    out = ["## Failed, stopped and odd trials", ""]
    failed = [t for t in exp.trials if t.error is not None]
    if failed:
        out.append("Failed or errored trials (first line of `error.txt`; with Tune's `Failure #` header the "
                   "exception line is appended). A trial with both `error.txt` and `final.json` recovered "
                   "after a retry and is counted above.")
        out.append("")
        out += md_table(["trial dir", "variant", "error", "counted"],
                        [[t.name, label_of.get(id(t), "—"), t.error,
                          "yes (final.json present)" if t.status == "completed" else "no"] for t in failed])
    else:
        out.append("No failed trials.")
    out.append("")
    stopped = [t for t in exp.trials if t.status == "stopped"]
    if stopped:
        why = ("Stopped early by the scheduler (e.g. ASHA) or unfinished when the report was built" if is_search(exp)
               else "Unfinished: a grid has no scheduler to stop a trial early, so these were cut off by an interrupted "
               "sweep (its command again with `--resume` continues them) or still running when the report was built")
        out.append(why + ": `result.json` but no `final.json`; not counted in the per-variant statistics:")
        out.append("")
        out += md_table(["trial dir", "variant", "epochs run", "best val acc (%)"],
                        [[t.name, label_of.get(id(t), "—"),
                          t.epochs_run if t.epochs_run is not None else "—", pct(t.best_val_acc)] for t in stopped])
    else:
        out.append("No trials stopped early.")
    out.append("")
    odd = [t for t in exp.trials if t.problems or t.status == "no results"]
    if odd:
        out.append("Odd trials (kept, with what was wrong):")
        out.append("")
        out += md_table(["trial dir", "status", "problem"],
                        [[t.name, t.status, "; ".join(t.problems) or "no result rows"] for t in odd])
        out.append("")
    return out


# ----------------------------------------------------------------------------- entry points


def _guarded(name: str, fn, *args) -> list[str]:
    """Render one section; a bug in one section must not lose the rest of a long sweep's report."""
    try:
        return fn(*args)
    except ReportError:
        raise
    except Exception as exc:
        print(f"sweep.report: section '{name}' failed: {exc!r}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return [f"## {name}", "", f"_This section could not be built: `{exc!r}`._", ""]


def render_report(exp: Experiment, out_dir: Path, shared: Counterpart | None = None) -> str:
    variants = group_variants(exp)  # raises ReportError on duplicate seeds
    lines: list[str] = []
    lines += _guarded("Header", section_header, exp, variants)
    lines += _guarded("Results per variant", section_main_table, exp, variants)
    lines += _guarded("Nuisance tuning", section_tuning, exp)
    lines += _guarded("Differences from the reference level", section_comparisons, exp, variants)
    lines += _guarded("Uncertainty from the faces", section_faces, exp, variants)
    if is_study_ablation(variants):  # keyed on the variants the claims are about, not on the grid's name
        lines += _guarded("The study's claims", section_claims, exp, variants, out_dir)
        lines += _guarded("The study's table beside ours", section_paper, exp, variants)
    if shared is not None:
        lines += _guarded("Sensitivity", section_sensitivity, exp, variants, shared)
    lines += _guarded("Per-seed results", section_per_seed, exp, variants)
    lines += _guarded("Leakage audit", section_leakage, exp, variants)
    if any(v.protocol == LEAKY for v in variants):
        lines += _guarded("Leakage figure", section_leak_figure, variants, out_dir)
    lines += _guarded("Per-class F1", section_per_class, variants)
    lines += _guarded("Dead ReLU units", section_units, variants)
    lines += _guarded("Search", section_search, exp, out_dir)
    lines += _guarded("Figures", section_figures, variants, out_dir)
    lines += _guarded("Failed, stopped and odd trials", section_trial_issues, exp, variants)
    lines += _guarded("Reproducibility", section_repro, exp)
    return "\n".join(lines).rstrip() + "\n"


def trials_listed(report: Path) -> int | None:
    """How many trials an existing report.md was built from (its first line; older reports: the
    header's "- trials: N" line), or None when it does not say."""
    try:
        text = report.read_text(errors="replace")
    except OSError:
        return None
    first = text.split("\n", 1)[0]
    m = FIRST_LINE_RE.fullmatch(first.strip()) or LEGACY_TRIALS_RE.search(text)
    return int(m.group(1)) if m else None


def _remove_stale_figures(fig_dir: Path) -> None:
    """Per-variant PNGs written by older versions of this module; the grid figures replace them."""
    if fig_dir.is_dir():
        for p in sorted(fig_dir.glob("confusion_*.png")) + sorted(fig_dir.glob("curves_*.png")):
            p.unlink()


def build_report(exp_dir: str | Path, out: str | Path | None = None, shared: str | Path | None = None,
                 pool: Sequence[str | Path] = ()) -> Path:
    """Write the report for `exp_dir` to `out` (default `<exp_dir>/report.md`), figures in `figures/` beside it.
    `shared` (default: `<exp_dir>/shared/` when it holds an experiment) is the same grid run with other nuisance
    settings, read beside this one in a sensitivity section (sweep.report_sensitivity). `pool` are further runs of
    the same grid at the same settings whose trials join this one's (as do those in `<exp_dir>/pooled/`).

    Raises ReportError when `exp_dir` (or `shared`) is not an experiment folder (missing, no trial folders, no
    sweep_meta.json), when a variant has duplicate seeds, when `shared` ran other scientific axes, when a pooled run
    differs in grid, data or settings, or when `out` is an existing report built from more trials than `exp_dir`
    holds now. Returns the path of the written markdown file.
    """
    exp = load_experiment(exp_dir, pool)
    counterpart = find_counterpart(exp, shared)
    out_path = Path(out) if out is not None else exp.path / "report.md"
    if out_path.exists() and out_path.is_dir():
        raise ReportError(f"{out_path}: --out is a directory; give a file name such as report.md")
    if out_path.exists():
        listed = trials_listed(out_path)
        if listed is not None and listed > len(exp.trials):
            raise ReportError(f"{out_path}: lists {listed} trials but {exp.path} holds {len(exp.trials)}; "
                              "refusing to overwrite it (rebuild from the complete experiment folder, or --out "
                              "another file)")
    group_variants(exp)  # duplicate seeds are refused before anything is written
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_figures(out_path.parent / FIGURES)
    out_path.write_text(render_report(exp, out_path.parent, counterpart))
    return out_path


def export_raw(exp_dir: str | Path, dest: str | Path, *, counterpart: bool = True) -> Path:
    """Copy what a report is built from, and nothing heavier, from `exp_dir` into the new folder `dest`: its
    trials, its pooled runs and (with `counterpart`) its `shared/` run. A counterpart or a pooled run is read
    without a counterpart of its own, so theirs stays behind (`counterpart=False`)."""
    import shutil

    src, dest = Path(exp_dir), Path(dest)
    load_experiment(src)  # refuses a folder that is not an experiment, before anything is written
    if dest.exists():
        raise ReportError(f"--export {dest}: already exists; choose a new folder")
    files = [src / "sweep_meta.json"] + [f for sub in sorted(src.iterdir()) if sub.is_dir()
                                          for f in (sub / n for n in TRIAL_FILES) if f.is_file()]
    tuning = src / "tuning"
    if tuning.is_dir():  # nuisance-tuning trials: what each variant's tuned value was chosen from
        files += sorted(f for f in tuning.glob("*/*/*") if f.name in TRIAL_FILES and f.is_file())
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    if counterpart and (src / SHARED_DIR / "sweep_meta.json").is_file():  # an exported folder's counterpart
        export_raw(src / SHARED_DIR, dest / SHARED_DIR, counterpart=False)
    for run in pooled_in(src):  # and its pooled runs
        export_raw(run, dest / POOLED_DIR / run.name, counterpart=False)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment_dir", help="<storage>/<name>/ folder written by sweep.run")
    ap.add_argument("--out", default=None, help="output markdown file (default: EXPERIMENT_DIR/report.md)")
    ap.add_argument("--export", default=None, metavar="DIR",
                    help="copy the experiment's small raw files (sweep_meta.json and every trial's params, per-epoch "
                         "results, final metrics and errors; no checkpoints or event files) into the new folder DIR "
                         "and build the report there: a folder to commit that rebuilds with `python -m sweep.report DIR`")
    ap.add_argument("--shared", "--against", dest="shared", default=None, metavar="DIR",
                    help="the same grid run with one nuisance setting for every variant (EXPERIMENT_DIR being the run "
                         "with a `tune:` block, say), or run at another value of any setting (input size, epochs): "
                         "adds a section that reads every comparison and claim in both runs side by side, naming the "
                         f"settings that differ; with --export its raw files go to DIR/{SHARED_DIR}/, where rebuilds "
                         "find them")
    ap.add_argument("--pool", action="append", default=[], metavar="DIR",
                    help="a further run of the same grid on the same data at the same settings (more seeds run later, "
                         "say): its trials join EXPERIMENT_DIR's; refused when a setting differs or a seed repeats; "
                         f"with --export its raw files go to DIR/{POOLED_DIR}/<its folder name>/ (repeatable)")
    args = ap.parse_args(argv)
    try:
        exp_dir = args.experiment_dir
        if args.export:
            if args.out:
                raise ReportError("--export builds DIR/report.md; it cannot be combined with --out")
            names = [Path(p).resolve().name for p in args.pool]
            if len(set(names)) < len(names):
                raise ReportError(f"--pool: two runs share a folder name ({', '.join(names)}); each goes to "
                                  f"{args.export}/{POOLED_DIR}/<name>/")
            group_variants(exp := load_experiment(args.experiment_dir, args.pool))  # refused before anything is copied
            if args.shared:
                find_counterpart(exp, args.shared)
            # A counterpart given with --against replaces the one the folder may already carry in its shared/.
            exp_dir = export_raw(args.experiment_dir, args.export, counterpart=not args.shared)
            if args.shared:
                export_raw(args.shared, Path(exp_dir) / SHARED_DIR, counterpart=False)
            for run, name in zip(args.pool, names):
                export_raw(run, Path(exp_dir) / POOLED_DIR / name, counterpart=False)
        path = build_report(exp_dir, args.out, None if args.export else args.shared, () if args.export else args.pool)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
