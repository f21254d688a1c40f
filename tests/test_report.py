"""Tests for `sweep.report`: experiment folders with known metrics are written here (DESIGN.md's
experiment-folder format) and the report's numbers, intervals, verdicts and listings are checked
against hand-computed values. No Ray, no training: runs in a few seconds.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweep import stats
from sweep.report import (
    STUDY_REPORTED,
    build_report,
    evaluate_claims,
    group_variants,
    load_experiment,
    main,
    param_importance,
    sampled_keys,
)

LEAKY = "leaky-oversample-before-split"
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixture writers


def _split_metrics(acc: float, k: int = 7, n: int = 700) -> dict:
    """Metrics of one split with accuracy `acc`: a confusion matrix with `acc` of each row on the diagonal."""
    per = n // k
    right = round(acc * per)
    confusion = [[right if i == j else 0 for j in range(k)] for i in range(k)]
    for i in range(k):  # the wrong predictions go to the next class
        confusion[i][(i + 1) % k] = per - right
    f1 = [round(acc - 0.01 * i, 4) for i in range(k)]
    return {
        "acc": acc, "loss": 1.0 - acc, "macro_precision": acc - 0.01, "macro_recall": acc - 0.02,
        "macro_f1": acc - 0.03,
        "per_class": {"precision": f1, "recall": f1, "f1": f1, "support": [per] * k},
        "confusion": confusion,
    }


def write_trial(exp: Path, name: str, params: dict, *, train=None, val=None, test=None, epochs: int = 3,
                final: bool = True, error: str | None = None, wall_s: float = 100.0,
                n_params: int = 620615) -> Path:
    """One Tune trial folder: params.json, result.json (one line per epoch), final.json, error.txt."""
    d = exp / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(params))
    rows = []
    for e in range(1, epochs + 1):
        f = e / epochs  # curves rise to the final values
        rows.append({"epoch": e, "training_iteration": e, "train/loss": 2.0 - f, "train/acc": (train or 0.5) * f,
                     "val/loss": 2.1 - f, "val/acc": (val or 0.5) * f, "best_val_acc": (val or 0.5) * f,
                     "time_total_s": wall_s * f, "config": {"ignored": True}})
    (d / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if final:
        (d / "final.json").write_text(json.dumps({
            "best_epoch": epochs - 1, "epochs_run": epochs, "params": n_params, "wall_s": wall_s,
            "metrics": {"train": _split_metrics(train), "val": _split_metrics(val), "test": _split_metrics(test)},
        }))
    if error is not None:
        (d / "error.txt").write_text(error)
    return d


def ablation_params(model: str, seed: int, protocol: str = "official") -> dict:
    # DESIGN.md: constants flat at top level, the grid point nested under "variant"
    return {"train.epochs": 3, "data.input_size": 64,
            "variant": {"model.name": model, "seed": seed, "data.protocol": protocol}}


# train, val, test accuracies per seed (fractions)
ABLATION = {
    "baseline": [(0.60, 0.48, 0.50), (0.61, 0.49, 0.52), (0.62, 0.50, 0.54)],
    "no_batchnorm": [(0.70, 0.55, 0.56), (0.71, 0.56, 0.57), (0.72, 0.57, 0.58)],
    "no_dropout": [(0.80, 0.53, 0.53), (0.81, 0.54, 0.54), (0.82, 0.55, 0.55)],
    "fewer_layers": [(0.55, 0.45, 0.46)],
    "optimized": [(0.75, 0.60, 0.60), (0.76, 0.61, 0.61), (0.77, 0.62, 0.62)],
}
RESOURCES = {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0.25}  # sweep.run's layout
CPUS, GPUS = 2, 0.5  # per trial
WALL_S = 360.0


@pytest.fixture(scope="module")
def ablation_exp(tmp_path_factory) -> Path:
    """Written once per module; tests only read it (the report goes to `published/`, see below)."""
    exp = tmp_path_factory.mktemp("storage") / "ablation_quick"
    exp.mkdir()
    i = 0
    for model, seeds in ABLATION.items():
        for seed, (tr, va, te) in enumerate(seeds):
            write_trial(exp, f"train_fer_{i:05d}_{model}_s{seed}", ablation_params(model, seed),
                        train=tr, val=va, test=te, wall_s=WALL_S)
            i += 1
    for seed, te in enumerate((0.80, 0.82)):
        write_trial(exp, f"train_fer_{i:05d}_optimized_leaky_s{seed}", ablation_params("optimized", seed, LEAKY),
                    train=0.9, val=0.79, test=te, wall_s=WALL_S)
        i += 1
    # a failed trial (Tune's error.txt layout), a trial with a corrupt final.json, one with no results
    write_trial(exp, f"train_fer_{i:05d}_no_dropout_s3", ablation_params("no_dropout", 3), epochs=1,
                final=False, wall_s=WALL_S,
                error="Failure # 1 (occurred at 2025-01-01_00-00-00)\nTraceback (most recent call last):\n"
                      '  File "x.py", line 1\nRuntimeError: CUDA out of memory | tried 2 GiB\n')
    (exp / f"train_fer_{i + 1:05d}_broken").mkdir()
    (exp / f"train_fer_{i + 1:05d}_broken" / "params.json").write_text(json.dumps(ablation_params("baseline", 9)))
    (exp / f"train_fer_{i + 1:05d}_broken" / "final.json").write_text("{not json")
    (exp / "tuner.pkl").write_bytes(b"\x00")  # Tune's own files beside the trials are ignored
    meta = {
        "name": "ablation_quick",
        "command": ["python", "-m", "sweep.run", "--grid", "ablation", "--profile", "quick", "--seeds", "3"],
        "grid": "ablation", "profile": "quick", "git_commit": "abc1234",
        "versions": {"ray": "2.60.0", "torch": "2.14.0"}, "hardware": {"cpu": "test cpu", "gpu": None},
        "data_sha256": "f" * 64, "resources_per_trial": RESOURCES,
        "data_audit": {
            "official": {"protocol": "official", "test_exact_copies_in_train_fraction": 0.0, "n_test": 3589},
            LEAKY: {"protocol": LEAKY, "test_exact_copies_in_train_fraction": 0.3125, "n_test": 3589},
        },
        "started": "2025-01-01T00:00:00", "finished": "2025-01-01T02:00:00",
    }
    (exp / "sweep_meta.json").write_text(json.dumps(meta))
    return exp


@pytest.fixture(scope="module")
def ablation_report(ablation_exp: Path) -> str:
    """The ablation report, built once (figures take most of the time) into a folder beside the experiment."""
    out = build_report(ablation_exp, ablation_exp.parent / "published" / "report.md")
    return out.read_text()


def _row(report: str, label: str) -> list[str]:
    """Cells of the first markdown table row whose first cell is `label`."""
    for line in report.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # "\|" is an escaped pipe
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no table row for {label!r}")


def _section(report: str, title: str) -> str:
    start = report.index(f"## {title}")
    nxt = report.find("\n## ", start + 1)
    return report[start: nxt if nxt >= 0 else None]


# ----------------------------------------------------------------------------- statistics


def test_interval_arithmetic_matches_hand_computation():
    s = stats.summarize([0.50, 0.52, 0.54])
    assert s.n == 3
    assert s.mean == pytest.approx(0.52)
    assert s.std == pytest.approx(0.02)
    # t(0.975, df=2) = 4.302653 (table value) -> half-width 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert s.hi - s.mean == pytest.approx(0.049683, abs=1e-6)
    assert s.mean - s.lo == pytest.approx(0.049683, abs=1e-6)


def test_summary_small_n():
    one = stats.summarize([0.4])
    assert one.n == 1 and one.mean == 0.4 and not one.has_interval and math.isnan(one.std)
    assert stats.summarize([]).n == 0
    # missing / non-finite values from an odd trial are dropped, not propagated
    assert stats.summarize([0.5, None, float("nan"), 0.7]).mean == pytest.approx(0.6)


def test_welch_difference_matches_hand_computation():
    a, b = [0.55, 0.56, 0.57], [0.48, 0.49, 0.50]
    d = stats.welch(a, b)
    assert d.diff == pytest.approx(0.07)
    # equal variances 1e-4 and n=3: se = sqrt(2e-4/3), Welch df = 4, t(0.975, 4) = 2.776445
    se = math.sqrt(2e-4 / 3)
    assert d.df == pytest.approx(4.0)
    assert d.hi - d.diff == pytest.approx(2.776445 * se, rel=1e-5)
    assert d.p == pytest.approx(0.0010167, rel=1e-3)  # t = 0.07 / se = 8.573 on 4 df, two-sided
    nd = stats.welch([0.5], b)
    assert not nd.tested and nd.diff == pytest.approx(0.01)


@pytest.mark.parametrize(
    "lo, hi, sign, expected",
    [(0.01, 0.05, +1, "holds"), (-0.05, -0.01, +1, "does not hold"), (-0.01, 0.05, +1, "inconclusive"),
     (-0.05, -0.01, -1, "holds"), (0.01, 0.05, -1, "does not hold"), (float("nan"), float("nan"), -1, "inconclusive")],
)
def test_interval_verdict(lo, hi, sign, expected):
    assert stats.interval_verdict(lo, hi, sign) == expected


# ----------------------------------------------------------------------------- ablation report


def test_main_table_values(ablation_report: str):
    report = ablation_report
    base = _row(report, "baseline")
    # header: variant, seeds n, train, val, test, macro P, macro R, macro F1, Δ test, Δ val, params, epochs, wall
    assert base[1] == "3 (+1 no results)"  # the broken trial is a baseline run that could not be counted
    assert base[2] == "61.00 ± 1.00 [58.52, 63.48]"
    assert base[4] == "52.00 ± 2.00 [47.03, 56.97]"
    assert base[5] == "51.00 ± 2.00 [46.03, 55.97]"  # macro precision = acc - 1 pp in the fixture
    assert base[8] == "reference"
    assert base[10] == "620,615"
    assert base[11] == "3 (best 2)"
    assert base[12] == "6.0 min"
    nbn = _row(report, "no_batchnorm")
    assert nbn[4] == "57.00 ± 1.00 [54.52, 59.48]"
    assert nbn[8].startswith("+5.00 pp [") and "significant at 5%" in nbn[8]
    assert nbn[9].startswith("+7.00 pp [+4.73, +9.27]")
    nd = _row(report, "no_dropout")
    assert nd[1] == "3 (+1 failed)"
    fl = _row(report, "fewer_layers")
    assert fl[4] == "46.00 (n=1, no interval)"
    assert fl[8] == "-6.00 pp (n<2, no test)"
    # the leaky variant is its own row; there is no leaky baseline, so no ablation difference is claimed
    leaky = _row(report, f"optimized [{LEAKY}]")
    assert leaky[1] == "2" and leaky[4] == "81.00 ± 1.41 [68.29, 93.71]"
    assert leaky[8] == "no baseline under the same protocol and axes"


def test_claim_verdicts(ablation_exp: Path, ablation_report: str):
    claims = {c.number: c for c in evaluate_claims(group_variants(load_experiment(ablation_exp)))}
    assert claims[1].verdict == "holds"  # no_batchnorm val 56 vs 49, interval [+4.73, +9.27] pp
    assert claims[2].verdict == "does not hold"  # no_dropout val is clearly *higher* than baseline
    assert claims[3].verdict == "inconclusive" and "n<2" in claims[3].note  # fewer_layers has one seed
    assert claims[4].verdict == "inconclusive"  # every comparison favours optimized, but fewer_layers has n=1
    assert claims[5].verdict == "does not hold"  # 61% +- 1, far below 80.38
    assert "leaky" in claims[5].note and "81.00" in claims[5].note
    assert "54.25" in claims[1].study and "48.05" in claims[1].study
    section = _section(ablation_report, "The study's claims")
    assert "Verdict rule" in section and "entirely on the claimed side" in section
    assert "training budget only: 3 epoch(s) per trial at 64x64 input" in section  # the fixture's budget
    verdicts = [_row(section, str(n))[5] for n in range(1, 6)]
    assert verdicts == ["**holds**", "**does not hold**", "**inconclusive**", "**inconclusive**", "**does not hold**"]


def test_claim4_holds_and_claim5_bounds(tmp_path: Path):
    exp = tmp_path / "e"
    exp.mkdir()
    accs = {"baseline": [0.48, 0.49, 0.50], "optimized": [0.805, 0.81, 0.815]}
    for model, vals in accs.items():
        for s, a in enumerate(vals):
            write_trial(exp, f"t_{model}_{s}", ablation_params(model, s), train=a, val=a, test=a)
    claims = {c.number: c for c in evaluate_claims(group_variants(load_experiment(exp)))}
    assert claims[4].verdict == "holds"
    # interval 81.0 +- 1.24 straddles 80.38 -> inconclusive under the rule (lower bound must reach 80.38)
    assert claims[5].verdict == "inconclusive"
    assert claims[1].verdict == "inconclusive" and "no_batchnorm not run" in claims[1].note


def test_paper_numbers_in_one_constant():
    assert STUDY_REPORTED["val_acc_pct"] == {
        "baseline": 48.05, "no_batchnorm": 54.25, "no_dropout": 47.26, "fewer_layers": 46.27}
    assert STUDY_REPORTED["test_acc_pct"] == {"optimized": 80.38}


def test_per_class_table_and_figures(ablation_exp: Path, ablation_report: str):
    out = ablation_exp.parent / "published" / "report.md"
    report = ablation_report
    per_class = _section(report, "Per-class F1")
    assert "Angry" in per_class and "Neutral" in per_class
    base = [r for r in per_class.splitlines() if r.startswith("| baseline |")][0]
    cells = [c.strip() for c in base.strip("|").split("|")]
    # fixture f1 of class i = acc - 0.01 i; mean acc 0.52 -> Angry 52.0, Neutral 46.0
    assert cells[2] == "52.0" and cells[8] == "46.0"
    pngs = sorted((out.parent / "figures").glob("*.png"))
    # 6 variants x (confusion + curves)
    assert len(pngs) == 12
    for p in pngs:
        assert 5_000 < p.stat().st_size < 150_000, p
        assert f"(figures/{p.name})" in report  # linked relative to report.md
    assert not (ablation_exp / "report.md").exists()  # --out respected


def test_failed_stopped_and_odd_trials_listed(ablation_exp: Path, ablation_report: str):
    section = _section(ablation_report, "Failed, stopped and odd trials")
    failed = _row(section, "train_fer_00015_no_dropout_s3")
    assert failed[1] == "no_dropout"
    assert "Failure # 1" in failed[2] and "RuntimeError: CUDA out of memory \\| tried 2 GiB" in failed[2]
    assert failed[3] == "no"
    odd = _row(section, "train_fer_00016_broken")
    assert odd[1] == "no results" and odd[2].startswith("final.json: unreadable")
    assert "No trials stopped early." in section


def test_leakage_section(ablation_report: str):
    section = _section(ablation_report, "Leakage audit")
    row = _row(section, "optimized")
    assert row[1] == "61.00 ± 1.00 [58.52, 63.48]"  # honest
    assert row[2] == "81.00 ± 1.41 [68.29, 93.71]"  # leaky
    assert row[3].startswith("+20.00 pp")
    assert _row(section, LEAKY)[1] == "31.25%"
    assert _row(section, "official")[1] == "0.00%"


def test_header_and_reproducibility(ablation_report: str):
    report = ablation_report
    assert report.startswith("# Report: ablation_quick")
    assert "could not be built" not in report  # no section fell back to its error note
    assert "python -m sweep.run --grid ablation --profile quick --seeds 3" in report
    repro = _section(report, "Reproducibility")
    assert "abc1234" in repro and "f" * 64 in repro and "torch `2.14.0`" in repro
    # 13 official + 2 leaky completed trials at 360 s, plus the failed one whose last epoch reports 360 s
    hours = 16 * WALL_S / 3600
    assert f"{hours * CPUS:.2f} CPU hours" in repro
    assert f"{hours * GPUS:.2f} GPU hours" in repro


def test_no_leakage_section_without_leaky_trials(tmp_path: Path):
    exp = tmp_path / "e"
    exp.mkdir()
    write_trial(exp, "t0", ablation_params("baseline", 0), train=0.6, val=0.5, test=0.5)
    report = build_report(exp).read_text()
    assert "## Leakage audit" not in report
    assert "sweep_meta.json: missing" in report  # absent meta is said, not fatal
    assert "## Search" not in report


# ----------------------------------------------------------------------------- search report


@pytest.fixture
def search_exp(tmp_path: Path) -> Path:
    exp = tmp_path / "search_optimized"
    exp.mkdir()
    # (l2, dropout, best val, test, stopped early?)
    trials = [(1e-4, 0.2, 0.62, 0.60, False), (1e-3, 0.5, 0.58, 0.70, False), (1e-2, 0.3, 0.50, 0.49, True),
              (3e-4, 0.4, 0.61, 0.59, False), (5e-3, 0.1, 0.52, 0.51, True)]
    for i, (l2, dropout, val, test, stopped) in enumerate(trials):
        params = {"model.name": "optimized", "model.l2": l2, "model.dropout": dropout, "seed": 0,
                  "train.epochs": 4, "data.protocol": "official"}
        write_trial(exp, f"trial_{i:05d}", params, train=val + 0.1, val=val, test=test,
                    epochs=1 if stopped else 4, final=not stopped)
    (exp / "sweep_meta.json").write_text(json.dumps({
        "command": "python -m sweep.run --grid search --samples 5", "grid": "optimized_search", "profile": "quick",
        "resources_per_trial": {"cpu": 1},
        # as sweep.run records sweep/grids/search.yaml's block; detection goes through its space keys
        "search": {"metric": "val/acc", "mode": "max", "num_samples": 5,
                   "space": {"model.l2": {"loguniform": [1e-6, 1e-2]}, "model.dropout": {"uniform": [0.1, 0.7]}},
                   "asha": {"grace_period": 1, "reduction_factor": 2}}}))
    return exp


def test_search_section(search_exp: Path):
    report = build_report(search_exp).read_text()
    section = _section(report, "Search")
    # selected by best val (0.62), not by test (trial_00001 has the best test accuracy 0.70)
    assert "`trial_00000`, val 62.00%" in section
    assert _row(section, "model.l2")[1] == "0.0001" and _row(section, "model.dropout")[1] == "0.2"
    assert "truncated score" in section
    assert f"{5 * 100 / 3600:.2f} CPU hours, 0.00 GPU hours" in report  # plain {cpu} layout, 100 s per trial
    imp_section = section[section.index("### Parameter importance"):section.index("### Trials")]
    importance = {r: float(_row(imp_section, r)[1]) for r in ("model.l2", "model.dropout")}
    assert sum(importance.values()) == pytest.approx(1.0, abs=0.002)
    rows = [_row(section, f"trial_{i:05d}") for i in range(5)]
    assert [r[-2] for r in rows] == ["no", "no", "yes", "no", "yes"]  # stopped-early flag
    assert rows[2][4] == "1" and rows[0][4] == "4"  # epochs run
    assert rows[2][3] == "50.00"  # best val acc of a stopped trial comes from result.json
    assert "Not judged here" in _section(report, "The study's claims")  # no verdicts from mixed configs
    assert _row(report, "variant")[1] == "trials n (configs)"
    # all five trials are one variant (sampled params are not variant axes)
    assert len(group_variants(load_experiment(search_exp))) == 1


def test_param_importance_needs_two_varying_trials(search_exp: Path):
    exp = load_experiment(search_exp)
    assert sampled_keys(exp) == ["model.dropout", "model.l2"]
    imp, why = param_importance(exp.trials[:1], ["model.l2"])
    assert imp is None and ">= 2 trials" in why
    same = [t for t in exp.trials[:2]]
    imp, why = param_importance(same, ["seed"])
    assert imp is None and "varies" in why


# ----------------------------------------------------------------------------- CLI


def test_cli_main_and_errors(search_exp: Path, tmp_path: Path, capsys):
    out = tmp_path / "r.md"
    assert main([str(search_exp), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Report:")
    missing = tmp_path / "nope"
    assert main([str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {missing}: experiment folder does not exist (expected <storage>/<name>/)"


def test_cli_module_entry_point(search_exp: Path):
    res = subprocess.run([sys.executable, "-m", "sweep.report", str(search_exp)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == search_exp / "report.md"
    assert (search_exp / "report.md").exists()


# ----------------------------------------------------------------------------- robustness


def test_odd_inputs_are_listed_not_fatal(tmp_path: Path):
    exp = tmp_path / "odd"
    exp.mkdir()
    (exp / "sweep_meta.json").write_text("[1, 2]")  # valid JSON, wrong shape
    # only Tune's error.txt (the trial died before params.json was written)
    (exp / "t_err").mkdir()
    (exp / "t_err" / "error.txt").write_text("\x1b[36mValueError: data.protocol 'x' unknown\x1b[39m\nmore\n")
    # result.json with a garbage line, stopped by the scheduler (no final.json)
    d = write_trial(exp, "t_stop", ablation_params("baseline", 1), val=0.4, epochs=2, final=False)
    with open(d / "result.json", "a") as f:
        f.write("{truncated\n")
    # final.json without a test split; a recovered trial (error.txt from a retry + final.json)
    d = write_trial(exp, "t_notest", ablation_params("baseline", 2), train=0.6, val=0.5, test=0.5)
    final = json.loads((d / "final.json").read_text())
    del final["metrics"]["test"]
    (d / "final.json").write_text(json.dumps(final))
    write_trial(exp, "t_retry", ablation_params("baseline", 3), train=0.6, val=0.5, test=0.55,
                error="Failure # 1 (occurred at 2025-01-01_00-00-00)\nOSError: disk full\n")
    write_trial(exp, "t_leaky", ablation_params("baseline", 0, LEAKY), train=0.9, val=0.8, test=0.8)
    report = build_report(exp).read_text()
    assert "could not be built" not in report
    assert "sweep_meta.json: not a JSON object" in report
    issues = _section(report, "Failed, stopped and odd trials")
    assert _row(issues, "t_err")[1:] == ["unknown", "ValueError: data.protocol 'x' unknown", "no"]
    assert _row(issues, "t_retry")[2:] == ["Failure # 1 (occurred at 2025-01-01_00-00-00): OSError: disk full",
                                           "yes (final.json present)"]
    assert _row(issues, "t_stop")[2:] == ["2", "40.00"]
    odd = issues[issues.index("Odd trials"):]
    assert "1 unparsable line(s) skipped" in _row(odd, "t_stop")[2]
    assert "params.json missing" in _row(odd, "t_err")[2]
    assert "metrics.test.acc missing" in _row(odd, "t_notest")[2]
    # baseline: t_notest and t_retry completed, only t_retry has a test accuracy
    assert _row(report, "baseline")[4] == "55.00 (n=1, no interval)"
    assert _row(report, "baseline")[3] == "50.00 ± 0.00 [50.00, 50.00]"
    assert "no `data_audit`" in _section(report, "Leakage audit")


def test_empty_experiment_folder(tmp_path: Path):
    report = build_report(tmp_path).read_text()
    assert "no trial folders found" in report and "could not be built" not in report
