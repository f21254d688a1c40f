"""The report's dead ReLU units (sweep.report_units) from the trials' final.json `unit_activity`."""
from __future__ import annotations

import json

from sweep.report import build_report
from sweep.report_load import load_trial
from tests.test_report_fixtures import new_exp, params, rows, section, write_trial


def _units(dead: list[int], widths=(32, 64, 128, 128), share: float = 0.4) -> dict:
    names = ["features.0.2", "features.1.2", "features.2.2", "classifier.2"]
    return {"val": [{"layer": n, "kind": "dense" if n.startswith("classifier") else "conv", "units": w,
                     "never_active": d, "active_share": share} for n, w, d in zip(names, widths, dead)]}


def test_section_gives_each_layers_dead_units_per_seed_and_names_the_mostly_dead(tmp_path):
    exp = new_exp(tmp_path)
    dense_dead = {"baseline": (126, 123), "no_batchnorm": (83, 87)}
    for seed in range(2):
        for model, dead in dense_dead.items():
            write_trial(exp, f"t_{model}_{seed}", params(model, seed), val=0.45, test=0.45,
                        unit_activity=_units([0, seed, 0, dead[seed]], share=0.3 + 0.1 * seed))
    # a trial written before the record: counted everywhere else, absent here
    write_trial(exp, "t_baseline_2", params("baseline", 2), val=0.45, test=0.45)
    text = section(build_report(exp).read_text(), "Dead ReLU units (validation)")
    base = rows(text, "baseline")
    assert [r[1] for r in base] == ["`features.0.2`", "`features.1.2`", "`features.2.2`", "`classifier.2`"]
    assert base[1][2:6] == ["conv", "64", "0.5 (0, 1)", "1%"]
    assert base[3][2:8] == ["dense", "128", "124.5 (126, 123)", "97%", "35.0%", "**mostly dead**"]
    nobn = rows(text, "no_batchnorm")
    assert nobn[3][4:8] == ["85.0 (83, 87)", "66%", "35.0%", ""]
    assert "Mostly dead (>= 90% of units, mean over seeds): baseline `classifier.2` (dense, 97%)." in text


def test_no_record_no_section_and_a_malformed_one_is_an_odd_trial(tmp_path):
    exp = new_exp(tmp_path)
    for seed in range(2):
        for model in ("baseline", "no_dropout"):
            write_trial(exp, f"t_{model}_{seed}", params(model, seed), val=0.5, test=0.5)
    assert "## Dead ReLU units" not in build_report(exp).read_text()
    d = exp / "t_no_dropout_1"
    final = json.loads((d / "final.json").read_text())
    final["unit_activity"] = {"val": [{"layer": "x", "kind": "conv", "units": 4, "never_active": 5,
                                       "active_share": 0.5}]}  # more dead than units
    (d / "final.json").write_text(json.dumps(final))
    assert load_trial(d).unit_activity("val") is None
    report = build_report(exp).read_text()
    assert "## Dead ReLU units" not in report
    odd = section(report, "Failed, stopped and odd trials")
    assert "t_no_dropout_1" in odd and "unit_activity val malformed" in odd
