"""The loader's per-epoch frame (`Experiment.epochs`) and its check of result.json rows against the pinned
format (docs/DESIGN.md). Folders are written with tests/test_report_fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report_fixtures import curve_values, new_exp, params, write_trial

from sweep.report import section_trial_issues
from sweep.report_load import group_variants, load_experiment


def _append(trial_dir: Path, *rows) -> None:
    with open(trial_dir / "result.json", "a") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def _trial(exp, name: str):
    return next(t for t in exp.trials if t.name == name)


def test_frame_has_one_row_per_trial_and_trained_epoch(tmp_path: Path):
    exp_dir = new_exp(tmp_path)
    write_trial(exp_dir, "t_a", params("baseline", 0), train=0.6, val=0.5, epochs=3, curve="rising")
    write_trial(exp_dir, "t_b", params("baseline", 1), train=0.4, val=0.3, epochs=2, final=False)
    exp = load_experiment(exp_dir)
    ep = exp.epochs
    assert list(zip(ep["trial"], ep["epoch"])) == [("t_a", 1), ("t_a", 2), ("t_a", 3), ("t_b", 1), ("t_b", 2)]
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "best_val_acc", "time_total_s"} <= set(ep.columns)
    assert "config" not in ep.columns and "training_iteration" not in ep.columns  # Tune's, not metrics
    a = ep[ep["trial"] == "t_a"]
    assert list(a["val/acc"]) == pytest.approx(curve_values(0.5, 3, "rising"))
    assert list(a["train/acc"]) == pytest.approx(curve_values(0.6, 3, "rising"))
    assert list(a["train/loss"]) == pytest.approx([2.0 - x for x in curve_values(0.6, 3, "rising")])
    assert list(a["time_total_s"]) == pytest.approx([100.0 / 3, 200.0 / 3, 100.0])
    # each trial reads its slice of the one frame
    ta = _trial(exp, "t_a")
    assert ta.epochs.equals(a) and ta.curve("val/acc") == dict(zip(range(1, 4), a["val/acc"]))
    assert [r["epoch"] for r in _trial(exp, "t_b").epoch_rows()] == [1, 2]


def test_closing_row_is_not_an_epoch_row_but_counts_for_best_val_acc(tmp_path: Path):
    exp_dir = new_exp(tmp_path)
    d = write_trial(exp_dir, "t_a", params("baseline", 0), val=0.5, epochs=3, final=False)
    # a closing row (no train metrics) whose selected weights' val/acc is above every epoch row's
    _append(d, {"epoch": 3, "val/acc": 0.55, "best_val_acc": 0.55, "best_epoch": 3, "final/test/acc": 0.5,
                "time_total_s": 130.0})
    exp = load_experiment(exp_dir)
    t = exp.trials[0]
    assert list(exp.epochs["epoch"]) == [1, 2, 3] and "final/test/acc" not in exp.epochs.columns
    assert t.curve("val/acc")[3] == pytest.approx(0.5)
    assert t.best_val_acc == pytest.approx(0.55) and t.wall_s == pytest.approx(130.0) and t.epochs_run == 3
    assert t.problems == [] and t.status == "stopped"


def test_repeated_epoch_keeps_its_last_row(tmp_path: Path):
    exp_dir = new_exp(tmp_path)
    d = write_trial(exp_dir, "t_a", params("baseline", 0), val=0.5, epochs=3, final=False)
    # a resumed trial logs epoch 2 again
    _append(d, {"epoch": 2, "train/loss": 1.0, "train/acc": 0.7, "val/loss": 1.1, "val/acc": 0.45})
    exp = load_experiment(exp_dir)
    assert list(exp.epochs["epoch"]) == [1, 2, 3]
    t = exp.trials[0]
    assert t.curve("train/acc")[2] == 0.7 and t.curve("val/acc")[2] == 0.45
    assert t.problems == []


def test_bad_rows_are_named_problems_and_left_out(tmp_path: Path):
    exp_dir = new_exp(tmp_path)
    d = write_trial(exp_dir, "t_bad", params("baseline", 0), val=0.5, epochs=3)  # 3 epoch rows + closing row
    _append(d, {"epoch": "x", "train/loss": 1.0, "train/acc": 0.9, "val/acc": "abc"},  # line 5
            {"train/acc": 0.9, "val/acc": 0.9},  # line 6: no epoch
            "{truncated")
    write_trial(exp_dir, "t_good", params("baseline", 1), val=0.5, epochs=3)
    exp = load_experiment(exp_dir)
    bad, good = _trial(exp, "t_bad"), _trial(exp, "t_good")
    assert bad.problems == [
        "result.json: 1 unparsable line(s) skipped",
        "result.json line 5 left out: epoch 'x' is not a positive integer, val/acc 'abc' is not a number",
        "result.json line 6 left out: no epoch"]
    assert good.problems == []
    # the good rows of the bad trial stay; nothing of the bad rows reaches its curves or best val acc
    assert list(bad.epochs["epoch"]) == [1, 2, 3]
    assert bad.curve("val/acc") == good.curve("val/acc") and bad.best_val_acc == pytest.approx(0.5)
    assert len(exp.epochs) == 6
    # and the report lists them among the odd trials
    issues = "\n".join(section_trial_issues(exp, group_variants(exp)))
    assert "| t_bad | completed | result.json: 1 unparsable line(s) skipped; result.json line 5 left out" in issues


def test_many_bad_rows_are_counted_after_the_first_few(tmp_path: Path):
    exp_dir = new_exp(tmp_path)
    d = write_trial(exp_dir, "t_a", params("baseline", 0), epochs=1, final=False)
    _append(d, *({"epoch": e, "train/acc": None} for e in (0, 2, 3, 4, 5)))
    t = load_experiment(exp_dir).trials[0]
    assert t.problems == [
        "result.json line 2 left out: epoch 0 is not a positive integer, train/acc None is not a number",
        "result.json line 3 left out: train/acc None is not a number",
        "result.json line 4 left out: train/acc None is not a number",
        "result.json: 2 more bad row(s) left out"]
    assert list(t.epochs["epoch"]) == [1]


def test_no_trained_epochs_give_an_empty_frame(tmp_path: Path):
    exp_dir = new_exp(tmp_path)
    (exp_dir / "t_err").mkdir()
    (exp_dir / "t_err" / "error.txt").write_text("RuntimeError: boom\n")
    exp = load_experiment(exp_dir)
    assert exp.epochs.empty and list(exp.epochs.columns) == ["trial", "epoch"]
    t = exp.trials[0]
    assert t.curve("val/acc") == {} and t.epoch_rows() == [] and t.best_epoch is None and t.epochs_run is None
