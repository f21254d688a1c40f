"""Build `report.md` (+ small PNG figures) from an experiment folder written by `sweep.run`.

Run:
    python -m sweep.report EXPERIMENT_DIR [--out report.md]

or from Python (the sweep calls this at the end): `build_report(exp_dir, out=None) -> Path`.

The input is the experiment-folder format pinned in docs/DESIGN.md: `sweep_meta.json` plus one
folder per Tune trial holding `params.json`, `result.json` (JSON lines, one per epoch),
`final.json` (completed trials only) and `error.txt` (errored trials). The report groups trials into
variants (model name, data protocol and any other grid axis that is not the seed), summarises every
metric across seeds as mean +- std with a Student-t 95% interval, compares each variant to the
baseline with Welch's t-test, sets the study's reported numbers beside ours with a verdict per claim,
and lists failed, stopped-early and odd trials instead of dropping them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import traceback
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sweep import stats
from sweep.params import flatten_params
from sweep.stats import Summary, summarize, welch

try:  # the canonical tuple lives in fer_data (pinned by a test there)
    from fer_data import CLASS_NAMES
except ImportError:  # report must still render when fer_data is not importable; same order as DESIGN.md
    CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

# The study's reported numbers (its tables 5.1 and 5.1.2), in percent. Validation accuracy for the
# four ablations; test accuracy for the optimized model. Keep every paper number here and only here.
STUDY_REPORTED = {
    "source": (
        'Analysing deep CNN components for emotion classification: an ablation study on ICML face '
        'dataset (2025)'
    ),
    "val_acc_pct": {"baseline": 48.05, "no_batchnorm": 54.25, "no_dropout": 47.26, "fewer_layers": 46.27},
    "test_acc_pct": {"optimized": 80.38},
}

OFFICIAL = "official"
LEAKY = "leaky-oversample-before-split"
BASELINE = "baseline"
MODEL_ORDER = ("baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized")
SEED_KEYS = ("seed",)  # plus any key ending in ".seed"


class ReportError(ValueError):
    """Bad input to the report (missing experiment folder, unreadable output path)."""


# ----------------------------------------------------------------------------- loading


def _num(x: Any) -> float | None:
    """A finite float, or None for anything else (missing, str, bool, NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _flatten(d: dict, prefix: str = "") -> dict:
    """Flatten nested dicts to dotted keys ("model": {"name": x} -> "model.name": x)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def merge_params(params: dict) -> dict:
    """Tune's params.json -> flat dotted keys: the grid point's nested `"variant"` dict is merged into
    the top level (`sweep.params.flatten_params`); any other nested dict is flattened to dotted keys."""
    if isinstance(params.get("train_loop_config"), dict):  # a Ray Train trainer run inside Tune nests it
        params = {**{k: v for k, v in params.items() if k != "train_loop_config"}, **params["train_loop_config"]}
    return _flatten(flatten_params(params))


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


@dataclass
class Trial:
    """One Tune trial folder as read from disk; `problems` lists whatever was odd about it."""

    name: str
    path: Path
    params: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    final: dict | None = None
    error: str | None = None  # first line of error.txt (+ the exception line when Tune's header)
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.final is not None:
            return "completed"
        if self.error is not None:
            return "failed"
        if self.rows:
            return "stopped"
        return "no results"

    def metric(self, split: str, key: str) -> float | None:
        """A scalar from final.json `metrics[split][key]`, or None."""
        m = (self.final or {}).get("metrics")
        if not isinstance(m, dict) or not isinstance(m.get(split), dict):
            return None
        return _num(m[split].get(key))

    def split_metrics(self, split: str) -> dict:
        m = (self.final or {}).get("metrics")
        if isinstance(m, dict) and isinstance(m.get(split), dict):
            return m[split]
        return {}

    @property
    def best_val_acc(self) -> float | None:
        """Best validation accuracy seen (Tune's per-epoch `best_val_acc`/`val/acc`); never test."""
        vals = [_num(r.get("best_val_acc")) for r in self.rows] + [_num(r.get("val/acc")) for r in self.rows]
        vals = [v for v in vals if v is not None]
        if vals:
            return max(vals)
        return self.metric("val", "acc")

    @property
    def epochs_run(self) -> int | None:
        e = _num((self.final or {}).get("epochs_run"))
        if e is not None:
            return int(e)
        epochs = [_epoch_of(r) for r in self.rows]
        epochs = [e for e in epochs if e is not None]
        return max(epochs) if epochs else None

    @property
    def wall_s(self) -> float | None:
        w = _num((self.final or {}).get("wall_s"))
        if w is not None:
            return w
        times = [_num(r.get("time_total_s")) for r in self.rows]
        times = [t for t in times if t is not None]
        return max(times) if times else None


def _epoch_of(row: dict) -> int | None:
    e = _num(row.get("epoch"))
    if e is None:
        e = _num(row.get("training_iteration"))
    return int(e) if e is not None else None


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _read_error(path: Path) -> str:
    text = ANSI_ESCAPE.sub("", path.read_text(errors="replace"))  # Ray colours parts of its tracebacks
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(empty error.txt)"
    first = lines[0]
    # Tune's error.txt starts with "Failure # 1 (occurred at ...)"; the exception is at the end
    if first.startswith("Failure #") and len(lines) > 1:
        return f"{first}: {lines[-1]}"
    return first


def load_trial(path: Path) -> Trial:
    """Read one trial folder; never raises: anything odd is recorded in `Trial.problems`."""
    t = Trial(name=path.name, path=path)
    p = path / "params.json"
    if p.exists():
        try:
            params = json.loads(p.read_text())
            if not isinstance(params, dict):
                raise ValueError("not a JSON object")
            t.params = merge_params(params)
        except (ValueError, OSError) as exc:
            t.problems.append(f"{p.name}: unreadable ({exc})")
    else:
        t.problems.append("params.json missing")
    r = path / "result.json"
    if r.exists():
        bad = 0
        for line in r.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if isinstance(row, dict):
                    t.rows.append(row)
                else:
                    bad += 1
            except ValueError:
                bad += 1
        if bad:
            t.problems.append(f"result.json: {bad} unparsable line(s) skipped")
    f = path / "final.json"
    if f.exists():
        try:
            final = json.loads(f.read_text())
            if not isinstance(final, dict) or not isinstance(final.get("metrics"), dict):
                raise ValueError("no 'metrics' object")
            t.final = final
            if t.metric("test", "acc") is None:
                t.problems.append("final.json: metrics.test.acc missing or not a number")
        except (ValueError, OSError) as exc:
            t.problems.append(f"final.json: unreadable ({exc}); trial not counted")
    e = path / "error.txt"
    if e.exists():
        try:
            t.error = _read_error(e)
        except OSError as exc:
            t.error = f"(error.txt unreadable: {exc})"
    return t


@dataclass
class Experiment:
    path: Path
    meta: dict
    trials: list[Trial]
    problems: list[str]


TRIAL_FILES = ("params.json", "result.json", "final.json", "error.txt")


def load_experiment(exp_dir: str | Path) -> Experiment:
    """Read sweep_meta.json and every trial folder (a sub-folder holding any of TRIAL_FILES)."""
    path = Path(exp_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: experiment folder does not exist (expected <storage>/<name>/)")
    problems: list[str] = []
    meta: dict = {}
    mp = path / "sweep_meta.json"
    if mp.exists():
        try:
            meta = json.loads(mp.read_text())
            if not isinstance(meta, dict):
                problems.append(f"{mp}: not a JSON object; ignored")
                meta = {}
        except (ValueError, OSError) as exc:
            problems.append(f"{mp}: unreadable ({exc}); ignored")
    else:
        problems.append(f"{mp}: missing; header and reproducibility block are empty")
    trials = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if any((sub / n).exists() for n in TRIAL_FILES):
            try:
                trials.append(load_trial(sub))
            except Exception as exc:  # one odd trial must not sink the report
                trials.append(Trial(name=sub.name, path=sub, problems=[f"could not be read: {exc!r}"]))
    if not trials:
        problems.append(f"{path}: no trial folders found")
    return Experiment(path, meta, trials, problems)


# ----------------------------------------------------------------------------- grouping


def _is_seed_key(k: str) -> bool:
    return k in SEED_KEYS or k.endswith(".seed")


def _search_block(meta: dict) -> dict | None:
    s = meta.get("search")
    return s if isinstance(s, dict) else ({} if s else None)


def _space_keys(meta: dict) -> list[str]:
    """Sampled keys named by the grid's `search.space` (sweep/grids/search.yaml), if recorded."""
    space = (_search_block(meta) or {}).get("space")
    return sorted(space) if isinstance(space, dict) else []


def is_search(exp: Experiment) -> bool:
    """A search sweep: grid named "search", or a `search` block in meta whose sampled keys (its
    `space`, else model.l2 / model.dropout) take more than one value across the trials."""
    grid = exp.meta.get("grid")
    if isinstance(grid, str) and Path(grid).stem == "search":
        return True
    if not _search_block(exp.meta):  # sweep.run records "search": null for grid sweeps
        return False
    for key in _space_keys(exp.meta) or ["model.l2", "model.dropout"]:
        if len({_hashable(t.params.get(key)) for t in exp.trials if key in t.params}) > 1:
            return True
    return False


def varying_keys(trials: Sequence[Trial]) -> list[str]:
    keys = sorted({k for t in trials for k in t.params})
    with_params = [t for t in trials if t.params]
    return [k for k in keys if len({_hashable(t.params.get(k)) for t in with_params}) > 1]


def variant_axes(exp: Experiment) -> list[str]:
    """Keys that define a variant: model.name, data.protocol, then every other varying non-seed key.

    In a search sweep the sampled parameters are not variant axes (each trial samples new values).
    """
    varying = [k for k in varying_keys(exp.trials) if not _is_seed_key(k)]
    others = [k for k in varying if k not in ("model.name", "data.protocol")]
    if is_search(exp):
        others = []
    return ["model.name", "data.protocol", *others]


@dataclass
class Variant:
    key: tuple
    label: str
    model: str
    protocol: str
    extras: dict
    trials: list[Trial]

    @property
    def done(self) -> list[Trial]:
        return [t for t in self.trials if t.status == "completed"]

    def values(self, split: str, key: str = "acc") -> list[float]:
        return [v for v in (t.metric(split, key) for t in self.done) if v is not None]

    def summary(self, split: str, key: str = "acc") -> Summary:
        return summarize(self.values(split, key))


def group_variants(exp: Experiment) -> list[Variant]:
    axes = variant_axes(exp)
    groups: dict[tuple, list[Trial]] = defaultdict(list)
    for t in exp.trials:
        groups[tuple(_hashable(t.params.get(a)) for a in axes)].append(t)
    variants = []
    for key, trials in groups.items():
        vals = dict(zip(axes, key))
        model = vals.pop("model.name")
        model = "unknown" if model is None else str(model)
        protocol = vals.pop("data.protocol")
        protocol = OFFICIAL if protocol is None else str(protocol)
        extras = {k: v for k, v in vals.items()}
        tags = ([] if protocol == OFFICIAL else [protocol]) + [f"{k}={v}" for k, v in extras.items()]
        label = model + (f" [{', '.join(tags)}]" if tags else "")
        variants.append(Variant(key, label, model, protocol, extras, trials))

    def order(v: Variant):
        m = MODEL_ORDER.index(v.model) if v.model in MODEL_ORDER else len(MODEL_ORDER)
        return (m, v.model, v.protocol != OFFICIAL, v.protocol, json.dumps(v.extras, sort_keys=True, default=str))

    return sorted(variants, key=order)


def baseline_for(v: Variant, variants: Sequence[Variant]) -> Variant | None:
    """The baseline run under the same protocol and other grid axes as `v`, or None.

    No fallback to another protocol: a leaky variant against the honest baseline would mix the
    leakage effect into the ablation effect (the leakage audit makes that comparison explicitly).
    """
    if v.model == BASELINE:
        return None
    found = [b for b in variants if b.model == BASELINE and b.protocol == v.protocol and b.extras == v.extras]
    return found[0] if found else None


def official_variant(model: str, variants: Sequence[Variant]) -> Variant | None:
    """The honest-protocol variant of `model` with the most completed seeds (for the claims)."""
    cands = [v for v in variants if v.model == model and v.protocol == OFFICIAL]
    return max(cands, key=lambda v: len(v.done)) if cands else None


# ----------------------------------------------------------------------------- formatting


def pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def fmt_summary(s: Summary, scale: float = 100.0, digits: int = 2) -> str:
    """`mean ± std [lo, hi]` (in percent by default); n=1 says so; n=0 is a dash."""
    if s.n == 0:
        return "—"
    f = lambda x: f"{scale * x:.{digits}f}"  # noqa: E731
    if s.n == 1:
        return f"{f(s.mean)} (n=1, no interval)"
    return f"{f(s.mean)} ± {f(s.std)} [{f(s.lo)}, {f(s.hi)}]"


def fmt_diff(d: stats.Difference) -> str:
    """Difference in percentage points with its Welch 95% interval and p-value."""
    if not math.isfinite(d.diff):
        return "—"
    head = f"{100 * d.diff:+.2f} pp"
    if not d.tested:
        return f"{head} (n<2, no test)"
    sig = "significant" if d.p < stats.ALPHA else "not significant"
    return f"{head} [{100 * d.lo:+.2f}, {100 * d.hi:+.2f}], Welch p={d.p:.3g} ({sig} at 5%)"


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "—"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _cell(x: Any) -> str:
    """Make a value safe inside a markdown table cell."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "variant"


def _alt(label: str) -> str:
    """Image alt text: square brackets would end markdown's `![...]` early."""
    return label.replace("[", "(").replace("]", ")")


def _mean(xs: Sequence[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


# ----------------------------------------------------------------------------- sections


def _meta_get(meta: dict, *names: str) -> Any:
    for n in names:
        if n in meta and meta[n] not in (None, "", {}, []):
            return meta[n]
    return None


def _trial_values(exp: Experiment, key: str) -> list[str]:
    """The distinct values of one parameter across the trials that set it, as sorted strings."""
    return sorted({str(t.params[key]) for t in exp.trials if key in t.params})


def section_header(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    meta = exp.meta
    name = _meta_get(meta, "name", "experiment") or exp.path.name
    cmd = meta.get("command")
    if isinstance(cmd, list):
        cmd = shlex.join(str(c) for c in cmd)
    counts = defaultdict(int)
    for t in exp.trials:
        counts[t.status] += 1
    seeds = sorted({str(t.params[k]) for t in exp.trials for k in t.params if _is_seed_key(k)})
    epochs = _trial_values(exp, "train.epochs")
    out = [f"# Report: {name}", ""]
    out.append("Generated by `python -m sweep.report` from the experiment folder; do not edit by hand.")
    out.append("")
    out.append("Command that produced the runs:")
    out += ["", "```", str(cmd) if cmd else "(command not recorded in sweep_meta.json)"]
    for r in meta.get("resumes") or []:  # an interrupted sweep continued with --resume
        out.append(f"{r.get('command')}    # resumed {r.get('at', '')}"
                   + (f" at commit {r['git_commit'][:12]}" if r.get("git_commit") else ""))
    out += ["```", ""]
    if meta.get("description"):
        out.append(f"- description: {meta['description']}")
    out.append(f"- experiment folder: `{exp.path.as_posix()}` (trial folders below are named relative to it)")
    out.append(f"- grid: `{_meta_get(meta, 'grid') or '—'}`; profile: `{_meta_get(meta, 'profile') or '—'}`")
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    out.append(f"- trials: {len(exp.trials)} ({status or 'none'}); variants: {len(variants)}")
    out.append(f"- seeds: {', '.join(seeds) or '—'}; epochs per trial (train.epochs): {', '.join(epochs) or '—'}")
    axes = variant_axes(exp)
    out.append(f"- variant axes: {', '.join(f'`{a}`' for a in axes)} (everything else fixed or a seed)")
    # the tuning-playbook split of the grid, when the sweep recorded it
    spec = meta.get("grid_spec") if isinstance(meta.get("grid_spec"), dict) else meta
    for part in ("scientific", "nuisance", "fixed"):
        if spec.get(part):
            out.append(f"- {part} parameters: `{json.dumps(spec[part], default=str)}`")
    for p in exp.problems:
        out.append(f"- note: {p}")
    out.append("")
    return out


def section_main_table(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    out = ["## Results per variant", ""]
    search = is_search(exp)
    if search:
        out.append("**Search sweep:** a variant's trials are different sampled configurations, not seeds of "
                   "one configuration, so the spread below is over configurations; see the Search section.")
        out.append("")
    out.append(
        "Accuracies in percent: mean ± sample std over seeds [95% interval of the mean, Student t with "
        "n-1 df]. Train/val/test = Training / PublicTest / PrivateTest; checkpoints and early stopping "
        "use val only. Macro precision/recall/F1 on test. Differences from the baseline (same protocol) "
        "in percentage points with the 95% interval of the difference and Welch's unequal-variance "
        "t-test across seeds (baseline under the same protocol and other axes). Only completed trials count; stopped and failed trials are listed below."
    )
    out.append("")
    rows = []
    for v in variants:
        base = baseline_for(v, variants)
        extra = []
        for status in ("stopped", "failed", "no results"):
            k = sum(t.status == status for t in v.trials)
            if k:
                extra.append(f"+{k} {status}")
        n = f"{len(v.done)}" + (f" ({', '.join(extra)})" if extra else "")
        if v.model == BASELINE:
            d_test = d_val = "reference"
        elif base is None:
            d_test = d_val = "no baseline under the same protocol and axes"
        else:
            d_test = fmt_diff(welch(v.values("test"), base.values("test")))
            d_val = fmt_diff(welch(v.values("val"), base.values("val")))
        params = sorted({int(p) for p in (_num((t.final or {}).get("params")) for t in v.done) if p is not None})
        params_s = "—" if not params else f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}"
        ep = [t.epochs_run for t in v.done if t.epochs_run is not None]
        best = [_num((t.final or {}).get("best_epoch")) for t in v.done]
        best = [b for b in best if b is not None]
        ep_s = "—" if not ep else f"{np.mean(ep):.3g}" + (f" (best {np.mean(best):.3g})" if best else "")
        rows.append([
            v.label, n,
            fmt_summary(v.summary("train")), fmt_summary(v.summary("val")), fmt_summary(v.summary("test")),
            fmt_summary(v.summary("test", "macro_precision")),
            fmt_summary(v.summary("test", "macro_recall")),
            fmt_summary(v.summary("test", "macro_f1")),
            d_test, d_val, params_s, ep_s,
            fmt_seconds(_mean([t.wall_s for t in v.done])),
        ])
    out += md_table(
        ["variant", "trials n (configs)" if search else "seeds n", "train acc", "val acc", "test acc", "macro P (test)", "macro R (test)",
         "macro F1 (test)", "Δ test acc vs baseline", "Δ val acc vs baseline", "params", "epochs",
         "wall time / trial"],
        rows,
    )
    out.append("")
    return out


@dataclass(frozen=True)
class ClaimResult:
    number: int
    claim: str
    study: str
    ours: str
    difference: str
    verdict: str
    note: str = ""


def evaluate_claims(variants: Sequence[Variant]) -> list[ClaimResult]:
    """Decide each of the study's five claims from our intervals (official protocol only)."""
    val = STUDY_REPORTED["val_acc_pct"]
    test = STUDY_REPORTED["test_acc_pct"]
    base = official_variant(BASELINE, variants)
    results = []
    pairwise = [
        (1, "Removing batch norm improves accuracy over the baseline", "no_batchnorm", +1),
        (2, "Removing dropout lowers accuracy slightly", "no_dropout", -1),
        (3, "Fewer conv layers lowers accuracy", "fewer_layers", -1),
    ]
    for number, text, model, sign in pairwise:
        study = f"val {val[model]:.2f} vs {val[BASELINE]:.2f} ({val[model] - val[BASELINE]:+.2f} pp)"
        v = official_variant(model, variants)
        if v is None or base is None or not v.done or not base.done:
            missing = model if (v is None or not v.done) else BASELINE
            results.append(ClaimResult(number, text, study, "—", "—", stats.INCONCLUSIVE, f"{missing} not run"))
            continue
        d = welch(v.values("val"), base.values("val"))
        ours = f"val {fmt_summary(v.summary('val'))} vs {fmt_summary(base.summary('val'))}"
        verdict = stats.interval_verdict(d.lo, d.hi, sign) if d.tested else stats.INCONCLUSIVE
        note = "" if d.tested else "n<2 on one side: no interval"
        results.append(ClaimResult(number, text, study, ours, fmt_diff(d), verdict, note))

    # claim 4: optimized beats every other model, each comparison decided by its interval (test acc)
    text4 = "The optimized model is the best of the study's five variants"
    study4 = f"optimized {test['optimized']:.2f} (test) vs ≤ {max(val.values()):.2f} (val) for the ablations"
    opt = official_variant("optimized", variants)
    # the study's claim is about its own five CNNs; stronger models beyond it are not part of it
    others = [official_variant(m, variants) for m in MODEL_ORDER if m != "optimized"]
    others = [o for o in others if o is not None and o.done]
    if opt is None or not opt.done or not others:
        results.append(ClaimResult(4, text4, study4, "—", "—", stats.INCONCLUSIVE,
                                   "optimized not run" if opt is None or not opt.done else "nothing to compare"))
    else:
        parts, verdicts = [], []
        for o in others:
            d = welch(opt.values("test"), o.values("test"))
            verdicts.append(stats.interval_verdict(d.lo, d.hi, +1) if d.tested else stats.INCONCLUSIVE)
            parts.append(f"vs {o.model}: {fmt_diff(d)}")
        if stats.DOES_NOT_HOLD in verdicts:
            v4 = stats.DOES_NOT_HOLD
        elif all(x == stats.HOLDS for x in verdicts):
            v4 = stats.HOLDS
        else:
            v4 = stats.INCONCLUSIVE
        results.append(ClaimResult(4, text4, study4, f"test {fmt_summary(opt.summary('test'))}",
                                   "; ".join(parts), v4))

    # claim 5: the optimized model reaches ~80% test accuracy
    text5 = "The optimized model reaches about 80% test accuracy"
    target = test["optimized"] / 100.0
    study5 = f"test {test['optimized']:.2f}"
    if opt is None or not opt.done:
        results.append(ClaimResult(5, text5, study5, "—", "—", stats.INCONCLUSIVE, "optimized not run"))
    else:
        s = opt.summary("test")
        if not s.has_interval:
            v5, note = stats.INCONCLUSIVE, "n<2: no interval"
        elif s.lo >= target:
            v5, note = stats.HOLDS, ""
        elif s.hi < target:
            v5, note = stats.DOES_NOT_HOLD, f"our interval lies below {test['optimized']:.2f}"
        else:
            v5, note = stats.INCONCLUSIVE, ""
        diff = f"{100 * s.mean - test['optimized']:+.2f} pp vs the study" if s.n else "—"
        leaky = [v for v in variants if v.model == "optimized" and v.protocol == LEAKY and v.done]
        if leaky:
            note = (note + "; " if note else "") + (
                f"under the leaky protocol: test {fmt_summary(leaky[0].summary('test'))} (see leakage audit)")
        results.append(ClaimResult(5, text5, study5, f"test {fmt_summary(s)}", diff, v5, note))
    return results


def section_claims(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    out = ["## The study's claims against our runs", ""]
    out.append(f"Study: *{STUDY_REPORTED['source']}*. It reports single runs (no seeds, no intervals).")
    out.append("")
    if is_search(exp):
        out.append("_Not judged here: claims are decided from ablation sweeps (seeds of fixed configurations); "
                   "in a search sweep the trials of a variant are different configurations._")
        out.append("")
        return out
    out.append(
        "Verdict rule: a claim **holds** when our 95% interval of the difference (Welch, across seeds) "
        "lies entirely on the claimed side of zero, **does not hold** when it lies entirely on the other "
        "side, and is **inconclusive** when it contains zero or when either side has n<2 seeds. Claims "
        "1-3 compare validation accuracy (the split the study reports for them); claim 4 compares test "
        "accuracy against every other model and holds only if every comparison holds (does not hold if "
        "any comparison does not hold); claim 5 holds when our 95% interval of the optimized model's test "
        "accuracy lies at or above the study's 80.38%, does not hold when it lies entirely below it. Only "
        "the honest (official) split protocol counts."
    )
    out.append("")
    epochs, sizes = _trial_values(exp, "train.epochs"), _trial_values(exp, "data.input_size")
    if epochs:
        out.append(f"These verdicts are for this experiment's training budget only: {'/'.join(epochs)} "
                   f"epoch(s) per trial at {'/'.join(f'{s}x{s}' for s in sizes) or 'the default'} input. "
                   "The study does not state its epochs; models still improving at the last epoch (see the "
                   "learning curves) may rank differently with longer training.")
        out.append("")
    rows = [[c.number, c.claim, c.study, c.ours, c.difference, f"**{c.verdict}**", c.note]
            for c in evaluate_claims(variants)]
    out += md_table(["#", "claim", "study (%)", "ours (%)", "our difference (95% interval)", "verdict", "note"], rows)
    out.append("")
    return out


def section_per_class(variants: Sequence[Variant]) -> list[str]:
    out = ["## Per-class F1 (test, mean over seeds)", ""]
    rows = []
    width = 0
    for v in variants:
        f1s = []
        for t in v.done:
            f1 = (t.split_metrics("test").get("per_class") or {}).get("f1")
            if isinstance(f1, list) and all(_num(x) is not None for x in f1):
                f1s.append([float(x) for x in f1])
        if not f1s or len({len(f) for f in f1s}) != 1:
            rows.append([v.label, len(f1s)] + ["—"] * len(CLASS_NAMES))
            continue
        mean = np.mean(np.asarray(f1s), axis=0)
        width = max(width, len(mean))
        rows.append([v.label, len(f1s)] + [f"{100 * x:.1f}" for x in mean])
    names = list(CLASS_NAMES) if width in (0, len(CLASS_NAMES)) else [f"class {i}" for i in range(width)]
    out += md_table(["variant", "n"] + names, rows)
    out.append("")
    return out


def variant_confusion(v: Variant) -> tuple[np.ndarray | None, int]:
    """Test confusion matrices summed over completed seeds (counts; rows = true class)."""
    mats = []
    for t in v.done:
        cm = t.split_metrics("test").get("confusion")
        try:
            a = np.asarray(cm, dtype=float)
        except (TypeError, ValueError):
            continue
        if a.ndim == 2 and a.shape[0] == a.shape[1] and a.size and np.isfinite(a).all():
            mats.append(a)
    if not mats or len({m.shape for m in mats}) != 1:
        return None, 0
    return np.sum(mats, axis=0), len(mats)


def variant_curves(v: Variant) -> dict[str, dict[int, float]]:
    """Per-epoch mean over the variant's trials (completed and stopped) of train/val loss and acc."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in v.trials:
        for r in t.rows:
            e = _epoch_of(r)
            if e is None:
                continue
            for k in ("train/loss", "train/acc", "val/loss", "val/acc"):
                x = _num(r.get(k))
                if x is not None:
                    acc[k][e].append(x)
    return {k: {e: float(np.mean(xs)) for e, xs in d.items()} for k, d in acc.items()}


def section_figures(variants: Sequence[Variant], out_dir: Path) -> list[str]:
    from sweep import report_figures as figs  # matplotlib import only when figures are drawn

    out = ["## Confusion matrices and learning curves", ""]
    out.append("Confusion matrices: test split, counts summed over seeds, then row-normalised (rows = true "
               "class). Curves: mean over seeds at each epoch (stopped trials count up to where they stopped).")
    out.append("")
    fig_dir = out_dir / "figures"
    for v in variants:
        out.append(f"### {v.label}")
        out.append("")
        cm, n = variant_confusion(v)
        if cm is not None:
            k = cm.shape[0]
            names = CLASS_NAMES if k == len(CLASS_NAMES) else tuple(f"c{i}" for i in range(k))
            p = figs.confusion_figure(cm, names, f"{v.label}: test, {n} seed(s), row-normalised",
                                      fig_dir / f"confusion_{slug(v.label)}.png")
            out.append(f"![confusion matrix {_alt(v.label)}]({p.relative_to(out_dir).as_posix()})")
        else:
            out.append("_No confusion matrix (no completed trial with a valid `metrics.test.confusion`)._")
        curves = variant_curves(v)
        if curves:
            n_rows = sum(1 for t in v.trials if t.rows)
            p = figs.curves_figure(curves, f"{v.label}: mean over {n_rows} trial(s)",
                                   fig_dir / f"curves_{slug(v.label)}.png")
            out.append(f"![learning curves {_alt(v.label)}]({p.relative_to(out_dir).as_posix()})")
        else:
            out.append("_No learning curves (no result.json rows with an epoch)._")
        out.append("")
    return out


def _audit_by_protocol(meta: dict) -> dict[str, dict]:
    """sweep_meta.json `data_audit`: a dict keyed by protocol; tolerate a single audit or a list."""
    audit = meta.get("data_audit")
    if isinstance(audit, list):
        return {str(a.get("protocol", i)): a for i, a in enumerate(audit) if isinstance(a, dict)}
    if isinstance(audit, dict):
        if "test_exact_copies_in_train_fraction" in audit:
            return {str(audit.get("protocol", "?")): audit}
        return {str(k): v for k, v in audit.items() if isinstance(v, dict)}
    return {}


def section_leakage(exp: Experiment, variants: Sequence[Variant]) -> list[str]:
    if not any(v.protocol == LEAKY for v in variants):
        return []
    out = ["## Leakage audit", ""]
    out.append(
        f"The `{LEAKY}` protocol oversamples the pooled data before splitting it, as many FER notebooks "
        "do, so copies of the same image land in both train and test and test accuracy rewards "
        "memorisation. Below, the same model under the honest official split (PrivateTest held out) and "
        "under the leaky protocol; the difference is leaky minus honest with Welch's 95% interval."
    )
    out.append("")
    rows = []
    for v in variants:
        if v.protocol != LEAKY:
            continue
        honest = [h for h in variants if h.model == v.model and h.protocol == OFFICIAL and h.extras == v.extras]
        h = honest[0] if honest else None
        diff = fmt_diff(welch(v.values("test"), h.values("test"))) if h else "no honest run of this model"
        model = v.model + "".join(f" [{k}={x}]" for k, x in v.extras.items())
        rows.append([model, fmt_summary(h.summary("test")) if h else "—", fmt_summary(v.summary("test")), diff])
    out += md_table(["model", "honest test acc (%)", "leaky test acc (%)", "leaky − honest"], rows)
    out.append("")
    audits = _audit_by_protocol(exp.meta)
    if audits:
        arows = []
        for proto, a in sorted(audits.items()):
            frac = _num(a.get("test_exact_copies_in_train_fraction"))
            extra = ", ".join(f"{k}={a[k]}" for k in sorted(a)
                              if k not in ("protocol", "test_exact_copies_in_train_fraction")
                              and not isinstance(a[k], (dict, list)))
            arows.append([proto, "—" if frac is None else f"{100 * frac:.2f}%", extra or "—"])
        out.append("Fraction of test images with an exact pixel copy in train (from `sweep_meta.json` `data_audit`):")
        out.append("")
        out += md_table(["protocol", "test images with an exact copy in train", "other audit fields"], arows)
    else:
        out.append("_`sweep_meta.json` has no `data_audit`: the exact-copy fraction is not available._")
    out.append("")
    return out


def sampled_keys(exp: Experiment) -> list[str]:
    """Parameters a search sweep sampled: the `search.space` keys from meta, else every varying key
    except model, protocol and seeds."""
    present = {k for t in exp.trials for k in t.params}
    space = [k for k in _space_keys(exp.meta) if k in present]
    if space:
        return space
    return [k for k in varying_keys(exp.trials)
            if not _is_seed_key(k) and k not in ("model.name", "data.protocol")]


def param_importance(trials: Sequence[Trial], keys: Sequence[str]) -> tuple[dict[str, float] | None, str]:
    """Optuna's (fANOVA) importance of `keys` for best val acc, from a study rebuilt from the trials.

    Returns (importances, "") or (None, why it is absent).
    """
    usable = [t for t in trials if t.best_val_acc is not None and all(k in t.params for k in keys)]
    if len(usable) < 2:
        return None, f"needs >= 2 trials with a val accuracy and all sampled parameters; have {len(usable)}"
    keys = [k for k in keys if len({_hashable(t.params[k]) for t in usable}) > 1]
    if not keys:
        return None, "no sampled parameter varies across the usable trials"
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for k in keys:
        vals = [t.params[k] for t in usable]
        if all(_num(x) is not None and isinstance(x, int) for x in vals):
            dists[k] = IntDistribution(min(vals), max(vals))
        elif all(_num(x) is not None for x in vals):
            lo, hi = float(min(vals)), float(max(vals))
            # log scale when the sampled range spans orders of magnitude (e.g. L2 1e-5..1e-2)
            dists[k] = FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
        else:
            dists[k] = CategoricalDistribution(sorted({_hashable(x) for x in vals}, key=str))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for t in usable:
        params = {k: (float(t.params[k]) if isinstance(dists[k], FloatDistribution) else _hashable(t.params[k]))
                  for k in keys}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=t.best_val_acc))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # seeded: same report every run
    imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {k: float(v) for k, v in imp.items()}, ""


def section_search(exp: Experiment) -> list[str]:
    if not is_search(exp):
        return []
    keys = sampled_keys(exp)
    out = ["## Search", ""]
    search = _search_block(exp.meta)
    if search:
        out.append(f"Search settings from `sweep_meta.json`: `{json.dumps(search, default=str, sort_keys=True)}`")
        out.append("")
    scored = [t for t in exp.trials if t.best_val_acc is not None]
    if scored:
        best = max(scored, key=lambda t: t.best_val_acc)
        out.append(f"Best trial by best validation accuracy (`best_val_acc`; the test split is never used to "
                   f"select): `{best.name}`, val {pct(best.best_val_acc)}%.")
        out.append("")
        out += md_table(["parameter", "value"], [[k, best.params.get(k, "—")] for k in keys])
        out.append("")
        if best.metric("test", "acc") is not None:
            out.append(f"Test accuracy of that trial, measured once after selection: {pct(best.metric('test', 'acc'))}%.")
            out.append("")
    else:
        out.append("_No trial reported a validation accuracy; no best parameters._")
        out.append("")
    out.append("### Parameter importance (optuna, fANOVA)")
    out.append("")
    out.append("A study is rebuilt from the trials (`optuna.create_study` + `optuna.trial.create_trial`, "
               "objective = best val accuracy). Trials stopped early by ASHA are added as complete with "
               "their truncated score, which biases importances toward parameters that help early.")
    out.append("")
    imp, why = param_importance(exp.trials, keys)
    if imp is None:
        out.append(f"_Parameter importance not computed: {why}._")
    else:
        out += md_table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in imp.items()])
    out.append("")
    out.append("### Trials")
    out.append("")
    rows = []
    for t in sorted(exp.trials, key=lambda t: -(t.best_val_acc if t.best_val_acc is not None else -1)):
        rows.append([t.name] + [t.params.get(k, "—") for k in keys] + [
            pct(t.best_val_acc), t.epochs_run if t.epochs_run is not None else "—",
            "yes" if t.status == "stopped" else "no", t.status])
    out += md_table(["trial"] + keys + ["best val acc (%)", "epochs run", "stopped early", "status"], rows)
    out.append("")
    return out


def _resources(meta: dict) -> tuple[float | None, float | None]:
    """(CPUs, GPUs) per trial from meta `resources_per_trial`: sweep.run's
    {workers, cpus_per_worker, gpus_per_worker}, or a plain {cpu, gpu} (any case)."""
    r = meta.get("resources_per_trial")
    if not isinstance(r, dict):
        return None, None
    low = {str(k).lower(): v for k, v in r.items()}
    if "cpus_per_worker" in low or "gpus_per_worker" in low:
        workers = _num(low.get("workers"))
        workers = 1.0 if workers is None else workers
        cpw, gpw = _num(low.get("cpus_per_worker")), _num(low.get("gpus_per_worker"))
        return (None if cpw is None else workers * cpw), (0.0 if gpw is None else workers * gpw)
    return _num(low.get("cpu")), _num(low.get("gpu"))


def section_repro(exp: Experiment) -> list[str]:
    meta = exp.meta
    out = ["## Reproducibility", ""]
    items = [
        ("git commit", _meta_get(meta, "git_commit", "git", "commit")),
        ("profile", _meta_get(meta, "profile")),
        ("grid", _meta_get(meta, "grid")),
        ("data sha256", _meta_get(meta, "data_sha256", "sha256")),
        ("data source", _meta_get(meta, "data", "data_path", "data_spec")),
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
    shown = {"name", "experiment", "command", "git_commit", "git", "commit", "profile", "grid", "data_sha256",
             "sha256", "data", "data_path", "data_spec", "started", "finished", "resources_per_trial",
             "hardware", "versions", "data_audit", "search", "grid_spec", "scientific", "nuisance", "fixed",
             "description"}
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
        out.append("Stopped early by the scheduler (e.g. ASHA) or unfinished when the report was built: "
                   "`result.json` but no `final.json`; not counted in the per-variant statistics:")
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
    except Exception as exc:
        print(f"sweep.report: section '{name}' failed: {exc!r}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return [f"## {name}", "", f"_This section could not be built: `{exc!r}`._", ""]


def render_report(exp: Experiment, out_dir: Path) -> str:
    variants = group_variants(exp)
    lines: list[str] = []
    lines += _guarded("Header", section_header, exp, variants)
    lines += _guarded("Results per variant", section_main_table, exp, variants)
    lines += _guarded("Claims", section_claims, exp, variants)
    lines += _guarded("Per-class F1", section_per_class, variants)
    lines += _guarded("Leakage audit", section_leakage, exp, variants)
    lines += _guarded("Search", section_search, exp)
    lines += _guarded("Figures", section_figures, variants, out_dir)
    lines += _guarded("Failed, stopped and odd trials", section_trial_issues, exp, variants)
    lines += _guarded("Reproducibility", section_repro, exp)
    return "\n".join(lines).rstrip() + "\n"


def build_report(exp_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report for `exp_dir` to `out` (default `<exp_dir>/report.md`), figures in `figures/` beside it.

    Returns the path of the written markdown file.
    """
    exp = load_experiment(exp_dir)
    out_path = Path(out) if out is not None else exp.path / "report.md"
    if out_path.exists() and out_path.is_dir():
        raise ReportError(f"{out_path}: --out is a directory; give a file name such as report.md")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_report(exp, out_path.parent))
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sweep.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment_dir", help="<storage>/<name>/ folder written by sweep.run")
    ap.add_argument("--out", default=None, help="output markdown file (default: EXPERIMENT_DIR/report.md)")
    args = ap.parse_args(argv)
    try:
        path = build_report(args.experiment_dir, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
