"""Pooling runs: more seeds of one grid run later join the first run's trials in one report; a run at other
settings, of another grid or repeating a seed is refused; the pooled runs travel with an export. Real trial
files: the committed 48x48 component ablation's first run (12 trials), split by seed into two runs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from sweep.report import build_report, main
from sweep.report_load import POOLED_DIR, ReportError, load_experiment

COMMITTED = Path(__file__).resolve().parents[1] / "reports" / "components-48px-fer2013"
LATER_SEED = 2


def _copy(dest: Path) -> Path:
    shutil.copytree(COMMITTED, dest, ignore=shutil.ignore_patterns("shared", POOLED_DIR, "figures", "report.md"))
    return dest


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> str:
    """The whole run's report, the sections every pooled reading must reproduce."""
    report = build_report(_copy(tmp_path_factory.mktemp("whole") / "whole")).read_text()
    return _sections(report)


def _split(tmp_path) -> tuple[Path, Path]:
    """(first, later): the committed run's trials as two runs, seed 2 in the later one."""
    first, later = _copy(tmp_path / "first"), tmp_path / "later"
    later.mkdir()
    meta = json.loads((first / "sweep_meta.json").read_text())
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "name": "later", "seeds": [LATER_SEED],
                                                       "command": meta["command"] + " --seeds 2"}))
    for trial in sorted(first.glob(f"run_trial_*seed_{LATER_SEED}_*")):
        shutil.move(trial, later / trial.name)
    return first, later


def _sections(report: str) -> str:
    """From the results table to the figures: every statistic, comparison, claim and per-seed row."""
    return report[report.index("## Results per variant"):report.index("## Learning curves")]


def test_a_run_split_by_seed_and_pooled_reads_as_the_whole_run(tmp_path, full):
    first, later = _split(tmp_path)
    assert len(list(later.glob("run_trial_*"))) == 4 and len(load_experiment(first).trials) == 8
    pooled = build_report(first, pool=[later]).read_text()
    assert _sections(pooled).replace(f"{later}/", "") == full  # a pooled trial is named <run folder>/<trial dir>
    assert "- seeds: 0, 1, 2" in pooled and "- trials: 12 (12 completed)" in pooled
    assert f"--seeds 2    # pooled: trials in {later}/" in pooled
    assert f"- pooled run `later` (trials in `{later}/`, 4): commit" in pooled
    assert "different kinds of host" not in pooled
    exp = load_experiment(first, [later])
    assert sum(t.name.startswith(f"{later}/run_trial_") for t in exp.trials) == 4
    assert set(exp.epochs["trial"]) == {t.name for t in exp.trials}  # each trial's curve under its pooled name


def test_a_later_run_that_records_a_setting_added_since_pools_into_the_same_variants(tmp_path, full):
    """A run of today writes train.dense_lr_fan_in=0 into every trial's params.json; the first run predates the
    setting and trained at 0 without recording it. Its trials join the same variants, not variants of their own."""
    first, later = _split(tmp_path)
    meta = json.loads((later / "sweep_meta.json").read_text())
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "constants": {**meta["constants"],
                                                                             "train.dense_lr_fan_in": 0}}))
    for params in later.glob("run_trial_*/params.json"):
        params.write_text(json.dumps({**json.loads(params.read_text()), "train.dense_lr_fan_in": 0}))
    pooled = build_report(first, pool=[later]).read_text()
    assert "dense_lr_fan_in=" not in _sections(pooled)  # no variant labelled by the setting
    assert _sections(pooled).replace(f"{later}/", "") == full


def test_a_pooled_run_of_other_models_adds_its_levels_to_the_header(tmp_path, full):
    """Runs split by `--models` (baseline and no_batchnorm first, the other two later) read as the whole run,
    and the header's scientific parameters list every model, in the first run's order, then the later's."""
    first = _copy(tmp_path / "first")
    later = tmp_path / "later"
    later.mkdir()
    meta = json.loads((first / "sweep_meta.json").read_text())
    for run, models in ((first, ["baseline", "no_batchnorm"]), (later, ["no_dropout", "fewer_layers"])):
        (run / "sweep_meta.json").write_text(json.dumps({**meta, "name": run.name,
                                                         "scientific": {"model.name": models}}))
    for trial in sorted(first.glob("run_trial_*_model_name_no_dropout_*")) + sorted(
            first.glob("run_trial_*_model_name_fewer_layers_*")):
        shutil.move(trial, later / trial.name)
    assert len(list(later.glob("run_trial_*"))) == 6
    pooled = build_report(first, pool=[later]).read_text()
    assert ('- scientific parameters: `{"model.name": ["baseline", "no_batchnorm", "no_dropout", "fewer_layers"]}`'
            in pooled)
    assert _sections(pooled).replace(f"{later}/", "") == full


def test_a_pooled_run_at_other_settings_of_another_grid_or_with_a_repeated_seed_is_refused(tmp_path):
    first, later = _split(tmp_path)
    meta = json.loads((later / "sweep_meta.json").read_text())
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "constants": {**meta["constants"], "train.epochs": 20}}))
    with pytest.raises(ReportError, match=re.escape("settings differ from first's: train.epochs=20 vs 8")):
        load_experiment(first, [later])
    # A setting added after the first run was made: the later run's record of its old value pools; another does not.
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "constants": {**meta["constants"],
                                                                             "train.dense_lr_fan_in": 0}}))
    assert len(load_experiment(first, [later]).trials) == 12
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "constants": {**meta["constants"],
                                                                             "train.dense_lr_fan_in": 512}}))
    with pytest.raises(ReportError, match=re.escape("train.dense_lr_fan_in=512 vs")):
        load_experiment(first, [later])
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "grid": "ablation"}))
    with pytest.raises(ReportError, match="its grid \\(ablation\\) differs from first's \\(components\\)"):
        load_experiment(first, [later])
    (later / "sweep_meta.json").write_text(json.dumps({**meta, "tuning": {"space": {"train.lr": [0.001, 0.003]}}}))
    with pytest.raises(ReportError, match="its tuned nuisance values .* differ from first's"):
        load_experiment(first, [later])
    (later / "sweep_meta.json").write_text(json.dumps(meta))
    nested = tmp_path / "nested"
    shutil.copytree(later, nested / POOLED_DIR / "later")
    shutil.copy(later / "sweep_meta.json", nested / "sweep_meta.json")
    shutil.copytree(next(later.glob("run_trial_*")), nested / "run_trial_x")
    with pytest.raises(ReportError, match=f"pooled run {re.escape(str(nested))} holds pooled runs of its own"):
        load_experiment(first, [nested])
    again = tmp_path / "again"
    shutil.copytree(later, again)
    with pytest.raises(ReportError, match="duplicate seeds .*baseline seed 2 in "):
        build_report(first, pool=[later, again])
    assert not (first / "report.md").exists()  # nothing written


def test_export_carries_the_pooled_runs_and_rebuilds_from_its_own_folder(tmp_path, capsys, full):
    first, later = _split(tmp_path)
    meta = json.loads((later / "sweep_meta.json").read_text())
    meta["hardware"] = {**meta["hardware"], "kind": "CPU with native bf16 (avx512_bf16)"}
    (later / "sweep_meta.json").write_text(json.dumps(meta))
    dest = tmp_path / "export"
    assert main([str(first), "--pool", str(later), "--export", str(dest)]) == 0
    assert len(list((dest / POOLED_DIR / "later").glob("run_trial_*/final.json"))) == 4
    built = (dest / "report.md").read_text()
    assert "trials in pooled/later/" in built and "- trials: 12 (12 completed)" in built
    assert "they ran on different kinds of host: CPU without native bf16 (AVX2-class: fp32); CPU with native bf16" \
        in built
    assert _sections(built).replace(f"{POOLED_DIR}/later/", "") == full
    (dest / "report.md").unlink()
    assert main([str(dest)]) == 0  # a rebuild finds the pooled run in its own folder
    assert (dest / "report.md").read_text() == built
    # a second pooled run of the same folder name is refused before anything is copied
    other = tmp_path / "x" / "later"
    shutil.copytree(later, other)
    assert main([str(first), "--pool", str(later), "--pool", str(other), "--export", str(tmp_path / "e2")]) == 2
    assert "two runs share a folder name" in capsys.readouterr().err and not (tmp_path / "e2").exists()
