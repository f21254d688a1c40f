"""Tests for `sweep.claims`: the study's claims across runs, one row per experiment folder. Fake experiment folders
with known metrics (test_report_fixtures.py); every number is checked against a hand-computed value."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from test_report_fixtures import PRIVATE_TEST, new_exp, params, row, rows, write_trial

from sweep.claims import claims_markdown, main
from sweep.report_figures import ForestRow, claims_across_figure

CONSTS = {"train.lr_schedule": "cosine", "train.warmup_epochs": 0}


def make_run(root: Path, name: str, input_size: int, vals: dict, tests: dict | None = None, **consts) -> Path:
    """A run of the study's CNNs: vals = {model: [val accuracy per seed 0, 1, 2]}; test = val unless `tests`
    gives a model's test accuracies."""
    settings = {**CONSTS, "data.input_size": input_size, "train.epochs": 5, **consts}
    exp = new_exp(root, name, constants=settings,
                  hardware={"kind": "CPU with native bf16 (avx512_bf16/amx: bf16 + channels_last)"})
    for model, accs in vals.items():
        for seed, acc in enumerate(accs):
            test = (tests or {}).get(model, accs)[seed]
            write_trial(exp, f"t_{model}_s{seed}", params(model, seed, **settings), train=0.7, val=acc, test=test,
                        test_support=PRIVATE_TEST)
    return exp


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    # per-seed differences no_batchnorm - baseline: +0.03, +0.04, +0.05 -> mean +4.00 pp, sd 1 pp, t(2) = 4.303
    make_run(root, "run64", 64, {"baseline": [0.50, 0.51, 0.52], "no_batchnorm": [0.53, 0.55, 0.57]},
             **{"train.warmup_epochs": 1})
    # no_dropout - baseline: -0.02, -0.02, -0.03 -> -2.33 pp; sd 0.577 pp -> half width 1.43 pp
    make_run(root, "run32", 32, {"baseline": [0.55, 0.56, 0.57], "no_dropout": [0.53, 0.54, 0.54]})
    leak = new_exp(root, "leak-only", constants={**CONSTS, "data.input_size": 32})
    write_trial(leak, "t_base", params("baseline", 0, balance="oversample"), val=0.5, test=0.5)
    return root


def test_one_row_per_run_ordered_by_input_size_with_intervals(reports: Path):
    assert main([str(reports), "--out", str(reports / "CLAIMS.md")]) == 0
    text = (reports / "CLAIMS.md").read_text()
    again = claims_markdown([reports / "run64", reports / "run32", reports / "leak-only"], reports,
                            reports / "again" / "CLAIMS.png")  # the link names the figure beside the table
    assert text == again
    header = row(text, "run")
    assert header[1:3] == ["input_size", "warmup_epochs"]  # only the settings that differ between the runs
    assert "`train.lr_schedule` cosine" in text and "`train.epochs` 5" in text  # shared ones said once
    lines = [line for line in text.splitlines() if line.startswith("| [run")]
    assert [line.split("]")[0] for line in lines] == ["| [run32", "| [run64"]  # 32 before 64
    r64 = row(text, "[run64](run64/report.md)")
    assert r64[1:4] == ["64", "1", "CPU bf16"]
    assert r64[4] == "51.00 [48.52, 53.48] (n=3)"  # baseline val: 51 +- 4.303 * 1 / sqrt(3)
    assert r64[5] == "+4.00 [+1.52, +6.48] (n=3) **holds**"  # the study's direction, the interval above 0
    assert r64[6:10] == ["not run"] * 4
    r32 = row(text, "[run32](run32/report.md)")
    assert r32[5] == "not run"
    assert r32[6] == "-2.33 [-3.77, -0.90] (n=3) **holds**"  # claim 2: dropout's removal lowers accuracy
    study = row(text, "the study")
    assert study[1:3] == ["64", "not stated"] and study[5:8] == ["+6.20 (one run)", "-0.79 (one run)",
                                                              "-1.78 (one run)"]
    assert study[8:10] == ["vs no_batchnorm +27.58 (one run)", "80.38 (one run)"]
    # the oversampled baseline-only run is named with why, not dropped in silence
    assert "`leak-only` (models: baseline)" in text
    assert "14.29% val and 24.49% test" in text  # the majority class's share (the fixture's val is balanced)


def test_optimized_claims_give_the_weakest_comparison_and_the_test_accuracy(tmp_path: Path):
    make_run(tmp_path, "opt", 64, {"baseline": [0.50, 0.51, 0.52], "no_dropout": [0.60, 0.61, 0.63],
                                   "optimized": [0.55, 0.56, 0.57]})
    text = claims_markdown([tmp_path / "opt"], tmp_path)
    r = row(text, "[opt](opt/report.md)")
    # optimized - no_dropout on test: -0.05, -0.05, -0.06 -> -5.33 pp, the smaller of its two differences
    assert r[6].startswith("vs no_dropout -5.33 [") and r[6].endswith("(n=3) **does not hold**")
    assert r[7] == "56.00 [53.52, 58.48] (n=3) **does not hold**"  # far below the study's 80.38


def test_bad_paths_are_one_line_errors(tmp_path: Path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing'}: does not exist"
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "neither an experiment folder nor a folder of them" in capsys.readouterr().err
    leak = new_exp(tmp_path, "leak")
    write_trial(leak, "t", params("baseline", 0), val=0.5, test=0.5)
    assert main([str(leak)]) == 2
    assert "no claim to tabulate" in capsys.readouterr().err


def test_figure_draws_every_run_and_cuts_an_interval_too_wide_for_the_axis(tmp_path: Path):
    rows = [ForestRow("a", -5.0, -7.0, -3.0, 6.2, "does not hold"),
            ForestRow("b", 10.0, -60.0, 80.0, 6.2, "inconclusive"),  # two seeds: far wider than the rest
            ForestRow("c", math.nan, math.nan, math.nan, 6.2, "inconclusive")]  # not run
    drawn = claims_across_figure({"claim 1": rows, "claim 2": rows[::-1]}, tmp_path / "f.png", tie_margin_pp=2.0)
    assert (tmp_path / "f.png").stat().st_size > 0
    a, b, c = drawn["claim 1"]
    assert a == ("a", -5.0, pytest.approx(-7.0), pytest.approx(-3.0))
    # the axis reaches CLAIMS_AXIS_PAD_PP beyond the estimates (-5 .. 10) plus a 5% pad: b's interval is cut there
    span = (10.0 + 5.0) - (-5.0 - 5.0)
    assert b[2] == pytest.approx(-10.0 - 0.05 * span) and b[3] == pytest.approx(15.0 + 0.05 * span)
    assert c[0] == "c" and math.isnan(c[1])
    assert [r[0] for r in drawn["claim 2"]] == ["c", "b", "a"]


def test_main_writes_the_figure_beside_the_table(reports: Path):
    assert main([str(reports), "--out", str(reports / "T.md")]) == 0
    text = (reports / "T.md").read_text()
    assert "![claims 1-3 in every run](T.png)" in text and (reports / "T.png").stat().st_size > 0


def test_best_recipe_per_cnn_is_chosen_on_validation_and_judged_on_test(tmp_path: Path):
    # two recipes at 64 px: the baseline does best with warmup, no_batchnorm without it
    make_run(tmp_path, "plain", 64, {"baseline": [0.50, 0.51, 0.52], "no_batchnorm": [0.55, 0.57, 0.56]},
             tests={"no_batchnorm": [0.52, 0.53, 0.55]})
    make_run(tmp_path, "warm", 64, {"baseline": [0.54, 0.55, 0.56], "no_batchnorm": [0.50, 0.51, 0.52]},
             tests={"baseline": [0.50, 0.50, 0.51]}, **{"train.warmup_epochs": 1})
    # a third recipe whose no_batchnorm scores highest on two seeds only: too few to be chosen
    make_run(tmp_path, "two", 64, {"baseline": [0.40, 0.41], "no_batchnorm": [0.70, 0.71]},
             **{"train.warmup_epochs": 2})
    make_run(tmp_path, "alone", 32, {"baseline": [0.50, 0.51, 0.52], "no_dropout": [0.55, 0.56, 0.57]})
    text = claims_markdown([tmp_path], tmp_path)
    best = text.split("## Each CNN at its best recipe")[1]
    assert "| 32 |" not in best  # one run at 32 px: nothing to choose between
    r = row(best, "64")
    assert r[1] == "2"  # `two` ran too few seeds to hold a candidate
    assert r[2] == "baseline: `warm` (55.00, n=3, best of 2); no_batchnorm: `plain` (56.00, n=3, best of 2)"
    # on test, no_batchnorm at `plain` minus baseline at `warm`, paired by seed: +0.02, +0.03, +0.04 -> +3.00 pp,
    # sd 1 pp, t(2) = 4.303 -> half width 2.48 pp; the validation means would have said +1.00
    assert r[3] == "+3.00 [+0.52, +5.48] (n=3) **holds**"
    assert r[4:8] == ["not run"] * 4
    # the per-run rows still judge claim 1 on validation, each within its own recipe
    assert row(text, "[plain](plain/report.md)")[5] == "+5.00 [+2.52, +7.48] (n=3) **holds**"


def test_a_run_of_one_cnn_is_a_candidate_recipe_but_a_varied_or_oversampled_one_is_not(tmp_path: Path):
    settings = {**CONSTS, "data.input_size": 64, "train.epochs": 5}
    make_run(tmp_path, "both", 64, {"baseline": [0.50, 0.51, 0.52], "no_batchnorm": [0.48, 0.50, 0.49]},
             tests={"baseline": [0.50, 0.50, 0.51]})
    # no_batchnorm alone at another learning rate: no row of its own, but the best recipe for it
    make_run(tmp_path, "nobn-lr", 64, {"no_batchnorm": [0.57, 0.58, 0.59]}, tests={"no_batchnorm": [0.53, 0.54, 0.56]},
             **{"train.lr": 0.003})
    # higher validation means, but not the CNN as the study trains it: a rotation axis beside it, oversampling
    varied = new_exp(tmp_path, "rotated", constants=settings)
    for seed in range(3):
        p = params("baseline", seed, **settings)
        p["variant"]["augment.rotation_deg"] = 10.0
        write_trial(varied, f"t_rot_s{seed}", p, val=0.70, test=0.70)
        p = params("baseline", seed, **settings)
        p["variant"]["augment.rotation_deg"] = 0.0
        write_trial(varied, f"t_flat_s{seed}", p, val=0.69, test=0.69)
    oversampled = new_exp(tmp_path, "oversampled", constants=settings)
    for seed in range(3):
        write_trial(oversampled, f"t_s{seed}", params("baseline", seed, balance="oversample", **settings),
                    val=0.71, test=0.71)
    text = claims_markdown([tmp_path], tmp_path)
    assert "`nobn-lr` (models: no_batchnorm; no official baseline)" in text  # named below the table
    r = row(text.split("## Each CNN at its best recipe")[1], "64")
    assert r[1] == "2"  # both and nobn-lr: rotated and oversampled hold no candidate
    assert r[2] == "baseline: `both` (51.00, n=3, best of 1); no_batchnorm: `nobn-lr` (58.00, n=3, best of 2)"
    # test: nobn-lr's no_batchnorm minus both's baseline: +0.03, +0.04, +0.05 -> +4.00 pp [+1.52, +6.48]
    assert r[3] == "+4.00 [+1.52, +6.48] (n=3) **holds**"


def _preds(correct: list[int]) -> dict:
    """final.json `predictions` on test for six faces labelled 0-5, right where `correct` says 1."""
    y_true = [0, 1, 2, 3, 4, 5]
    y_pred = [y if c else (y + 1) % 7 for y, c in zip(y_true, correct)]
    return {"test": {"y_true": "".join(map(str, y_true)), "y_pred": "".join(map(str, y_pred))}}


def test_best_recipe_claims_again_with_the_faces_as_a_sample(tmp_path: Path):
    import numpy as np

    from sweep import stats
    from sweep.report_claims import DIFF_CLIP
    from sweep.report_format import fmt_interval, fmt_p

    settings = {**CONSTS, "data.input_size": 64, "train.epochs": 5}
    # per seed, per face: right (1) or wrong (0); faces 1 and 2 favour no_batchnorm on every seed (a face effect)
    nobn = [[1, 1, 1, 0, 1, 1], [1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    base = [[1, 0, 0, 0, 1, 1], [1, 0, 0, 0, 1, 0], [1, 0, 0, 1, 0, 1]]
    for name, model, correct, lr in (("base", "baseline", base, 0.001), ("nobn", "no_batchnorm", nobn, 0.003)):
        exp = new_exp(tmp_path, name, constants={**settings, "train.lr": lr})
        for seed, c in enumerate(correct):
            acc = sum(c) / len(c)
            write_trial(exp, f"t_{model}_s{seed}", params(model, seed, **settings, **{"train.lr": lr}),
                        val=acc, test=acc, predictions=_preds(c))
    # a third run at 32 px, two recipes there, recorded without predictions: said, not dropped
    make_run(tmp_path, "old32", 32, {"baseline": [0.50, 0.51, 0.52], "no_batchnorm": [0.48, 0.50, 0.49]})
    make_run(tmp_path, "old32b", 32, {"baseline": [0.50, 0.50, 0.50]}, **{"train.lr": 0.003})
    text = claims_markdown([tmp_path], tmp_path)
    best = text.split("## Each CNN at its best recipe")[1]
    fd = stats.seeds_and_faces([np.array(c) for c in nobn], [np.array(c) for c in base], clip=DIFF_CLIP)
    r = [x for x in rows(best, "64") if x[1] == "claim 1"][0]  # the faces table's row, not the first table's
    assert r[1:] == ["claim 1", "no_batchnorm − baseline", "3 × 6", fmt_interval(fd.seeds), fmt_interval(fd.both),
                 f"{100 * fd.face_share:.0f}%", fmt_p(fd.both.p), "**holds**"]
    # the faces widen the interval (half the variance is theirs) but p = 0.042 still holds the study's direction
    assert fd.both.hi - fd.both.lo > fd.seeds.hi - fd.seeds.lo and 0.5 < fd.face_share < 0.6
    assert "Not available (fewer than two shared seeds with per-face predictions" in best
    assert "32: claim 1." in best
