"""Tests for `sweep.report`: experiment folders with known metrics are written here (DESIGN.md's
experiment-folder format, see test_report_fixtures.py) and the report's numbers, intervals, tests,
verdicts, chance references and listings are checked against hand-computed values. No Ray, no training.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as st
from test_report_fixtures import (
    LEAKY,
    PRIVATE_TEST,
    collapsed_metrics,
    new_exp,
    params,
    row,
    section,
    split_metrics,
    write_meta,
    write_trial,
)

from sweep import stats
from sweep.report import ReportError, build_report, group_variants, load_experiment, main, trials_listed
from sweep.report_claims import STUDY_REPORTED, evaluate_claims
from sweep.report_search import param_importance, sampled_keys
from sweep.report_study import forest_panels

REPO = Path(__file__).resolve().parents[1]

# (seed, train, val, test) per model. Seeds 0-2 are shared (paired tests); fewer_layers ran seeds 3 and 4
# only (Welch). Per-seed differences vary, so no paired test is degenerate.
ABLATION = {
    "baseline": [(0, 0.60, 0.48, 0.50), (1, 0.61, 0.49, 0.52), (2, 0.62, 0.50, 0.54)],
    "no_batchnorm": [(0, 0.70, 0.55, 0.56), (1, 0.71, 0.57, 0.58), (2, 0.72, 0.56, 0.57)],
    "no_dropout": [(0, 0.80, 0.53, 0.53), (1, 0.81, 0.55, 0.55), (2, 0.82, 0.54, 0.54)],
    "fewer_layers": [(3, 0.55, 0.45, 0.46), (4, 0.56, 0.47, 0.47)],
    "optimized": [(0, 0.75, 0.60, 0.60), (1, 0.76, 0.62, 0.61), (2, 0.77, 0.61, 0.62)],
}
RESOURCES = {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0.25}  # sweep.run's layout
CPUS, GPUS = 2, 0.5  # per trial
WALL_S = 360.0
CONSTS = {"train.lr_schedule": "cosine", "augment.hflip_p": 0.5}


def make_ablation(exp: Path) -> Path:
    exp.mkdir(parents=True)
    i = 0
    for model, seeds in ABLATION.items():
        for seed, tr, va, te in seeds:
            write_trial(exp, f"train_fer_{i:05d}_{model}_s{seed}", params(model, seed, **CONSTS),
                        train=tr, val=va, test=te, wall_s=WALL_S, test_support=PRIVATE_TEST)
            i += 1
    for seed, te in enumerate((0.80, 0.82)):
        write_trial(exp, f"train_fer_{i:05d}_optimized_leaky_s{seed}", params("optimized", seed, LEAKY, **CONSTS),
                    train=0.9, val=0.79, test=te, wall_s=WALL_S, test_support=[899] * 7)
        i += 1
    # a failed trial (Tune's error.txt layout), a trial with a corrupt final.json
    write_trial(exp, f"train_fer_{i:05d}_no_dropout_s3", params("no_dropout", 3, **CONSTS), epochs=1,
                final=False, wall_s=WALL_S,
                error="Failure # 1 (occurred at 2025-01-01_00-00-00)\nTraceback (most recent call last):\n"
                      '  File "x.py", line 1\nRuntimeError: CUDA out of memory | tried 2 GiB\n')
    broken = exp / f"train_fer_{i + 1:05d}_broken"
    broken.mkdir()
    (broken / "params.json").write_text(json.dumps(params("baseline", 9, **CONSTS)))
    (broken / "final.json").write_text("{not json")
    (exp / "tuner.pkl").write_bytes(b"\x00")  # Tune's own files beside the trials are ignored
    write_meta(exp, name="ablation_quick",
               command=["python", "-m", "sweep.run", "--grid", "ablation", "--profile", "quick", "--seeds", "3"],
               git_commit="abc1234", versions={"ray": "2.60.0", "torch": "2.14.0"},
               hardware={"cpu": "test cpu", "gpu": None}, data_sha256="f" * 64, resources_per_trial=RESOURCES,
               data_audit={
                   "official": {"protocol": "official", "test_exact_copies_in_train_fraction": 0.0, "n_test": 3589},
                   LEAKY: {"protocol": LEAKY, "test_exact_copies_in_train_fraction": 0.3125, "n_test": 3589}},
               finished="2025-01-01T02:00:00")
    return exp


@pytest.fixture(scope="module")
def ablation_exp(tmp_path_factory) -> Path:
    """Written once per module; tests only read it (the report goes to `published/`, see below)."""
    return make_ablation(tmp_path_factory.mktemp("storage") / "ablation_quick")


@pytest.fixture(scope="module")
def ablation_report(ablation_exp: Path) -> str:
    out = build_report(ablation_exp, ablation_exp.parent / "published" / "report.md")
    return out.read_text()


def paired_p(a, b):
    return st.ttest_rel(a, b).pvalue


def col(split: str, model: str) -> list[float]:
    k = {"train": 1, "val": 2, "test": 3}[split]
    return [r[k] for r in ABLATION[model]]


# ----------------------------------------------------------------------------- ablation report


def test_main_table_values_and_chance_rows(ablation_report: str):
    table = section(ablation_report, "Results per variant")
    base = row(table, "baseline")
    # variant, seeds n, train, val, test, test no-copy, macro P, R, F1, params, epochs, improving, collapsed, wall
    assert base[1] == "3 (+1 no results)"  # the broken trial is a baseline run that could not be counted
    assert base[2] == "61.00 ± 1.00 [58.52, 63.48]"
    assert base[4] == "52.00 ± 2.00 [47.03, 56.97]"
    assert base[5] == "—"  # no metrics.test.subsets in these trials
    assert base[6] == "51.00 ± 2.00 [46.03, 55.97]"  # macro precision = acc - 1 pp in the fixture
    assert base[9] == "620,615" and base[10] == "5 (best 3)" and base[11] == "no" and base[12] == "none"
    assert base[13] == "6.0 min"
    assert row(table, "no_dropout")[1] == "3 (+1 failed)"
    fl = row(table, "fewer_layers")
    assert fl[3] == "46.00 ± 1.41 [33.29, 58.71]"
    leaky = row(table, f"optimized [{LEAKY}]")
    assert leaky[1] == "2" and leaky[4] == "81.00 ± 1.41 [68.29, 93.71]"
    assert leaky[3] == "79.00 ± 0.00 (n=2, zero variance: no interval)"  # both seeds 0.79: said, not [79, 79]
    # chance: majority class per split from per_class.support; official PrivateTest: Happy 879 / 3589
    official = row(table, "chance: majority class")
    assert official[2:5] == ["14.29", "14.29", f"{100 * 879 / 3589:.2f}"]
    assert row(table, f"chance: majority class [{LEAKY}]")[4] == "14.29"
    assert row(table, "chance: uniform 1/7")[2:5] == ["14.29"] * 3
    assert len(row(table, "chance: uniform 1/7")) == len(base) == 14


def test_comparisons_paired_when_seeds_shared_welch_otherwise(ablation_report: str):
    comp = section(ablation_report, "Differences from the reference level")
    val_rows = {r[0]: r for r in (row(comp, m) for m in ("no_batchnorm", "no_dropout", "fewer_layers", "optimized"))}
    nbn = val_rows["no_batchnorm"]
    assert nbn[1] == "val" and nbn[3] == "paired t (3 shared seeds)"
    # differences 0.07, 0.08, 0.06: mean 7 pp, sd 1 pp, half-width 4.302653 / sqrt(3) = 2.48 pp
    assert nbn[4] == "+7.00 pp [+4.52, +9.48]"
    assert float(nbn[5]) == pytest.approx(paired_p(col("val", "no_batchnorm"), col("val", "baseline")), abs=1e-4)
    assert nbn[7] == "d_z=+7.00" and nbn[8] == "higher"
    fl = val_rows["fewer_layers"]
    assert fl[3] == "Welch t (n=2 vs 3)"
    welch_p = st.ttest_ind(col("val", "fewer_layers"), col("val", "baseline"), equal_var=False).pvalue
    assert float(fl[5]) == pytest.approx(welch_p, abs=1e-4) and fl[8] == "inconclusive"
    # Holm over the four val rows, by hand from the raw p-values
    raw = [float(val_rows[m][5]) for m in ("no_batchnorm", "no_dropout", "fewer_layers", "optimized")]
    order = sorted(range(4), key=lambda i: raw[i])
    expected, running = [0.0] * 4, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * raw[i]))
        expected[i] = running
    for m, e in zip(("no_batchnorm", "no_dropout", "fewer_layers", "optimized"), expected):
        assert float(val_rows[m][6]) == pytest.approx(e, abs=2e-4)
    assert f"`optimized [{LEAKY}]`" in comp  # no leaky baseline: listed, not compared


def test_claim_verdicts(ablation_exp: Path, ablation_report: str):
    claims = {c.number: c for c in evaluate_claims(group_variants(load_experiment(ablation_exp)))}
    assert claims[1].verdict == "holds"  # no_batchnorm val +7 pp [+4.52, +9.48], Holm p < 0.05
    assert claims[2].verdict == "does not hold"  # no_dropout val is clearly *higher* than baseline
    assert claims[3].verdict == "inconclusive"  # fewer_layers: Welch interval contains 0
    assert claims[4].verdict == "holds"  # optimized above all four on test, each after Holm (family of 4)
    assert claims[5].verdict == "does not hold"  # 61% +- 1, far below 80.38
    assert "leaky" in claims[5].note and "81.00" in claims[5].note
    assert claims[1].split == "val" and claims[4].split == "test"
    assert "54.25" in claims[1].study and "48.05" in claims[1].study
    # claim 4 compares like with like and says the paper did not
    assert "52.80 (test)" in claims[4].study and "validation" in claims[4].study
    # Holm within claims 1-3: three p-values, by hand
    raw = [c.comparisons[0].diff.p for c in (claims[1], claims[2], claims[3])]
    assert [c.comparisons[0].p_adj for c in (claims[1], claims[2], claims[3])] == pytest.approx(stats.holm(raw))
    order = sorted(raw)
    assert claims[1].comparisons[0].p_adj == pytest.approx(3 * order[0])  # the smallest of the three
    sect = section(ablation_report, "The study's claims")
    assert "Verdict rule" in sect and "±2 pp (TIE_MARGIN_PP" in sect and "Holm" in sect
    assert "training budget only: 5 epoch(s) per trial at 64x64 input" in sect
    verdicts = [row(sect, str(n))[6] for n in range(1, 6)]
    assert verdicts == ["**holds**", "**does not hold**", "**inconclusive**", "**holds**", "**does not hold**"]
    # the forest plot is the report's first figure
    assert ablation_report.index("![") == ablation_report.index("![forest plot")


def test_paper_table_and_numbers_in_one_constant(ablation_report: str):
    assert STUDY_REPORTED["val_acc_pct"] == {"baseline": 48.05, "no_batchnorm": 54.25, "no_dropout": 47.26,
                                             "fewer_layers": 46.27, "optimized": 85.12}
    assert STUDY_REPORTED["test_acc_pct"] == {"baseline": 47.23, "no_batchnorm": 52.8, "no_dropout": 43.95,
                                              "fewer_layers": 44.12, "optimized": 80.38}
    paper = section(ablation_report, "The study's table beside ours")
    assert row(paper, "optimized")[1:8] == ["85.12", "61.00 [58.52, 63.48]", "-24.12", "80.38",
                                           "61.00 [58.52, 63.48]", "-19.38", "—"]
    assert row(paper, "no_batchnorm")[4] == "52.80"
    assert "a mix of splits" in paper
    # paper numbers appear in the code only in STUDY_REPORTED
    for name in ("report.py", "report_claims.py", "report_leak.py", "report_format.py", "stats.py", "claims.py"):
        text = (REPO / "sweep" / name).read_text()
        for number in ("48.05", "54.25", "47.26", "46.27", "85.12", "47.23", "52.8,", "43.95", "44.12", "80.38"):
            assert text.count(number) <= (1 if name == "report_claims.py" else 0), (name, number)


def test_header_budget_and_per_seed_table(ablation_report: str):
    report = ablation_report
    assert report.splitlines()[0] == "<!-- sweep.report: trials=18 -->"
    assert report.splitlines()[1] == "# Report: ablation_quick"
    assert "could not be built" not in report  # no section fell back to its error note
    assert "python -m sweep.run --grid ablation --profile quick --seeds 3" in report
    head = report[:report.index("## Results per variant")]
    assert "- input size: `data.input_size` 64" in head and "- epochs: `train.epochs` 5" in head
    assert "`train.lr_schedule` cosine" in head and "- augmentation: `augment.hflip_p` 0.5" in head
    assert "`train.lr` not recorded" in head
    assert "- seeds: 0, 1, 2, 3, 4, 9" in head
    # the fixture's plateau curve reaches its value at epoch 3 of 5: epoch 4 is still 1/3 above epoch 2, epoch 5 is flat
    assert row(head, "no_batchnorm")[2:8] == ["3/5, 3/5, 3/5", "+0.00", "5", "no", "no", "none"]
    per_seed = section(report, "Per-seed results")
    r = row(per_seed, "fewer_layers")
    assert r[1:] == ["3", "train_fer_00009_fewer_layers_s3", "55.00", "45.00", "46.00", "—", "3 / 5", "6.0 min", "no"]
    assert len([ln for ln in per_seed.splitlines() if ln.startswith("| optimized |")]) == 3


def test_figures_linked_and_forest_matches_table(ablation_exp: Path, ablation_report: str):
    out = ablation_exp.parent / "published" / "report.md"
    pngs = sorted(p.name for p in (out.parent / "figures").glob("*.png"))
    assert pngs == ["confusion.png", "curves.png", "forest.png", "leak.png"]  # grids replace per-variant files
    for name in pngs:
        assert f"(figures/{name})" in ablation_report
        assert 5_000 < (out.parent / "figures" / name).stat().st_size < 400_000
    assert not (ablation_exp / "report.md").exists()  # --out respected
    # the forest plot's rows and interval ends, read back from the drawn artists, equal the table's
    from sweep.report_figures import forest_figure

    variants = group_variants(load_experiment(ablation_exp))
    panels = forest_panels(variants, evaluate_claims(variants))
    drawn = forest_figure(panels, out.parent / "forest_check.png")
    comp = section(ablation_report, "Differences from the reference level")
    for split in ("val", "test"):
        table = [r for r in (row_ for row_ in _rows(comp) if row_[1] == split)]
        assert [d[0] for d in drawn[split]] == [r[0] for r in table]
        for (label, x, lo, hi), r in zip(drawn[split], table):
            assert r[4] == f"{x:+.2f} pp [{lo:+.2f}, {hi:+.2f}]"
    verdicts = {r.label: r.verdict for r in panels["val"]}
    assert verdicts["no_batchnorm"] == "claim 1: holds" and verdicts["optimized"] == "higher"
    assert [r.claimed_pp for r in panels["val"]][0] == pytest.approx(54.25 - 48.05)


def _rows(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| variant |"):
            out.append([c.strip() for c in line.strip().strip("|").split("|")])
    return out


def test_failed_stopped_and_odd_trials_listed(ablation_report: str):
    sect = section(ablation_report, "Failed, stopped and odd trials")
    failed = row(sect, "train_fer_00016_no_dropout_s3")
    assert failed[1] == "no_dropout"
    assert "Failure # 1" in failed[2] and "RuntimeError: CUDA out of memory \\| tried 2 GiB" in failed[2]
    assert failed[3] == "no"
    odd = row(sect, "train_fer_00017_broken")
    assert odd[1] == "no results" and odd[2].startswith("final.json: unreadable")
    assert "No trials stopped early." in sect


def test_an_unfinished_trial_of_a_grid_is_said_to_be_cut_off_not_stopped_by_a_scheduler(tmp_path: Path):
    # a grid has no scheduler: a trial without final.json was cut off (an interrupted sweep), resumable
    exp = _two_variants(tmp_path, "no_dropout", [(0, 0.55), (1, 0.56)])
    write_trial(exp, "t_no_dropout_2", params("no_dropout", 2), epochs=2, final=False)
    sect = section(build_report(exp).read_text(), "Failed, stopped and odd trials")
    assert sect.count("Unfinished: a grid has no scheduler") == 1 and "with `--resume` continues them" in sect
    assert row(sect, "t_no_dropout_2")[1:3] == ["no_dropout", "2"] and "ASHA" not in sect


def test_reproducibility_block(ablation_report: str):
    repro = section(ablation_report, "Reproducibility")
    assert "abc1234" in repro and "f" * 64 in repro and "torch `2.14.0`" in repro
    # 14 official + 2 leaky completed trials at 360 s, plus the failed one whose last epoch reports 360 s
    hours = 17 * WALL_S / 3600
    assert f"{hours * CPUS:.2f} CPU hours" in repro and f"{hours * GPUS:.2f} GPU hours" in repro


def test_leak_section_without_control_or_subsets(ablation_report: str):
    sect = section(ablation_report, "Leakage audit")
    assert row(sect, "control")[2] == "0 (not run)"
    assert row(sect, "leaky")[3] == "14.29" and row(sect, "official")[3] == f"{100 * 879 / 3589:.2f}"
    assert "No honest control" in sect and "5 completed trial(s) have no `metrics.test.subsets`" in sect
    audit = sect[sect.index("Fraction of test images"):]
    assert row(audit, LEAKY)[1] == "31.25%" and row(audit, "official")[1] == "0.00%"
    assert "mixes a different class mix" in sect


# ----------------------------------------------------------------------------- verdict rules on small folders


def _two_variants(root: Path, other: str, other_vals, *, base_vals=((0, 0.50), (1, 0.51), (2, 0.52)), **kw) -> Path:
    exp = new_exp(root)
    for seed, v in base_vals:
        write_trial(exp, f"t_base_{seed}", params("baseline", seed), train=v, val=v, test=v,
                    test_support=PRIVATE_TEST)
    for seed, v in other_vals:
        write_trial(exp, f"t_{other}_{seed}", params(other, seed), train=v, val=v, test=v,
                    test_support=PRIVATE_TEST, **kw)
    return exp


def test_collapsed_variant_is_flagged_and_never_evidence(tmp_path: Path):
    exp = new_exp(tmp_path)
    for seed, v in enumerate((0.50, 0.51, 0.53)):
        write_trial(exp, f"t_base_{seed}", params("baseline", seed), train=v, val=v, test=v, test_support=PRIVATE_TEST)
    for seed, v in enumerate((0.60, 0.62)):
        write_trial(exp, f"t_opt_{seed}", params("optimized", seed), train=v, val=v, test=v, test_support=PRIVATE_TEST)
    # seed 2 predicts Happy for every face: accuracy 879 / 3589 = 24.49%, macro recall 1/7
    collapsed = collapsed_metrics()
    write_trial(exp, "t_opt_2", params("optimized", 2), metrics={"train": collapsed, "val": collapsed, "test": collapsed})
    claims = {c.number: c for c in evaluate_claims(group_variants(load_experiment(exp)))}
    assert claims[4].verdict == "collapsed" and claims[5].verdict == "collapsed"
    assert "seed 2" in claims[4].note and "100.0% of predictions in class 3" in claims[4].note
    report = build_report(exp).read_text()
    assert row(section(report, "Results per variant"), "optimized")[12] == "1 of 3"
    assert row(section(report, "Per-seed results"), "optimized") is not None
    per_seed = [ln for ln in section(report, "Per-seed results").splitlines() if "t_opt_2" in ln][0]
    assert "yes: test: 100.0% of predictions in class 3" in per_seed
    assert row(section(report, "Differences from the reference level"), "optimized")[8] == "collapsed"
    assert row(section(report, "The study's claims"), "4")[6] == "**collapsed**"


def test_not_settled_when_the_curve_still_rises(tmp_path: Path):
    # no_batchnorm clearly above the baseline, but its curves climb to the last epoch (best epoch = last)
    exp = _two_variants(tmp_path, "no_batchnorm", ((0, 0.60), (1, 0.62), (2, 0.61)), curve="rising")
    variants = group_variants(load_experiment(exp))
    nbn = [v for v in variants if v.model == "no_batchnorm"][0]
    b = nbn.budget()
    assert b.improving and b.not_settled and b.best_is_last == 3
    assert b.gain_pp == pytest.approx(100 * 0.61 * 2 / 5)  # mean curve: 0.61 * (5 - 3) / 5
    claim1 = evaluate_claims(variants)[0]
    assert claim1.verdict == "not settled at this budget"
    assert "the interval alone would say: holds" in claim1.note
    report = build_report(exp).read_text()
    assert b.flat_from is None  # rising at its last epoch: no plateau to date
    assert row(report[:report.index("## Results")], "no_batchnorm")[4:7] == ["—", "yes", "yes"]
    # the curve rule alone: best epoch recorded early, but the mean curve rose > 1 pp at the end
    exp2 = _two_variants(tmp_path / "b", "no_batchnorm", ((0, 0.60), (1, 0.62)), curve="rising", best_epoch=2)
    nbn2 = [v for v in group_variants(load_experiment(exp2)) if v.model == "no_batchnorm"][0]
    assert nbn2.budget().best_is_last == 0 and nbn2.budget().not_settled


def test_a_flat_curve_is_settled_even_when_its_last_epoch_is_best(tmp_path: Path):
    # a plateau whose best epoch is the last (as an annealed learning rate makes it)
    exp = _two_variants(tmp_path, "no_batchnorm", ((0, 0.60), (1, 0.62), (2, 0.61)), best_epoch=5)
    nbn = [v for v in group_variants(load_experiment(exp)) if v.model == "no_batchnorm"][0]
    b = nbn.budget()
    assert b.best_is_last == 3 and not b.improving and not b.not_settled
    assert evaluate_claims(group_variants(load_experiment(exp)))[0].verdict != "not settled at this budget"


def test_best_epoch_from_result_json_when_final_lacks_it(tmp_path: Path):
    exp = _two_variants(tmp_path, "no_dropout", ((0, 0.5), (1, 0.5)))
    for d in exp.glob("t_no_dropout_*"):
        final = json.loads((d / "final.json").read_text())
        del final["best_epoch"]
        (d / "final.json").write_text(json.dumps(final))
    nd = [v for v in group_variants(load_experiment(exp)) if v.model == "no_dropout"][0]
    assert [t.best_epoch for t in nd.done] == [3, 3]  # the plateau's first epoch; the closing row is skipped


def test_header_says_what_precision_the_trials_trained_in_when_final_json_records_it(tmp_path: Path):
    exp = _two_variants(tmp_path, "vgg_fer", ((0, 0.6), (1, 0.61)))
    assert "precision as trained" not in build_report(exp).read_text()  # trials from before final.json said
    for d, precision in (("t_base_0", "fp32"), ("t_base_1", "fp32"), ("t_vgg_fer_0", "bf16"), ("t_vgg_fer_1", "bf16")):
        final = json.loads((exp / d / "final.json").read_text())
        (exp / d / "final.json").write_text(json.dumps({**final, "precision": precision}))
    head = build_report(exp).read_text().split("## Results per variant")[0]
    assert ("- precision as trained (final.json): `bf16` 2 trial(s) (vgg_fer), `fp32` 2 trial(s) (baseline), "
            "not recorded 1 trial(s)\n") in head


def test_demonstrated_tie(tmp_path: Path):
    # differences -0.3, +0.6, +0.2 pp: mean +0.17, interval [-0.95, +1.29] pp, inside +-2 pp
    exp = _two_variants(tmp_path, "no_dropout", ((0, 0.497), (1, 0.516), (2, 0.522)))
    claim2 = evaluate_claims(group_variants(load_experiment(exp)))[1]
    assert claim2.verdict == "tie" and claim2.difference.startswith("+0.17 pp [-0.95, +1.29]")
    # a significant difference, however small, is read by its direction first: +0.5 pp [+0.25, +0.75]
    exp2 = _two_variants(tmp_path / "s", "no_dropout", ((0, 0.504), (1, 0.516), (2, 0.525)))
    assert evaluate_claims(group_variants(load_experiment(exp2)))[1].verdict == "does not hold"


def test_n_lt_2_and_zero_variance_are_said(tmp_path: Path):
    exp = _two_variants(tmp_path, "fewer_layers", ((0, 0.45),))
    claim3 = evaluate_claims(group_variants(load_experiment(exp)))[2]
    assert claim3.verdict == "inconclusive" and "n<2" in claim3.note
    exp2 = _two_variants(tmp_path / "z", "no_batchnorm", ((0, 0.60), (1, 0.61)), base_vals=((0, 0.50), (1, 0.51)))
    claim1 = evaluate_claims(group_variants(load_experiment(exp2)))[0]
    assert claim1.verdict == "inconclusive" and "zero variance" in claim1.note
    assert "+10.00 pp (zero variance" in claim1.difference


def test_duplicate_seeds_are_refused(tmp_path: Path, capsys):
    exp = new_exp(tmp_path)
    write_trial(exp, "t_a", params("baseline", 0), val=0.5)
    write_trial(exp, "t_b", params("baseline", 0), val=0.52)
    write_trial(exp, "t_c", params("baseline", 1), val=0.51)
    with pytest.raises(ReportError, match=r"duplicate seeds.*baseline seed 0 in t_a, t_b"):
        build_report(exp)
    assert main([str(exp)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "t_a, t_b" in err
    assert not (exp / "report.md").exists()


# ----------------------------------------------------------------------------- input checks, rebuilds


def test_empty_or_foreign_folder_exits_non_zero(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no trial folders" in err
    meta_only = new_exp(tmp_path, "meta_only")
    (meta_only / "figures").mkdir()  # like a committed report folder: meta and figures, no trials
    assert main([str(meta_only)]) == 2
    assert "has sweep_meta.json but no trial folders" in capsys.readouterr().err
    no_meta = tmp_path / "no_meta"
    no_meta.mkdir()
    write_trial(no_meta, "t0", params("baseline", 0))
    assert main([str(no_meta)]) == 2
    assert "sweep_meta.json is missing" in capsys.readouterr().err
    for d in (empty, meta_only, no_meta):
        assert not (d / "report.md").exists()
    with pytest.raises(ReportError):
        build_report(empty)
    missing = tmp_path / "nope"
    assert main([str(missing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {missing}: experiment folder does not exist (expected <storage>/<name>/)")


def test_refuses_to_overwrite_a_report_of_more_trials(tmp_path: Path, capsys):
    exp = _two_variants(tmp_path, "no_dropout", ((0, 0.5), (1, 0.52)))
    out = build_report(exp)
    assert trials_listed(out) == 5
    before = out.read_bytes()
    import shutil

    shutil.rmtree(exp / "t_no_dropout_1")
    assert main([str(exp)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "lists 5 trials" in err and "holds 4" in err
    assert out.read_bytes() == before
    # a report written before the first-line marker: its "- trials: N" header line counts
    out.write_text("# Report: old\n\n- trials: 11 (11 completed); variants: 6\n")
    assert trials_listed(out) == 11
    with pytest.raises(ReportError, match="lists 11 trials"):
        build_report(exp)
    # --out elsewhere is fine
    assert main([str(exp), "--out", str(tmp_path / "other.md")]) == 0


def test_rebuild_is_byte_identical(tmp_path: Path):
    exp = make_ablation(tmp_path / "storage" / "ablation")
    out = build_report(exp)
    first = {p.relative_to(exp).as_posix(): p.read_bytes() for p in [out, *sorted((exp / "figures").glob("*.png"))]}
    assert len(first) == 5
    out2 = build_report(exp)  # same folder, same file
    second = {p.relative_to(exp).as_posix(): p.read_bytes() for p in [out2, *sorted((exp / "figures").glob("*.png"))]}
    assert first == second
    # and from another working directory with a relative path, in a fresh process
    res = subprocess.run([sys.executable, "-m", "sweep.report", "ablation", "--out", str(tmp_path / "x" / "r.md")],
                         cwd=exp.parent, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "x" / "r.md").read_bytes() == first["report.md"]
    for name in ("forest.png", "curves.png", "confusion.png", "leak.png"):
        assert (tmp_path / "x" / "figures" / name).read_bytes() == first[f"figures/{name}"], name


def test_stale_per_variant_figures_are_removed(tmp_path: Path):
    exp = _two_variants(tmp_path, "no_dropout", ((0, 0.5), (1, 0.52)))
    (exp / "figures").mkdir()
    (exp / "figures" / "confusion_baseline.png").write_bytes(b"old")
    (exp / "figures" / "curves_baseline.png").write_bytes(b"old")
    build_report(exp)
    assert sorted(p.name for p in (exp / "figures").iterdir()) == ["confusion.png", "curves.png", "forest.png"]


def test_no_leakage_section_without_leaky_trials(tmp_path: Path):
    exp = new_exp(tmp_path)
    write_trial(exp, "t0", params("baseline", 0), train=0.6, val=0.5, test=0.5)
    report = build_report(exp).read_text()
    assert "## Leakage audit" not in report and "## Search" not in report
    assert "could not be built" not in report


# ----------------------------------------------------------------------------- search report


@pytest.fixture
def search_exp(tmp_path: Path) -> Path:
    exp = tmp_path / "search_optimized"
    exp.mkdir()
    # (l2, dropout, best val, test, stopped early?)
    trials = [(1e-4, 0.2, 0.62, 0.60, False), (1e-3, 0.5, 0.58, 0.70, False), (1e-2, 0.3, 0.50, 0.49, True),
              (3e-4, 0.4, 0.61, 0.59, False), (5e-3, 0.1, 0.52, 0.51, True)]
    for i, (l2, dropout, val, test, stopped) in enumerate(trials):
        p = {"model.name": "optimized", "model.l2": l2, "model.dropout": dropout, "seed": 0,
             "train.epochs": 4, "data.protocol": "official"}
        write_trial(exp, f"trial_{i:05d}", p, train=val + 0.1, val=val, test=test,
                    epochs=1 if stopped else 4, final=not stopped, curve="rising")
    (exp / "sweep_meta.json").write_text(json.dumps({
        "command": "python -m sweep.run --grid search --samples 5", "grid": "optimized_search", "profile": "quick",
        "resources_per_trial": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
        # as sweep.run records sweep/grids/search.yaml's block; detection goes through its space keys
        "search": {"metric": "val/acc", "mode": "max", "num_samples": 5,
                   "space": {"model.l2": {"loguniform": [1e-6, 1e-2]}, "model.dropout": {"uniform": [0.1, 0.7]}},
                   "asha": {"grace_period": 1, "reduction_factor": 2}}}))
    return exp


def test_search_section(search_exp: Path):
    report = build_report(search_exp).read_text()
    sect = section(report, "Search")
    # selected by best val (0.62), not by test (trial_00001 has the best test accuracy 0.70)
    assert "`trial_00000`, val 62.00%" in sect
    assert row(sect, "model.l2")[1] == "0.0001" and row(sect, "model.dropout")[1] == "0.2"
    assert "truncated score" in sect
    assert f"{5 * 100 / 3600:.2f} CPU hours, 0.00 GPU hours" in report  # plain {cpu} layout, 100 s per trial
    imp_section = sect[sect.index("### Parameter importance"):sect.index("### Trials")]
    importance = {r: float(row(imp_section, r)[1]) for r in ("model.l2", "model.dropout")}
    assert sum(importance.values()) == pytest.approx(1.0, abs=0.002)
    rows = [row(sect, f"trial_{i:05d}") for i in range(5)]
    assert [r[-2] for r in rows] == ["no", "no", "yes", "no", "yes"]  # stopped-early flag
    assert rows[2][4] == "1" and rows[0][4] == "4"  # epochs run
    assert rows[2][3] == "50.00"  # best val acc of a stopped trial comes from result.json
    assert "Stopped early by the scheduler (e.g. ASHA)" in section(report, "Failed, stopped and odd trials")
    assert "## The study's claims" not in report  # a search's trials are different configurations: no verdicts
    assert "## Differences from the reference level" not in report and "## Per-seed results" not in report
    assert row(section(report, "Results per variant"), "variant")[1] == "trials n (configs)"
    # all five trials are one variant (sampled params are not variant axes); one shared seed is no duplicate
    assert len(group_variants(load_experiment(search_exp))) == 1


def test_search_report_draws_optunas_figures_and_flags_a_best_value_on_the_edge(search_exp: Path):
    from sweep.report_search import optuna_study

    exp = load_experiment(search_exp)
    study = optuna_study(exp.trials, exp.meta["search"]["space"])
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("PRUNED") == 2  # ASHA-stopped trials shown as such
    assert all(len(t.intermediate_values) in (1, 4) for t in study.trials)
    report = build_report(search_exp).read_text()
    sect = section(report, "Search")
    for name in ("search_history", "search_importances", "search_contour", "search_intermediate", "search_slice"):
        assert f"(figures/{name}.png)" in sect and (search_exp / "figures" / f"{name}.png").stat().st_size > 1000
    # best: l2 1e-4 (inside 1e-6..1e-2 in log space), dropout 0.2 (outer 10% of 0.1..0.7 is below 0.16)
    assert row(sect, "model.l2")[2] == "no" and row(sect, "model.dropout")[2] == "no"
    first = {p.name: p.read_bytes() for p in (search_exp / "figures").glob("search_*.png")}
    build_report(search_exp)
    assert first == {p.name: p.read_bytes() for p in (search_exp / "figures").glob("search_*.png")}


def test_a_best_value_on_the_edge_of_the_search_range_is_flagged(search_exp: Path):
    best = search_exp / "trial_00000" / "params.json"
    params = json.loads(best.read_text())
    params["model.l2"] = 1.5e-6  # within the lowest 10% of log(1e-6)..log(1e-2)
    best.write_text(json.dumps(params))
    sect = section(build_report(search_exp).read_text(), "Search")
    assert row(sect, "model.l2")[2] == "**yes**" and row(sect, "model.dropout")[2] == "no"
    assert "widen the range" in sect


def test_search_report_sets_the_best_trial_against_the_default_setting_tried_first(search_exp: Path):
    meta = json.loads((search_exp / "sweep_meta.json").read_text())
    meta["search"]["default"] = {"model.l2": 3e-4, "model.dropout": 0.4}  # trial_00003: val 61%, test 59%
    (search_exp / "sweep_meta.json").write_text(json.dumps(meta))
    sect = section(build_report(search_exp).read_text(), "Search")
    assert "The default setting (model.l2=0.0003, model.dropout=0.4), tried first" in sect
    assert "`trial_00003`, val 61.00%, test 59.00%" in sect and "+1.00 pp above it on validation" in sect
    meta["search"]["default"] = {"model.l2": 1e-4, "model.dropout": 0.2}  # the best trial itself
    (search_exp / "sweep_meta.json").write_text(json.dumps(meta))
    assert "No sampled setting beat it" in section(build_report(search_exp).read_text(), "Search")
    meta["search"]["default"] = {"model.l2": 1e-2, "model.dropout": 0.3}  # trial_00002, stopped after 1 epoch
    (search_exp / "sweep_meta.json").write_text(json.dumps(meta))
    sect = section(build_report(search_exp).read_text(), "Search")
    assert "It was stopped after 1 epoch(s), so it is no reference at this budget" in sect
    assert "pp above it" not in sect  # no gain claimed over a truncated score


def test_param_importance_needs_two_varying_trials(search_exp: Path):
    exp = load_experiment(search_exp)
    assert sampled_keys(exp) == ["model.dropout", "model.l2"]
    imp, why = param_importance(exp.trials[:1], ["model.l2"])
    assert imp is None and ">= 2 trials" in why
    imp, why = param_importance(exp.trials[:2], ["seed"])
    assert imp is None and "varies" in why


# ----------------------------------------------------------------------------- CLI, odd inputs


def test_cli_main(search_exp: Path, tmp_path: Path):
    out = tmp_path / "r.md"
    assert main([str(search_exp), "--out", str(out)]) == 0
    assert out.read_text().splitlines()[1].startswith("# Report:")


def test_cli_module_entry_point(search_exp: Path):
    res = subprocess.run([sys.executable, "-m", "sweep.report", str(search_exp)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()) == search_exp / "report.md"
    assert (search_exp / "report.md").exists()


def test_odd_inputs_are_listed_not_fatal(tmp_path: Path):
    exp = tmp_path / "odd"
    exp.mkdir()
    (exp / "sweep_meta.json").write_text("[1, 2]")  # valid JSON, wrong shape
    # only Tune's error.txt (the trial died before params.json was written)
    (exp / "t_err").mkdir()
    (exp / "t_err" / "error.txt").write_text("\x1b[36mValueError: data.protocol 'x' unknown\x1b[39m\nmore\n")
    # result.json with a garbage line, stopped by the scheduler (no final.json)
    d = write_trial(exp, "t_stop", params("baseline", 1), val=0.4, epochs=2, final=False)
    with open(d / "result.json", "a") as f:
        f.write("{truncated\n")
    # final.json without a test split; a recovered trial (error.txt from a retry + final.json)
    d = write_trial(exp, "t_notest", params("baseline", 2), train=0.6, val=0.5, test=0.5)
    final = json.loads((d / "final.json").read_text())
    del final["metrics"]["test"]
    (d / "final.json").write_text(json.dumps(final))
    write_trial(exp, "t_retry", params("baseline", 3), train=0.6, val=0.5, test=0.55,
                error="Failure # 1 (occurred at 2025-01-01_00-00-00)\nOSError: disk full\n")
    write_trial(exp, "t_leaky", params("baseline", 0, LEAKY), train=0.9, val=0.8, test=0.8)
    report = build_report(exp).read_text()
    assert "could not be built" not in report
    assert "sweep_meta.json: not a JSON object" in report
    issues = section(report, "Failed, stopped and odd trials")
    assert row(issues, "t_err")[1:] == ["unknown", "ValueError: data.protocol 'x' unknown", "no"]
    assert row(issues, "t_retry")[2:] == ["Failure # 1 (occurred at 2025-01-01_00-00-00): OSError: disk full",
                                          "yes (final.json present)"]
    assert row(issues, "t_stop")[2:] == ["2", "40.00"]
    odd = issues[issues.index("Odd trials"):]
    assert "1 unparsable line(s) skipped" in row(odd, "t_stop")[2]
    assert "params.json missing" in row(odd, "t_err")[2]
    assert "metrics.test.acc missing" in row(odd, "t_notest")[2]
    # baseline: t_notest and t_retry completed, only t_retry has a test accuracy
    table = section(report, "Results per variant")
    assert row(table, "baseline")[4] == "55.00 (n=1, no interval)"
    assert row(table, "baseline")[3] == "50.00 ± 0.00 (n=2, zero variance: no interval)"
    assert "no `data_audit`" in section(report, "Leakage audit")


def test_split_metrics_helper_is_consistent():
    m = split_metrics(0.5, support=PRIVATE_TEST)
    assert sum(map(sum, m["confusion"])) == 3589
    assert abs(sum(m["confusion"][i][i] for i in range(7)) / 3589 - 0.5) < 0.01
    assert not math.isnan(m["macro_recall"])


def test_export_copies_only_the_raw_files_and_rebuilds_the_same_report(tmp_path: Path):
    from sweep.report import main

    exp = _two_variants(tmp_path / "src", "no_batchnorm", ((0, 0.60), (1, 0.62), (2, 0.61)))
    (exp / "t_base_0" / "checkpoint_000001").mkdir()
    (exp / "t_base_0" / "events.out.tfevents.1").write_bytes(b"x" * 100)
    dest = tmp_path / "committed" / exp.name
    assert main([str(exp), "--export", str(dest)]) == 0
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and "figures" not in p.parts)
    assert "t_base_0/final.json" in copied and "sweep_meta.json" in copied and "report.md" in copied
    assert not any("checkpoint" in c or "tfevents" in c for c in copied)
    first = (dest / "report.md").read_bytes()
    assert main([str(dest)]) == 0 and (dest / "report.md").read_bytes() == first  # rebuilds from the repo's copy
    assert main([str(exp), "--export", str(dest)]) == 2  # never into an existing folder


def test_header_says_which_grid_values_the_trials_ran_otherwise(tmp_path: Path):
    # `--set train.lr=0.003` on a grid that declares 0.001: the header must not state a learning rate not used;
    # the audit's protocol axis, declared fixed for the main grid, varies by design and is not flagged
    exp = new_exp(tmp_path, nuisance={"train.lr": 0.001, "train.batch_size": 128},
                  fixed={"data.protocol": "official"})
    for i, (model, proto) in enumerate([("baseline", "official"), ("baseline", LEAKY)] * 2):
        write_trial(exp, f"t{i}", params(model, i // 2, proto, **{"train.lr": 0.003, "train.batch_size": 128}))
    header = build_report(exp).read_text().split("## ")[0]
    assert ('- nuisance parameters: `{"train.lr": 0.001, "train.batch_size": 128}`; the trials ran `train.lr` '
            '0.003 instead (a `--set` or tuning)\n') in header
    assert '- fixed parameters: `{"data.protocol": "official"}`\n' in header
