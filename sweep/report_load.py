"""Read an experiment folder (docs/DESIGN.md) into trials and group them into variants.

`load_experiment(dir)` reads `sweep_meta.json` and every trial folder; it refuses (ReportError) a folder
that is not an experiment: missing, without trial folders or without `sweep_meta.json`. One odd trial
never sinks the report: what was wrong is kept in `Trial.problems`. `group_variants` groups trials by
every varying non-seed key and refuses two trials of one variant with the same seed. `pool_runs` joins
later runs of the same grid, data and settings (more seeds) to a run, refusing one whose settings differ.

Every `result.json` row is checked against the pinned format: an `epoch` that is a positive integer and
numbers for the metric keys (`train/*`, `val/*`, `final/*`, METRIC_KEYS). A row that fails is a problem of
its trial and is left out. The trained epochs of all trials (rows with train metrics; a repeated epoch
keeps its last row) are one pandas DataFrame, `Experiment.epochs`: one row per trial and epoch, columns
`trial`, `epoch` and one per metric key found. Each `Trial.epochs` is its slice of that frame, and its
curves, best epoch and epoch counts read it; the trial's closing rows (the last epoch repeated with the
selected weights' val/acc and final/* metrics, no train metrics) are not epoch rows.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweep import stats
from sweep.params import flatten_params
from sweep.stats import Summary, summarize

OFFICIAL = "official"
LEAKY = "leaky-oversample-before-split"
BASELINE = "baseline"
MODEL_ORDER = ("baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized")
SEED_KEYS = ("seed",)  # plus any key ending in ".seed"
SUBSETS = ("copy_in_train", "no_copy_in_train")  # final.json metrics.test.subsets
ACC_CLIP = (0.0, 1.0)  # intervals of accuracies (fractions) stay inside [0, 1]
TRIAL_FILES = ("params.json", "result.json", "final.json", "error.txt")
POOLED_DIR = "pooled"  # further runs of the same grid and settings (more seeds), one folder each
LABEL_DEFAULTS = {("data.balance", "none")}
TRAIN_KEYS = ("train/loss", "train/acc")  # a row with either is a trained epoch; a closing row has neither
METRIC_PREFIXES = ("train/", "val/", "final/")
METRIC_KEYS = ("lr", "best_val_acc", "best_epoch", "epoch_s", "time_total_s")  # besides METRIC_PREFIXES
NAMED_BAD_ROWS = 3  # bad result.json rows named one by one; the rest are counted


class ReportError(ValueError):
    """Bad input to the report: not an experiment folder, duplicate seeds, an output it must not overwrite."""


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
    return _flatten(flatten_params(params))


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def is_metric_key(k: str) -> bool:
    return k.startswith(METRIC_PREFIXES) or k in METRIC_KEYS


def is_number(x: Any) -> bool:
    """An int or float, not a bool (NaN counts: a diverged loss is a result; curves skip it)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_trained(row: dict) -> bool:
    return any(k in row for k in TRAIN_KEYS)


def row_faults(row: dict) -> list[str]:
    """What makes one result.json row break the pinned format (empty: the row is good)."""
    e = row.get("epoch")
    faults = []
    if "epoch" not in row:
        faults.append("no epoch")
    elif not (is_number(e) and math.isfinite(e) and e >= 1 and float(e).is_integer()):
        faults.append(f"epoch {_short(e)} is not a positive integer")
    faults += [f"{k} {_short(v)} is not a number" for k, v in row.items() if is_metric_key(k) and not is_number(v)]
    return faults


def _short(v: Any) -> str:
    r = repr(v)  # a problem is one line of a table cell
    return r if len(r) <= 40 else r[:37] + "..."


def empty_epochs() -> pd.DataFrame:
    return pd.DataFrame({"trial": pd.Series(dtype=object), "epoch": pd.Series(dtype="int64")})


def _finite(s: pd.Series) -> list[float]:
    return [float(x) for x in s if math.isfinite(x)]


@dataclass
class Trial:
    """One Tune trial folder as read from disk; `problems` lists whatever was odd about it."""

    name: str
    path: Path
    params: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # result.json's good rows, as written (repeats included)
    final: dict | None = None
    error: str | None = None  # first line of error.txt (+ the exception line when Tune's header)
    problems: list[str] = field(default_factory=list)
    # this trial's slice of Experiment.epochs (load_experiment sets it): one row per trained epoch
    epochs: pd.DataFrame = field(default_factory=empty_epochs, repr=False, compare=False)

    @property
    def status(self) -> str:
        if self.final is not None:
            return "completed"
        if self.error is not None:
            return "failed"
        if self.rows:
            return "stopped"
        return "no results"

    @property
    def seed(self) -> Any:
        """The trial's seed (params `seed`), or None."""
        s = self.params.get("seed")
        return _hashable(s) if s is not None else None

    @property
    def seed_key(self) -> Any:
        """What pairs this trial with another variant's: its seed, or a key that pairs with nothing."""
        return self.seed if self.seed is not None else ("trial", self.name)

    def split_metrics(self, split: str) -> dict:
        m = (self.final or {}).get("metrics")
        if isinstance(m, dict) and isinstance(m.get(split), dict):
            return m[split]
        return {}

    def metric(self, split: str, key: str = "acc", subset: str | None = None) -> float | None:
        """A scalar from final.json `metrics[split][key]` (or `metrics[split].subsets[subset][key]`), or None."""
        m = self.split_metrics(split)
        if subset is not None:
            m = (m.get("subsets") or {}).get(subset) if isinstance(m.get("subsets"), dict) else None
            if not isinstance(m, dict):
                return None
        return _num(m.get(key))

    def predictions(self, split: str) -> tuple[str, np.ndarray] | None:
        """(the split's true labels as final.json wrote them, per-face correctness as 0/1) from final.json
        `predictions` (trials from 2026-12-03 on), or None. The labels string identifies the faces' order: two
        trials' correctness pairs face by face only when their strings are equal."""
        p = ((self.final or {}).get("predictions") or {}).get(split)
        if not isinstance(p, dict):
            return None
        y_true, y_pred = p.get("y_true"), p.get("y_pred")
        if not (isinstance(y_true, str) and isinstance(y_pred, str) and y_true and len(y_true) == len(y_pred)):
            return None
        truth, pred = (np.frombuffer(x.encode(), dtype=np.uint8) for x in (y_true, y_pred))
        return y_true, (truth == pred).astype(np.int8)

    def unit_activity(self, split: str = "val") -> list[dict] | None:
        """Per ReLU layer, in forward order, {layer, kind, units, never_active, active_share} on the split with the
        selected weights, from final.json `unit_activity` (trials from 2026-12-03 evening on), or None."""
        rows = ((self.final or {}).get("unit_activity") or {}).get(split)

        def ok(r) -> bool:
            return (isinstance(r, dict) and isinstance(r.get("layer"), str) and r.get("kind") in ("conv", "dense")
                    and isinstance(r.get("units"), int) and isinstance(r.get("never_active"), int)
                    and 0 <= r["never_active"] <= r["units"] and _num(r.get("active_share")) is not None)
        return rows if isinstance(rows, list) and rows and all(ok(r) for r in rows) else None

    def support(self, split: str) -> list[float] | None:
        s = (self.split_metrics(split).get("per_class") or {}).get("support")
        return s if isinstance(s, list) and all(_num(x) is not None for x in s) and s else None

    def epoch_rows(self) -> list[dict]:
        """One row per trained epoch, in order, from `epochs` (metric keys only, NaN where a row lacked one)."""
        return self.epochs.drop(columns="trial").to_dict("records")

    def closing_rows(self) -> list[dict]:
        """The good rows without train metrics: the closing report(s) that repeat the last epoch with the
        selected weights' val/acc (a resumed finished trial reports it again)."""
        return [r for r in self.rows if not is_trained(r)]

    def curve(self, key: str) -> dict[int, float]:
        """{epoch: value} of one per-epoch metric ("val/acc", "train/acc", ...); non-finite values skipped."""
        if key not in self.epochs:
            return {}
        return {int(e): float(x) for e, x in zip(self.epochs["epoch"], self.epochs[key]) if math.isfinite(x)}

    def logged(self, key: str) -> list[float]:
        """Every finite value of `key` in the epoch rows and then the closing rows."""
        out = _finite(self.epochs[key]) if key in self.epochs else []
        return out + [x for x in (_num(r.get(key)) for r in self.closing_rows()) if x is not None]

    @property
    def best_val_acc(self) -> float | None:
        """Best validation accuracy seen (Tune's per-epoch `best_val_acc`/`val/acc`); never test."""
        vals = self.logged("best_val_acc") + self.logged("val/acc")
        if vals:
            return max(vals)
        return self.metric("val", "acc")

    @property
    def epochs_run(self) -> int | None:
        e = _num((self.final or {}).get("epochs_run"))
        if e is None:
            e = max(self.logged("epoch"), default=None)  # a closing row counts: it repeats the last epoch
        return None if e is None else int(e)

    @property
    def best_epoch(self) -> int | None:
        """final.json `best_epoch`, else the first epoch with the highest per-epoch val/acc."""
        b = _num((self.final or {}).get("best_epoch"))
        if b is not None:
            return int(b)
        c = self.curve("val/acc")
        return max(c, key=lambda e: (c[e], -e)) if c else None

    @property
    def wall_s(self) -> float | None:
        w = _num((self.final or {}).get("wall_s"))
        if w is not None:
            return w
        return max(self.logged("time_total_s"), default=None)

    @property
    def n_params(self) -> int | None:
        p = _num((self.final or {}).get("params"))
        return int(p) if p is not None else None

    def collapse(self) -> tuple[bool, str]:
        """(collapsed, why) from the test split, then the val split (stats.is_collapsed)."""
        for split in ("test", "val"):
            m = self.split_metrics(split)
            if not m:
                continue
            hit, why = stats.is_collapsed(m.get("confusion"), _num(m.get("macro_recall")))
            if hit:
                return True, f"{split}: {why}"
        return False, ""


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
        t.rows = read_results(r, t.problems)
    f = path / "final.json"
    if f.exists():
        try:
            final = json.loads(f.read_text())
            if not isinstance(final, dict) or not isinstance(final.get("metrics"), dict):
                raise ValueError("no 'metrics' object")
            t.final = final
            if t.metric("test", "acc") is None:
                t.problems.append("final.json: metrics.test.acc missing or not a number")
            preds = final.get("predictions", {})  # absent in trials written before 2026-12-03
            bad = [k for k in preds if t.predictions(k) is None] if isinstance(preds, dict) else ["(all)"]
            if bad:
                t.problems.append(f"final.json: predictions {', '.join(bad)} malformed (want {{split: {{y_true, "
                                  "y_pred}}}}, label strings of equal length); left out of the faces' intervals")
            units = final.get("unit_activity", {})  # absent in trials written before 2026-12-03 evening
            bad = [k for k in units if t.unit_activity(k) is None] if isinstance(units, dict) else ["(all)"]
            if bad:
                t.problems.append(f"final.json: unit_activity {', '.join(bad)} malformed (want {{split: [{{layer, "
                                  "kind, units, never_active, active_share}}]}}); left out of the dead units")
        except (ValueError, OSError) as exc:
            t.problems.append(f"final.json: unreadable ({exc}); trial not counted")
    e = path / "error.txt"
    if e.exists():
        try:
            t.error = _read_error(e)
        except OSError as exc:
            t.error = f"(error.txt unreadable: {exc})"
    return t


def read_results(path: Path, problems: list[str]) -> list[dict]:
    """The good rows of one result.json, in file order; unparsable lines and rows that break the pinned
    format (row_faults) are left out and said in `problems`."""
    rows, unparsable, bad = [], 0, []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            unparsable += 1
        elif faults := row_faults(row):
            bad.append(f"{path.name} line {n} left out: {', '.join(faults)}")
        else:
            rows.append(row)
    if unparsable:
        problems.append(f"{path.name}: {unparsable} unparsable line(s) skipped")
    problems += bad[:NAMED_BAD_ROWS]
    if len(bad) > NAMED_BAD_ROWS:
        problems.append(f"{path.name}: {len(bad) - NAMED_BAD_ROWS} more bad row(s) left out")
    return rows


def epoch_record(trial: str, row: dict) -> dict:
    """One frame row: the trial, its epoch and the row's metric values."""
    return {"trial": trial, "epoch": int(row["epoch"]), **{k: v for k, v in row.items() if is_metric_key(k)}}


def epoch_frame(trials: Sequence[Trial]) -> pd.DataFrame:
    """One row per trial and trained epoch, sorted by trial then epoch; a repeated epoch (a resumed trial
    reports its checkpoint's epoch again) keeps its last row."""
    records = [epoch_record(t.name, r) for t in trials for r in t.rows if is_trained(r)]
    if not records:
        return empty_epochs()
    frame = pd.DataFrame.from_records(records)
    frame = frame.drop_duplicates(["trial", "epoch"], keep="last")
    return frame.sort_values(["trial", "epoch"], kind="stable").reset_index(drop=True)


@dataclass
class Experiment:
    path: Path
    meta: dict
    trials: list[Trial]
    problems: list[str]
    epochs: pd.DataFrame = field(default_factory=empty_epochs, repr=False, compare=False)  # epoch_frame(trials)


def load_experiment(exp_dir: str | Path, pool: Sequence[str | Path] = ()) -> Experiment:
    """Read sweep_meta.json and every trial folder (a sub-folder holding any of TRIAL_FILES), pooled with the
    runs in its own `pooled/` folder and the runs in `pool` (pool_runs).

    Raises ReportError for a folder that is missing, holds no trial folders, or has no sweep_meta.json, and for
    a pooled run of another grid, data or settings.
    """
    exp = _load_one(Path(exp_dir))
    inside = pooled_in(exp.path)
    others = [(_load_one(p), f"{POOLED_DIR}/{p.name}") for p in inside]
    others += [(_load_one(Path(p)), str(p)) for p in pool]
    for other, where in others:
        if pooled_in(other.path):  # its own pooled runs would be left out without a word
            raise ReportError(f"pooled run {where} holds pooled runs of its own in {POOLED_DIR}/; pool those runs "
                              "directly (one --pool each)")
    return pool_runs(exp, others) if others else exp


def pooled_in(path: Path) -> list[Path]:
    """The runs an experiment folder pools (its `pooled/<run>/` folders holding a sweep_meta.json)."""
    return sorted(p.parent for p in (path / POOLED_DIR).glob("*/sweep_meta.json"))


def _load_one(path: Path) -> Experiment:
    if not path.is_dir():
        raise ReportError(f"{path}: experiment folder does not exist (expected <storage>/<name>/)")
    subs = sorted(p for p in path.iterdir() if p.is_dir())
    trial_dirs = [s for s in subs if any((s / n).exists() for n in TRIAL_FILES)]
    mp = path / "sweep_meta.json"
    if not trial_dirs:
        what = "has sweep_meta.json but" if mp.exists() else "has no sweep_meta.json and"
        raise ReportError(f"{path}: not an experiment folder: it {what} no trial folders "
                          f"(sub-folders holding {'/'.join(TRIAL_FILES)}); nothing to report")
    if not mp.exists():
        raise ReportError(f"{path}: not an experiment folder written by sweep.run: sweep_meta.json is missing")
    problems: list[str] = []
    meta: dict = {}
    try:
        meta = json.loads(mp.read_text())
        if not isinstance(meta, dict):
            problems.append(f"{mp.name}: not a JSON object; ignored")
            meta = {}
    except (ValueError, OSError) as exc:
        problems.append(f"{mp.name}: unreadable ({exc}); ignored")
    trials = []
    for sub in trial_dirs:
        try:
            trials.append(load_trial(sub))
        except Exception as exc:  # one odd trial must not sink the report
            trials.append(Trial(name=sub.name, path=sub, problems=[f"could not be read: {exc!r}"]))
    return Experiment(path, meta, trials, problems, _attach_epochs(trials))


def _attach_epochs(trials: Sequence[Trial]) -> pd.DataFrame:
    """The experiment's epoch frame; each trial gets its slice."""
    epochs = epoch_frame(trials)
    by_trial = dict(iter(epochs.groupby("trial", sort=False)))
    for t in trials:
        t.epochs = by_trial.get(t.name, epochs.iloc[:0])
    return epochs


# ----------------------------------------------------------------------------- pooling runs


def constants(exp: Experiment) -> dict:
    """The settings every trial of a run shared (sweep_meta.json `nuisance` and `constants`)."""
    return {**(exp.meta.get("nuisance") or {}), **(exp.meta.get("constants") or {})}


# Settings added after runs were committed, with the value a run that does not record one trained at, so that
# a run of today pools with and reads against those runs when it leaves the setting alone.
ADDED_LATER = {"train.dense_lr_fan_in": 0}


def setting(values: Mapping, key: str) -> Any:
    """`key`'s value in a trial's params or a run's constants; a setting added later reads at the value runs that
    predate it trained at, so a run of today pools with and reads against them when it leaves the setting alone."""
    return values.get(key, ADDED_LATER.get(key))


def differing_settings(a: Experiment, b: Experiment) -> list[str]:
    """The constant settings (dotted keys) whose values differ between two runs, in `a`'s order, then `b`'s."""
    ca, cb = constants(a), constants(b)
    return [k for k in dict.fromkeys([*ca, *cb]) if setting(ca, k) != setting(cb, k)]


def run_host_kind(meta: dict) -> str | None:
    """The kind of host a run trained on (sweep_meta.json `hardware.kind`: bf16 CPU, AVX2 CPU, GPU)."""
    return (meta.get("hardware") or {}).get("kind")


def pool_runs(exp: Experiment, others: Sequence[tuple[Experiment, str]]) -> Experiment:
    """`exp` with the trials of further runs of the same grid on the same data at the same settings (more seeds
    run later, say), each given with the folder the report names it by. Their trials are named
    `<folder>/<trial dir>`; sweep_meta.json `pooled` lists the runs. Seeds still run once per variant
    (group_variants). Raises ReportError naming what differs."""
    trials, problems, runs = list(exp.trials), list(exp.problems), []
    for other, where in others:
        for key in ("grid", "data_sha256"):
            if other.meta.get(key) != exp.meta.get(key):
                raise ReportError(f"pooled run {where}: its {key} ({other.meta.get(key)}) differs from "
                                  f"{exp.path.name}'s ({exp.meta.get(key)}); pooling joins runs of one grid on one data file")
        if other.meta.get("tuning") != exp.meta.get("tuning"):
            raise ReportError(f"pooled run {where}: its tuned nuisance values (sweep_meta.json `tuning`) differ from "
                              f"{exp.path.name}'s; pooling joins runs whose trials ran at the same settings")
        if diff := differing_settings(exp, other):
            mine, theirs = constants(exp), constants(other)
            raise ReportError(f"pooled run {where}: settings differ from {exp.path.name}'s: " + ", ".join(
                f"{k}={theirs.get(k, 'unset')} vs {mine.get(k, 'unset')}" for k in diff)
                + " (read runs at different settings side by side with --against)")
        trials += [replace(t, name=f"{where}/{t.name}") for t in other.trials]
        problems += [f"{where}: {p}" for p in other.problems]
        runs.append({"folder": where, "trials": len(other.trials),
                     **{k: other.meta.get(k) for k in ("name", "command", "git_commit", "started", "finished")},
                     "host": run_host_kind(other.meta)})
    meta = {**exp.meta, "pooled": runs}
    if sci := merged_levels([exp.meta.get("scientific")] + [o.meta.get("scientific") for o, _ in others]):
        meta["scientific"] = sci  # a pooled run may add levels (--models): the header lists them all
    return Experiment(exp.path, meta, trials, problems, _attach_epochs(trials))


def merged_levels(specs: Sequence) -> dict:
    """The union of several runs' `scientific` blocks ({axis: levels}), each axis's levels in first-seen order."""
    out: dict[str, list] = {}
    for spec in specs:
        for axis, levels in (spec if isinstance(spec, dict) else {}).items():
            have = out.setdefault(axis, [])
            have += [v for v in (levels if isinstance(levels, list) else [levels]) if v not in have]
    return out


# ----------------------------------------------------------------------------- grouping


def is_seed_key(k: str) -> bool:
    return k in SEED_KEYS or k.endswith(".seed")


def search_block(meta: dict) -> dict | None:
    s = meta.get("search")
    return s if isinstance(s, dict) else ({} if s else None)


def space_keys(meta: dict) -> list[str]:
    """Sampled keys named by the grid's `search.space` (sweep/grids/search.yaml), if recorded."""
    space = (search_block(meta) or {}).get("space")
    return sorted(space) if isinstance(space, dict) else []


def is_search(exp: Experiment) -> bool:
    """A search sweep: grid named "search", or a `search` block in meta whose sampled keys (its
    `space`, else model.l2 / model.dropout) take more than one value across the trials."""
    grid = exp.meta.get("grid")
    if isinstance(grid, str) and Path(grid).stem == "search":
        return True
    if not search_block(exp.meta):  # sweep.run records "search": null for grid sweeps
        return False
    for key in space_keys(exp.meta) or ["model.l2", "model.dropout"]:
        if len({_hashable(t.params.get(key)) for t in exp.trials if key in t.params}) > 1:
            return True
    return False


def varying_keys(trials: Sequence[Trial]) -> list[str]:
    keys = sorted({k for t in trials for k in t.params})
    with_params = [t for t in trials if t.params]
    return [k for k in keys if len({_hashable(setting(t.params, k)) for t in with_params}) > 1]


def tuned_keys(meta: dict) -> list[str]:
    """The nuisance keys a grid's `tune:` block tuned per scientific point (sweep_meta.json `tuning.space`)."""
    t = meta.get("tuning")
    return list(t.get("space") or {}) if isinstance(t, dict) else []


def variant_axes(exp: Experiment) -> list[str]:
    """Keys that define a variant: model.name, data.protocol, then every other varying non-seed key.

    In a search sweep the sampled parameters are not variant axes (each trial samples new values).
    """
    tuned = set(tuned_keys(exp.meta))  # a variant's own tuned nuisance values
    varying = [k for k in varying_keys(exp.trials) if not is_seed_key(k) and k not in tuned]
    others = [k for k in varying if k not in ("model.name", "data.protocol")]
    if is_search(exp):
        others = []
    return ["model.name", "data.protocol", *others]


@dataclass(frozen=True)
class Budget:
    """Whether a variant had settled by its last epoch (the "not settled at this budget" rule)."""

    n: int  # completed seeds with a known best and last epoch
    best_is_last: int  # of those, how many had their best val epoch at the last epoch
    gain_pp: float | None  # mean val curve: last epoch minus two epochs before, in pp
    improving: bool  # stats.still_improving on the mean val curve
    not_settled: bool
    reason: str
    flat_from: int | None = None  # stats.flat_from on the mean val curve: the plateau epoch


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

    @property
    def balance(self) -> str:
        b = self.extras.get("data.balance")
        if b is None:
            b = next((t.params["data.balance"] for t in self.trials if "data.balance" in t.params), "none")
        return str(b)

    def values(self, split: str, key: str = "acc", subset: str | None = None) -> list[float]:
        return [v for v in (t.metric(split, key, subset) for t in self.done) if v is not None]

    def by_seed(self, split: str, key: str = "acc", subset: str | None = None) -> dict:
        """{seed: value} over completed trials (a trial without a seed pairs with nothing)."""
        out = {}
        for t in self.done:
            v = t.metric(split, key, subset)
            if v is not None:
                out[t.seed_key] = v
        return out

    def summary(self, split: str, key: str = "acc", subset: str | None = None) -> Summary:
        return summarize(self.values(split, key, subset), clip=ACC_CLIP)

    def majority_rate(self, split: str) -> float | None:
        """The majority class's share of `split` (the accuracy of always predicting it), from the first completed
        trial that recorded the split's class counts."""
        return next((x for t in self.done if (x := stats.majority_rate(t.support(split))) is not None), None)

    def collapsed(self) -> list[tuple[Trial, str]]:
        """Completed trials whose predictions collapsed, with why."""
        out = []
        for t in self.done:
            hit, why = t.collapse()
            if hit:
                out.append((t, why))
        return out

    def mean_curve(self, key: str) -> dict[int, tuple[float, float, float, int]]:
        """{epoch: (mean, min, max, n)} of a per-epoch metric over the completed trials (all trials with
        rows when none completed)."""
        trials = self.done or [t for t in self.trials if t.rows]
        acc: dict[int, list[float]] = defaultdict(list)
        for t in trials:
            for e, x in t.curve(key).items():
                acc[e].append(x)
        return {e: (float(np.mean(xs)), float(min(xs)), float(max(xs)), len(xs)) for e, xs in sorted(acc.items())}

    def budget(self) -> Budget:
        pairs = [(t.best_epoch, t.epochs_run) for t in self.done]
        pairs = [(b, e) for b, e in pairs if b is not None and e is not None]
        at_last = sum(b >= e for b, e in pairs)
        curve = [m for _, (m, *_rest) in self.mean_curve("val/acc").items()]
        improving = stats.still_improving(curve)
        gain = None
        if len(curve) >= 2:
            gain = 100.0 * (curve[-1] - curve[max(0, len(curve) - 1 - stats.IMPROVING_WINDOW)])
        # Only the curve decides. A best epoch at the last epoch alone does not: under a schedule that anneals
        # the learning rate to 0 the last epoch is usually the best by a hair even when the curve is flat.
        reason = f"mean val acc rose {gain:+.2f} pp over the last {stats.IMPROVING_WINDOW} epochs" if improving else ""
        return Budget(len(pairs), at_last, gain, improving, improving, reason, stats.flat_from(curve))


def check_duplicate_seeds(variants: Sequence[Variant]) -> None:
    """Two trials of one variant with the same seed would count one run twice: refuse, naming them."""
    clashes = []
    for v in variants:
        seen: dict[Any, list[str]] = defaultdict(list)
        for t in v.trials:
            if t.seed is not None:
                seen[t.seed].append(t.name)
        for seed, names in seen.items():
            if len(names) > 1:
                clashes.append(f"{v.label} seed {seed} in {', '.join(names)}")
    if clashes:
        raise ReportError("duplicate seeds (each seed must run once per variant): " + "; ".join(clashes))


def _level(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)  # as the grid file writes it


def variant_label(model: str, protocol: str = OFFICIAL, extras: dict | None = None) -> str:
    """A variant named by its axis values: `baseline [model.batchnorm=false]`, `baseline [leaky-...]`.
    Defaults stay out of the label: "optimized", not "optimized [data.balance=none]"."""
    tags = ([] if protocol == OFFICIAL else [protocol]) + [
        f"{k}={_level(v)}" for k, v in (extras or {}).items() if (k, v) not in LABEL_DEFAULTS]
    return model + (f" [{', '.join(tags)}]" if tags else "")


def group_variants(exp: Experiment) -> list[Variant]:
    """Trials grouped by variant axes, in the study's model order. Raises ReportError on duplicate seeds
    (not in a search sweep, whose trials share one seed by design)."""
    axes = variant_axes(exp)
    groups: dict[tuple, list[Trial]] = defaultdict(list)
    for t in exp.trials:
        groups[tuple(_hashable(setting(t.params, a)) for a in axes)].append(t)
    variants = []
    for key, trials in groups.items():
        vals = dict(zip(axes, key))
        model = vals.pop("model.name")
        model = "unknown" if model is None else str(model)
        protocol = vals.pop("data.protocol")
        protocol = OFFICIAL if protocol is None else str(protocol)
        extras = dict(vals)
        variants.append(Variant(key, variant_label(model, protocol, extras), model, protocol, extras, trials))

    def order(v: Variant):
        m = MODEL_ORDER.index(v.model) if v.model in MODEL_ORDER else len(MODEL_ORDER)
        return (m, v.model, v.protocol != OFFICIAL, v.protocol, json.dumps(v.extras, sort_keys=True, default=str))

    variants = sorted(variants, key=order)
    if not is_search(exp):
        check_duplicate_seeds(variants)
    return variants


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
    """The honest-protocol, unbalanced variant of `model` with the most completed seeds (for the claims);
    an oversampling control only when no unbalanced run exists."""
    cands = [v for v in variants if v.model == model and v.protocol == OFFICIAL]
    plain = [v for v in cands if v.balance == "none"]
    cands = plain or cands
    return max(cands, key=lambda v: len(v.done)) if cands else None
