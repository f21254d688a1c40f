"""The sensitivity section: one grid run with a shared nuisance setting and with tuned values, every
comparison and claim read side by side; the counterpart travels with an export. Experiment folders by hand."""
from __future__ import annotations

import json

from sweep.report import build_report, main
from test_report_fixtures import new_exp, params, row, section, write_trial

SEEDS = (0, 1, 2)
JITTER = {0: 0.0, 1: 0.002, 2: -0.002}  # the differences' spread across seeds
SCI = {"model.name": ["baseline", "no_batchnorm", "no_dropout"]}


def _run(root, name, accs: dict, lrs: dict, jitter=JITTER, **meta):
    exp = new_exp(root, name, scientific=SCI, nuisance={"train.lr": 0.001}, **meta)
    for model, acc in accs.items():
        for s in SEEDS:
            v = acc + (jitter[s] if model != "baseline" else 0.0)
            write_trial(exp, f"t_{model}_{s}", params(model, s, **{"train.lr": lrs[model]}), val=v, test=v)
    return exp


def _pair(tmp_path):
    # shared lr: removing batch norm gains 5 pp; each variant at its own tuned lr: it loses 5 pp.
    # Removing dropout loses 0.5 pp both ways.
    shared = _run(tmp_path, "shared-run", {"baseline": 0.50, "no_batchnorm": 0.55, "no_dropout": 0.495},
                  {"baseline": 0.001, "no_batchnorm": 0.001, "no_dropout": 0.001})
    tuning = {"space": {"train.lr": {"choice": [0.0003, 0.001, 0.003]}}, "epochs": 2, "seed": 100,
              "chosen": [{"point": {"model.name": m}, "values": {"train.lr": lr}, "val_acc": 0.5, "trials": 3,
                          "on_edge": []} for m, lr in (("baseline", 0.003), ("no_batchnorm", 0.0003),
                                                       ("no_dropout", 0.003))]}
    tuned = _run(tmp_path, "tuned-run", {"baseline": 0.55, "no_batchnorm": 0.50, "no_dropout": 0.545},
                 {"baseline": 0.003, "no_batchnorm": 0.0003, "no_dropout": 0.003}, tuning=tuning)
    return shared, tuned


def test_each_comparison_and_claim_is_read_in_both_runs_and_a_reversal_is_named(tmp_path):
    shared, tuned = _pair(tmp_path)
    report = build_report(tuned, shared=shared).read_text()
    sec = section(report, "Sensitivity to the nuisance setting")
    assert "this experiment (tuned)" in sec and "shared train.lr=0.001" in sec
    # variants are grouped without their tuned lr: the same labels as the shared run's
    bn = row(sec, "no_batchnorm")
    assert bn[1:3] == ["val", "baseline"]
    assert bn[3].startswith("-5.00 pp [") and bn[3].endswith(": lower")
    assert bn[4].startswith("+5.00 pp [") and bn[4].endswith(": higher")
    assert bn[5] == "**reverses**" and bn[6] == "model.name"
    nd = row(sec, "no_dropout")
    assert nd[3].endswith(": lower") and nd[4].endswith(": lower") and nd[5] == "no"
    assert "2 of 4 readings present in both runs change; 2 reverse." in sec  # no_batchnorm on val and test
    claim1, claim2 = row(sec, "1"), row(sec, "2")
    assert claim1[3:6] == ["does not hold", "holds", "**reverses**"]
    assert claim2[3:] == ["holds", "holds", "no"]
    assert "| 3 |" not in sec  # fewer_layers ran in neither
    # the run without a counterpart has no such section
    assert "Sensitivity" not in build_report(shared).read_text()


def test_export_carries_the_counterpart_and_rebuilds_from_its_own_folder(tmp_path, capsys):
    shared, tuned = _pair(tmp_path)
    dest = tmp_path / "committed"
    assert main([str(tuned), "--shared", str(shared), "--export", str(dest)]) == 0
    assert json.loads((dest / "shared" / "sweep_meta.json").read_text())["name"] == "shared-run"
    assert (dest / "shared" / "t_no_batchnorm_2" / "final.json").is_file()
    first = (dest / "report.md").read_text()
    assert "`shared/` (`shared-run`, shared train.lr=0.001)" in first
    build_report(dest)  # no --shared: found in the folder
    assert (dest / "report.md").read_text() == first
    again = tmp_path / "again"  # re-exporting the exported folder keeps its counterpart
    assert main([str(dest), "--export", str(again)]) == 0
    title = "Sensitivity to the nuisance setting"
    assert section((again / "report.md").read_text(), title) == section(first, title)


def test_a_counterpart_of_another_grid_is_refused_before_anything_is_written(tmp_path, capsys):
    _, tuned = _pair(tmp_path)
    other = new_exp(tmp_path, "bn-grid", scientific={"model.batchnorm": [True, False]})
    write_trial(other, "t0", params("baseline", 0))
    dest = tmp_path / "committed"
    assert main([str(tuned), "--shared", str(other), "--export", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(other) in err and "scientific axes (model.batchnorm) differ" in err
    assert not dest.exists() and not (tuned / "report.md").exists()
    assert main([str(tuned), "--shared", str(tmp_path / "missing")]) == 2
    assert "missing: experiment folder does not exist" in capsys.readouterr().err


def test_two_runs_at_different_settings_name_the_settings_that_differ_and_the_hosts(tmp_path, capsys):
    # neither run tuned anything: the section names what differs between them (input size, epochs), not "tuned"
    small = _run(tmp_path, "px32", {"baseline": 0.50, "no_batchnorm": 0.45, "no_dropout": 0.55},
                 {m: 0.001 for m in SCI["model.name"]},
                 constants={"data.input_size": 32, "train.epochs": 8, "train.lr": 0.001},
                 hardware={"kind": "CPU with native bf16"})
    large = _run(tmp_path, "px48", {"baseline": 0.52, "no_batchnorm": 0.53, "no_dropout": 0.57},
                 {m: 0.001 for m in SCI["model.name"]},
                 constants={"data.input_size": 48, "train.epochs": 8, "train.lr": 0.001, "data.new_key": 1},
                 hardware={"kind": "CPU without native bf16"})
    dest = tmp_path / "committed"
    assert main([str(large), "--against", str(small), "--export", str(dest)]) == 0
    sec = section((dest / "report.md").read_text(), "Sensitivity to the setting")
    assert "this experiment (data.input_size=48, data.new_key=1)" in sec
    assert "(`px32`, data.input_size=32, data.new_key=unset)" in sec  # a key one run lacks is named, not hidden
    assert "depends on data.input_size, data.new_key;" in sec and "tuned" not in sec
    assert "different kinds of host: CPU without native bf16 here, CPU with native bf16 there." in sec
    bn = row(sec, "no_batchnorm")  # +1 pp at 48 px, -5 pp at 32 px
    assert bn[3].startswith("+1.00 pp [") and bn[4].startswith("-5.00 pp [") and bn[5] == "**reverses**"
    assert row(sec, "no_dropout")[5] == "no"
    claim1 = row(sec, "1")
    assert claim1[3:6] == ["holds", "does not hold", "**reverses**"]  # its direction (no batch norm is better)
    build_report(dest)  # rebuilt from the exported folder: the same section
    assert section((dest / "report.md").read_text(), "Sensitivity to the setting") == sec


def test_a_counterpart_travels_without_its_own_counterpart(tmp_path, capsys):
    # reading a run against a committed report that has a `shared/` of its own copies that report's trials only:
    # the counterpart is read without its counterpart, so nesting them (shared/shared/...) would be dead weight
    shared, tuned = _pair(tmp_path)
    first = tmp_path / "first"
    assert main([str(tuned), "--shared", str(shared), "--export", str(first)]) == 0
    later = _run(tmp_path, "later-run", {"baseline": 0.56, "no_batchnorm": 0.51, "no_dropout": 0.55},
                 {m: 0.001 for m in SCI["model.name"]})
    dest = tmp_path / "second"
    assert main([str(later), "--against", str(first), "--export", str(dest)]) == 0
    assert json.loads((dest / "shared" / "sweep_meta.json").read_text())["name"] == "tuned-run"
    assert (dest / "shared" / "t_no_batchnorm_2" / "final.json").is_file()
    assert not (dest / "shared" / "shared").exists()
    report = (dest / "report.md").read_text()
    build_report(dest)
    assert (dest / "report.md").read_text() == report
    # An exported folder read against another run: the run given replaces the counterpart it carried.
    again = tmp_path / "third"
    assert main([str(first), "--against", str(later), "--export", str(again)]) == 0
    assert json.loads((again / "shared" / "sweep_meta.json").read_text())["name"] == "later-run"
    assert "`shared/` (`later-run`" in (again / "report.md").read_text()


def test_each_variant_run_in_both_is_read_against_itself_paired_by_seed(tmp_path, capsys):
    # the setting's own effect: no_batchnorm +1 pp (seed by seed +1.0, +1.8, +0.2), no_dropout -2 pp (-2.0, -1.2,
    # -2.8), baseline +3 pp at every seed (no variance: no test)
    lrs = {m: 0.001 for m in SCI["model.name"]}
    before = _run(tmp_path, "before", {"baseline": 0.50, "no_batchnorm": 0.45, "no_dropout": 0.55}, lrs,
                  constants={"train.lr": 0.001})
    after = _run(tmp_path, "after", {"baseline": 0.53, "no_batchnorm": 0.45, "no_dropout": 0.52}, lrs,
                 jitter={0: 0.01, 1: 0.02, 2: 0.0}, constants={"train.lr": 0.001, "train.dense_lr_fan_in": 512})
    assert main([str(after), "--against", str(before)]) == 0
    sec = section((after / "report.md").read_text(), "Sensitivity to the setting")
    assert "this experiment (train.dense_lr_fan_in=512)" in sec
    assert "(`before`, train.dense_lr_fan_in=0 (not recorded))" in sec  # predates the setting: ran at 0
    table = sec[sec.index("What the setting does to each variant"):]
    bn = row(table, "no_batchnorm")
    assert bn[1:7] == ["val", "0, 1, 2", "46.00", "45.00", bn[5], "paired t (3 shared seeds)"]
    assert bn[5] == "+1.00 pp [-0.99, +2.99]" and bn[9] == "inconclusive"
    nd = row(table, "no_dropout")
    # p 0.0494 alone, Holm 2 x 0.0494 over the split's two tested rows (baseline has no test): not decisive
    assert nd[3:10] == ["53.00", "55.00", "-2.00 pp [-3.99, -0.01]", "paired t (3 shared seeds)", "0.0494",
                        "0.0988", "inconclusive"]
    base = row(table, "baseline")
    assert base[3:5] == ["53.00", "50.00"] and base[5].startswith("+3.00 pp (") and base[9] == "inconclusive"


def test_two_runs_of_one_cnn_still_say_what_the_setting_does_to_it(tmp_path, capsys):
    # one CNN at two learning rates, no variant off the reference in either run: the per-variant table is the
    # whole comparison (seed by seed +1.0, +2.0, +0.0 pp)
    one = {"model.name": ["baseline"]}
    low = new_exp(tmp_path, "low", scientific=one, constants={"train.lr": 0.001})
    high = new_exp(tmp_path, "high", scientific=one, constants={"train.lr": 0.003})
    for s in SEEDS:
        write_trial(low, f"t_{s}", params("baseline", s, **{"train.lr": 0.001}), val=0.50, test=0.50)
        val = {0: 0.51, 1: 0.52, 2: 0.50}[s]
        write_trial(high, f"t_{s}", params("baseline", s, **{"train.lr": 0.003}), val=val, test=0.50)
    assert main([str(high), "--against", str(low)]) == 0
    sec = section((high / "report.md").read_text(), "Sensitivity to the setting")
    assert "Neither run has a variant with a completed reference-level partner" in sec
    assert "side by side. A reading that" not in sec  # no idle description of a table that is not there
    base = row(sec[sec.index("What the setting does to each variant"):], "baseline")
    assert base[1:6] == ["val", "0, 1, 2", "51.00", "50.00", "+1.00 pp [-1.48, +3.48]"]
