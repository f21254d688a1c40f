"""A user's own scientific axes get the study's comparisons: reference levels, per-combination differences,
interactions, and no study claims unless the study's CNNs ran. Experiment folders built by hand."""
from __future__ import annotations

import pytest
from scipy import stats as st

from sweep.report import build_report
from sweep.stats import holm
from test_report_fixtures import new_exp, row, rows, section, write_trial

SEEDS = (0, 1, 2)
NOISE = {0: 0.0, 1: 0.01, 2: -0.005}  # a per-seed shift shared by every variant: paired tests remove it


def user_params(seed: int, **axes) -> dict:
    return {"train.epochs": 5, "data.input_size": 48, "model.name": "baseline", "data.protocol": "official",
            "variant": {**axes, "seed": seed}}


def test_one_user_axis_is_compared_with_its_first_level_and_gets_no_study_claims(tmp_path):
    exp = new_exp(tmp_path, "bn", grid="bn", scientific={"model.batchnorm": [True, False]})
    val = {True: 0.50, False: 0.46}
    extra = {True: (0.0, 0.0, 0.0), False: (0.0, 0.004, -0.004)}  # differences -4, -3.6, -4.4 pp
    for bn in (True, False):
        for s in SEEDS:
            v = val[bn] + NOISE[s] + extra[bn][s]
            write_trial(exp, f"t_{bn}_{s}", user_params(s, **{"model.batchnorm": bn}), val=v, test=v)
    report = build_report(exp).read_text()
    comp = section(report, "Differences from the reference level")
    assert "`model.batchnorm` = true" in comp
    r = row(comp, "baseline [model.batchnorm=false]")
    assert r[1:4] == ["val", "baseline [model.batchnorm=true]", "paired t (3 shared seeds)"]
    assert r[4] == "-4.00 pp [-4.99, -3.01]"  # sd 0.4 pp, half-width 4.3027 * 0.4 / sqrt(3) = 0.99
    assert r[8] == "lower" and r[9] == "model.batchnorm"
    assert not rows(comp, "baseline [model.batchnorm=true]")  # the reference is not compared with itself
    assert row(section(report, "Results per variant"), "baseline [model.batchnorm=false]")[1] == "3"
    assert "## The study's claims" not in report and "## The study's table" not in report
    assert "## Interactions between axes" not in report  # one axis: nothing to interact with


def _two_axis_exp(tmp_path, **meta):
    exp = new_exp(tmp_path, "aug", grid="aug", **meta,
                  scientific={"augment.rotation_deg": [0.0, 10.0], "augment.occlusion_p": [0.0, 0.2]})
    # rotation +5 pp without occlusion, +2 pp with it: interaction -3 pp; occlusion +2 / -1 pp
    cell = {(0.0, 0.0): 0.40, (10.0, 0.0): 0.45, (0.0, 0.2): 0.42, (10.0, 0.2): 0.44}
    jitter = {(10.0, 0.2): {0: 0.0, 1: 0.002, 2: -0.002},  # so the interaction has a spread ...
              (10.0, 0.0): {1: 0.001, 2: -0.001}, (0.0, 0.2): {1: -0.001, 2: 0.001}}  # ... and every difference
    for (rot, occ), base in cell.items():
        for s in SEEDS:
            v = base + NOISE[s] + jitter.get((rot, occ), {}).get(s, 0.0)
            write_trial(exp, f"t_{rot}_{occ}_{s}",
                        user_params(s, **{"augment.rotation_deg": rot, "augment.occlusion_p": occ}), val=v, test=v)
    return exp


def label(rot, occ):
    return f"baseline [augment.occlusion_p={occ}, augment.rotation_deg={rot}]"


def test_two_axes_compare_each_axis_at_every_level_of_the_other_and_show_the_interaction(tmp_path):
    report = build_report(_two_axis_exp(tmp_path)).read_text()
    comp = section(report, "Differences from the reference level")
    val = {(r[0], r[9]): r for r in (x for lab in {label(a, b) for a in (0.0, 10.0) for b in (0.0, 0.2)}
                                     for x in rows(comp, lab)) if r[1] == "val"}
    rot_at_0 = val[(label(10.0, 0.0), "augment.rotation_deg")]
    assert rot_at_0[2] == label(0.0, 0.0) and rot_at_0[4].startswith("+5.00 pp")
    rot_at_02 = val[(label(10.0, 0.2), "augment.rotation_deg")]
    assert rot_at_02[2] == label(0.0, 0.2) and rot_at_02[4].startswith("+2.00 pp")
    occ_at_0 = val[(label(0.0, 0.2), "augment.occlusion_p")]
    assert occ_at_0[2] == label(0.0, 0.0) and occ_at_0[4].startswith("+2.00 pp")
    occ_at_10 = val[(label(10.0, 0.2), "augment.occlusion_p")]
    assert occ_at_10[2] == label(10.0, 0.0) and occ_at_10[4].startswith("-1.00 pp")
    assert len(val) == 4  # the reference cell is nobody's variant
    for axis in ("augment.rotation_deg", "augment.occlusion_p"):  # one Holm family per axis: its rows at both
        fam = [r for (_, ax), r in val.items() if ax == axis]     # levels of the other axis, adjusted together
        assert len(fam) == 2
        assert [float(r[6]) for r in fam] == pytest.approx(holm([float(r[5]) for r in fam]), abs=2e-4)
    inter = section(report, "Interactions between axes")
    (r,) = [x for x in rows(inter, label(10.0, 0.2)) if x[2] == "val"]
    assert r[1] == "augment.rotation_deg × augment.occlusion_p" and r[3] == "paired t (3 shared seeds)"
    per_seed = [-3.0, -2.8, -3.2]  # the (10, 0.2) cell's jitter in pp
    half = st.t.ppf(0.975, 2) * st.tstd(per_seed) / 3 ** 0.5
    assert r[4] == f"-3.00 pp [{-3 - half:+.2f}, {-3 + half:+.2f}]"
    assert float(r[5]) == pytest.approx(st.ttest_1samp(per_seed, 0).pvalue, abs=1e-4)
    assert "## The study's claims" not in report


def test_an_explicit_reference_level_replaces_the_first_listed_value(tmp_path):
    report = build_report(_two_axis_exp(tmp_path, reference={"augment.rotation_deg": 10.0})).read_text()
    comp = section(report, "Differences from the reference level")
    assert "`augment.rotation_deg` = 10.0" in comp
    r = [x for x in rows(comp, label(0.0, 0.0)) if x[1] == "val" and x[9] == "augment.rotation_deg"]
    assert r and r[0][2] == label(10.0, 0.0) and r[0][4].startswith("-5.00 pp")


def test_the_study_grid_keeps_its_claims_section(tmp_path):
    from test_report_fixtures import params

    exp = new_exp(tmp_path, "abl", scientific={"model.name": ["baseline", "no_dropout"]})
    for s in SEEDS:
        write_trial(exp, f"b{s}", params("baseline", s), val=0.48 + NOISE[s], test=0.48)
        write_trial(exp, f"d{s}", params("no_dropout", s), val=0.47 + NOISE[s], test=0.47)
    report = build_report(exp).read_text()
    assert "## The study's claims" in report
    r = row(section(report, "Differences from the reference level"), "no_dropout")
    assert r[2] == "baseline" and r[4].startswith("-1.00 pp") and r[9] == "model.name"


def test_console_summary_names_variants_by_their_axis_values():
    from sweep.grid import Grid
    from sweep.run import summary_label

    grid = Grid("bn", path=None, scientific={"model.batchnorm": [True, False]}, fixed={"model.name": "baseline"})
    cfg = {"model.name": "baseline", "model.batchnorm": False, "data.protocol": "official", "seed": 1}
    assert summary_label(cfg, grid) == "baseline [model.batchnorm=false]"
    study = Grid("ablation", path=None, scientific={"model.name": ["baseline"]},
                 audit=[{"model.name": "baseline", "data.protocol": "leaky-oversample-before-split"},
                        {"model.name": "baseline", "data.balance": "oversample"}])
    assert summary_label({"model.name": "no_dropout", "data.balance": "none"}, study) == "no_dropout"
    assert summary_label({"model.name": "baseline", "data.protocol": "leaky-oversample-before-split",
                          "data.balance": "none"}, study) == "baseline [leaky-oversample-before-split]"
    assert summary_label({"model.name": "baseline", "data.balance": "oversample"}, study) == \
        "baseline [data.balance=oversample]"
