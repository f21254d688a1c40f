"""The leakage audit on a constructed folder: official, honest control (oversampled after the split) and
leaky runs of one model with `metrics.test.subsets`; every number is computed by hand below."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_fixtures import LEAKY, PRIVATE_TEST, new_exp, params, row, section, write_trial

from sweep.report import build_report, group_variants, load_experiment
from sweep.report_claims import evaluate_claims
from sweep.report_leak import leak_audit

BAL = [899] * 7  # the leaky protocol's class-balanced test split


def subsets(copy_n, copy_acc, copy_r, no_n, no_acc, no_r, per_class=None) -> dict:
    out = {"copy_in_train": {"n": copy_n, "acc": copy_acc, "macro_recall": copy_r},
           "no_copy_in_train": {"n": no_n, "acc": no_acc, "macro_recall": no_r}}
    if per_class is not None:  # (copy n, copy correct, no-copy n, no-copy correct), per class
        for name, (n, correct) in zip(out, (per_class[:2], per_class[2:])):
            out[name].update(per_class_n=n, per_class_correct=correct)
    return out


# The leaky runs' per-class counts: Angry and Disgust (classes 0, 1) in both subsets, Fear only copied.
# Mantel-Haenszel weights 10*10/20 = 5 (class 0) and 30*10/40 = 7.5 (class 1), Fear left out.
# Seed 0: copied 0.8, 0.8 -> 0.80; not copied 0.5, 0.6 -> (2.5 + 4.5) / 12.5 = 0.56; difference 0.24.
# Seed 1: copied 0.9, 0.9 -> 0.90; not copied 0.6, 0.5 -> (3 + 3.75) / 12.5 = 0.54; difference 0.36.
N_COPY, N_NOCOPY = [10, 30, 5, 0, 0, 0, 0], [10, 10, 0, 0, 0, 0, 0]
PER_CLASS = [(N_COPY, [8, 24, 5, 0, 0, 0, 0], N_NOCOPY, [5, 6, 0, 0, 0, 0, 0]),
             (N_COPY, [9, 27, 5, 0, 0, 0, 0], N_NOCOPY, [6, 5, 0, 0, 0, 0, 0])]


# role -> per seed (test acc, macro recall, subsets)
RUNS = {
    ("official", "none"): [(0.60, 0.50, subsets(288, 0.70, 0.60, 3301, 0.59, 0.49)),
                           (0.62, 0.52, subsets(288, 0.72, 0.62, 3301, 0.61, 0.51))],
    ("official", "oversample"): [(0.58, 0.55, subsets(288, 0.68, 0.60, 3301, 0.57, 0.54)),
                                 (0.60, 0.57, subsets(288, 0.70, 0.62, 3301, 0.59, 0.56))],
    (LEAKY, "none"): [(0.80, 0.80, subsets(4123, 0.95, 0.95, 2170, 0.52, 0.52, PER_CLASS[0])),
                      (0.84, 0.84, subsets(4123, 0.97, 0.97, 2170, 0.56, 0.56, PER_CLASS[1]))],
}


@pytest.fixture(scope="module")
def leak_exp(tmp_path_factory) -> Path:
    exp = new_exp(tmp_path_factory.mktemp("leak"), "leak",
                  data_audit={"official": {"protocol": "official", "test_exact_copies_in_train_fraction": 288 / 3589}})
    for (protocol, balance), seeds in RUNS.items():
        for seed, (acc, recall, subs) in enumerate(seeds):
            write_trial(exp, f"t_{protocol[:5]}_{balance}_{seed}",
                        params("optimized", seed, protocol, balance=balance), train=0.8, val=acc, test=acc,
                        test_support=BAL if protocol == LEAKY else PRIVATE_TEST, test_subsets=subs,
                        test_recall=recall)
    return exp


def test_leak_audit_numbers(leak_exp: Path):
    (res,) = leak_audit(group_variants(load_experiment(leak_exp)))
    assert set(res.rows) == {"official", "control", "leaky"}
    assert res.rows["control"].variant.balance == "oversample"
    assert res.rows["control"].variant.label == "optimized [data.balance=oversample]"
    # inflation: leaky - control per seed 0.22, 0.24 -> +23 pp, sd 1.414 pp, se 1 pp, t(0.975, 1) = 12.706
    assert res.inflation.test == "paired" and res.inflation.diff == pytest.approx(0.23)
    assert res.inflation.lo == pytest.approx(0.23 - 0.127062, abs=1e-5)
    assert res.inflation.hi == pytest.approx(0.23 + 0.127062, abs=1e-5)
    assert res.inflation_recall.diff == pytest.approx(0.26)  # 0.25, 0.27
    # within the leaky run: copy - no copy per seed 0.43, 0.41 -> +42 pp
    within = res.rows["leaky"].copy_minus_nocopy
    assert within.n_pairs == 2 and within.diff == pytest.approx(0.42)
    assert within.lo == pytest.approx(0.42 - 0.127062, abs=1e-5)
    off = res.rows["official"]
    assert off.copy_n == 288 and off.nocopy_n == 3301 and off.nocopy_acc.mean == pytest.approx(0.60)
    assert off.copy_minus_nocopy.diff == pytest.approx(0.11)
    assert off.majority == pytest.approx(879 / 3589) and res.rows["leaky"].majority == pytest.approx(1 / 7)
    assert res.rows["leaky"].missing_subsets == 0
    # at a common class mix: 0.24 and 0.36 -> +30 pp, sd 8.485 pp, se 6 pp
    mh = res.rows["leaky"].within_class
    assert mh.n_pairs == 2 and mh.diff == pytest.approx(0.30)
    assert mh.lo == pytest.approx(0.30 - 12.706205 * 0.06, abs=1e-5)  # t(0.975, 1) = 12.706; hi clipped at 1
    assert res.rows["leaky"].classes_left_out == ("Fear",)
    assert res.rows["official"].within_class.n == 0  # no per-class counts recorded


def test_leak_section_and_duplicate_aware_column(leak_exp: Path):
    report = build_report(leak_exp).read_text()
    sect = section(report, "Leakage audit")
    leaky = row(sect, "leaky")
    assert leaky[2:] == ["2", "14.29", "82.00 [56.59, 100.00]", "82.00 [56.59, 100.00]", "4123",
                         "96.00 [83.29, 100.00]", "96.00 [83.29, 100.00]", "2170", "54.00 [28.59, 79.41]",
                         "54.00 [28.59, 79.41]", "+42.00 pp [+29.29, +54.71], paired p=0.0152, d_z=+29.70",
                         "+30.00 pp [-46.24, +100.00], paired p=0.1257, d_z=+3.54"]
    assert row(sect, "official")[-1] == "—"
    assert row(sect, "official")[3] == f"{100 * 879 / 3589:.2f}"  # the unbalanced official PrivateTest
    assert row(sect, "control")[4] == "59.00 [46.29, 71.71]"
    assert "leaky − control, full test accuracy): +23.00 pp [+10.29, +35.71]" in sect
    assert "paired t (2 shared seeds)" in sect and "macro recall: +26.00 pp" in sect
    assert "Within the leaky run, accuracy on copied minus not-copied test faces: +42.00 pp" in sect
    assert ("The same at a common class mix (each class's copied minus not-copied accuracy, Mantel-Haenszel "
            "weighted; Fear left out, absent from one subset): "
            "+30.00 pp [-46.24, +100.00]") in sect
    # its strata, pooled over the two seeds: Angry copied 17/20, not copied 11/20; Fear copied only
    strata = sect.split("Per class, leaky run")[1]
    assert row(strata, "Angry") == ["Angry", "10", "85.00", "10", "55.00", "+30.00"]
    assert row(strata, "Fear") == ["Fear", "5", "100.00", "0", "—", "—"]
    assert "Per class, control run" not in sect  # the control's trials record no per-class counts
    assert "mixes a different class mix" in sect and "14.29%" in sect
    assert "(figures/leak.png)" in report and (leak_exp / "figures" / "leak.png").exists()
    # the duplicate-aware figure: test accuracy on faces with no copy in train, beside the full-set figure
    main = section(report, "Results per variant")
    official = row(main, "optimized")  # the default data.balance=none stays out of the label
    assert official[4] == "61.00 ± 1.41 [48.29, 73.71]" and official[5] == "60.00 ± 1.41 [47.29, 72.71]"
    # the claims use the unbalanced official run, never the oversampled control
    claim5 = evaluate_claims(group_variants(load_experiment(leak_exp)))[4]
    assert claim5.ours.startswith("test 61.00")


class _Trial:  # just what the per-class reader uses of report_load.Trial
    def __init__(self, copy: dict):
        self.subsets = {"copy_in_train": copy}

    def split_metrics(self, split: str) -> dict:
        return {"subsets": self.subsets}


def test_malformed_per_class_counts_count_as_not_recorded():
    from sweep.report_leak import _class_counts

    good = {"per_class_n": [2, 1, 0, 0, 0, 0, 0], "per_class_correct": [1, 1, 0, 0, 0, 0, 0]}
    assert _class_counts(_Trial(good), "copy_in_train") == (good["per_class_n"], good["per_class_correct"])
    assert _class_counts(_Trial(good), "no_copy_in_train") is None
    for bad in ({"per_class_n": [2, 1], "per_class_correct": [1, 1]},  # not one count per class
                {"per_class_n": [2, 1, 0, 0, 0, 0, 0], "per_class_correct": [3, 1, 0, 0, 0, 0, 0]},  # 3 of 2 right
                {"per_class_n": [2, -1, 0, 0, 0, 0, 0], "per_class_correct": [1, 0, 0, 0, 0, 0, 0]},
                {"per_class_n": "2,1", "per_class_correct": [1, 1, 0, 0, 0, 0, 0]}):
        assert _class_counts(_Trial(bad), "copy_in_train") is None
