"""Intervals over seeds and faces: sweep.stats.seeds_and_faces and the report's *Uncertainty from the faces*."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sweep import stats
from sweep.report import build_report
from sweep.report_load import load_trial
from tests.test_report_fixtures import new_exp, params, rows, section, write_trial


def test_seeds_and_faces_matches_the_two_way_anova_by_hand():
    # d = a - b = [[1, 0, 0], [1, 0, -1]]: grand 1/6, seed means (1/3, 0), face means (1, 0, -1/2)
    a = [np.array([1, 1, 0]), np.array([1, 0, 0])]
    b = [np.array([0, 1, 0]), np.array([0, 0, 1])]
    fd = stats.seeds_and_faces(a, b)
    # MS_seed = 3 * (1/36 + 1/36) = 1/6; MS_face = 2 * (25 + 1 + 16) / 36 / 2 = 7/6; MS_err = (12/36) / 2 = 1/6
    seed_var, face_var = (1 / 6) / 6, (7 / 6 - 1 / 6) / 6
    assert fd.both.diff == pytest.approx(1 / 6) and fd.n_seeds == 2 and fd.n_faces == 3
    assert fd.face_share == pytest.approx(face_var / (seed_var + face_var))  # 6/7
    assert fd.both.df == 1  # the seeds' degrees of freedom
    half = float(stats.st.t.ppf(0.975, 1)) * math.sqrt(seed_var + face_var)
    assert (fd.both.lo, fd.both.hi) == pytest.approx((1 / 6 - half, 1 / 6 + half))
    # the seeds-only part is the paired t-test on the per-seed accuracies
    ref = stats.paired([x.mean() for x in a], [y.mean() for y in b])
    assert (fd.seeds.diff, fd.seeds.lo, fd.seeds.hi, fd.seeds.p) == pytest.approx((ref.diff, ref.lo, ref.hi, ref.p))


def test_no_face_effect_leaves_the_seeds_only_interval():
    # every face's difference averages to the same value over seeds: MS_face < MS_err, the face term is 0
    a = [np.array([1, 0, 1, 0]), np.array([0, 1, 0, 1])]
    b = [np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0])]
    fd = stats.seeds_and_faces(a, b)
    assert fd.face_share == 0.0 and fd.both == fd.seeds
    with pytest.raises(ValueError, match="2"):
        stats.seeds_and_faces(a[:1], b[:1])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _cnn_like(rng, n_seeds, n_faces):
    """Two models whose per-face outcomes are mostly fixed by the face (as a CNN's are): face difficulty
    and a face-specific advantage of a over b, drawn anew each time, then a Bernoulli draw per seed."""
    hard, adv = rng.normal(0, 4, n_faces), rng.normal(0.1, 1.5, n_faces)
    a = [rng.random(n_faces) < _sigmoid(hard + adv) for _ in range(n_seeds)]
    b = [rng.random(n_faces) < _sigmoid(hard) for _ in range(n_seeds)]
    return a, b


def test_covers_the_population_difference_where_the_seeds_only_interval_does_not():
    rng = np.random.default_rng(0)
    hard, adv = rng.normal(0, 4, 2_000_000), rng.normal(0.1, 1.5, 2_000_000)
    truth = float((_sigmoid(hard + adv) - _sigmoid(hard)).mean())  # the difference over the whole population of faces
    reps = 400
    for n_seeds in (2, 6):
        hits_both = hits_seeds = 0
        for _ in range(reps):
            fd = stats.seeds_and_faces(*_cnn_like(rng, n_seeds, 400))
            hits_both += fd.both.lo <= truth <= fd.both.hi
            hits_seeds += fd.seeds.lo <= truth <= fd.seeds.hi
            if fd.seeds.tested:  # (two seeds may differ by exactly the same amount: no seeds-only interval)
                assert fd.both.hi - fd.both.lo >= fd.seeds.hi - fd.seeds.lo - 1e-12  # never the narrower
        print(f"{n_seeds} seeds: coverage over seeds and faces {hits_both / reps:.3f}, seeds only {hits_seeds / reps:.3f}")
        assert hits_both / reps >= 0.95  # nominal 95%, conservative
    assert hits_seeds / reps <= 0.88  # at 6 seeds the faces' share of the variance is missing from it


def _predictions(rng, y_true: np.ndarray, knows: np.ndarray, acc: float) -> dict:
    """A split's `predictions`: each face right as the model `knows` it 80% of the time, else right with
    probability `acc` (so the faces carry part of the difference); wrong ones predicted as the next class."""
    right = np.where(rng.random(len(y_true)) < 0.8, knows, rng.random(len(y_true)) < acc)
    y_pred = np.where(right, y_true, (y_true + 1) % 7)
    return {"y_true": "".join(map(str, y_true)), "y_pred": "".join(map(str, y_pred))}, float(right.mean())


def test_report_section_gives_both_intervals_from_the_trials_predictions(tmp_path):
    rng = np.random.default_rng(1)
    exp = new_exp(tmp_path)
    y = {s: rng.integers(0, 7, 300) for s in ("val", "test")}
    correct = {}
    models = {"baseline": 0.5, "no_dropout": 0.56}
    knows = {(m, s): rng.random(300) < acc for m, acc in models.items() for s in ("val", "test")}
    for seed in range(3):
        for model, acc in models.items():
            preds, accs = {}, {}
            for split in ("val", "test"):
                preds[split], accs[split] = _predictions(rng, y[split], knows[model, split], acc)
            write_trial(exp, f"t_{model}_{seed}", params(model, seed), val=accs["val"], test=accs["test"],
                        predictions=preds)
            correct[model, seed] = load_trial(exp / f"t_{model}_{seed}").predictions("test")[1]
    # fewer_layers without predictions (trials written before they were recorded): compared above, not here
    for seed in range(3):
        write_trial(exp, f"t_fewer_layers_{seed}", params("fewer_layers", seed), val=0.45, test=0.45)
    report = build_report(exp).read_text()
    text = section(report, "Uncertainty from the faces")
    want = stats.seeds_and_faces([correct["no_dropout", s] for s in range(3)],
                                 [correct["baseline", s] for s in range(3)], clip=(-1.0, 1.0))
    (val_row, test_row) = rows(text, "no_dropout")
    assert test_row[1:4] == ["test", "baseline", "3 × 300"]
    assert test_row[4] == f"{100 * want.seeds.diff:+.2f} pp [{100 * want.seeds.lo:+.2f}, {100 * want.seeds.hi:+.2f}]"
    assert test_row[5] == f"{100 * want.both.diff:+.2f} pp [{100 * want.both.lo:+.2f}, {100 * want.both.hi:+.2f}]"
    assert test_row[6] == f"{100 * want.face_share:.0f}%" and want.face_share > 0.5  # the faces matter here
    # the seeds-only interval is the Differences section's paired t (the metrics' accuracies are the predictions')
    diff_row = [r for r in rows(section(report, "Differences from the reference level"), "no_dropout")
                if r[1] == "test"][0]
    assert diff_row[4] == test_row[4]
    assert not rows(text, "fewer_layers")


def test_no_predictions_says_so_and_malformed_ones_are_an_odd_trial(tmp_path):
    exp = new_exp(tmp_path)
    for seed in range(2):
        for model in ("baseline", "no_dropout"):
            write_trial(exp, f"t_{model}_{seed}", params(model, seed), val=0.5, test=0.5)
    d = exp / "t_no_dropout_1"
    final = json.loads((d / "final.json").read_text())
    final["predictions"] = {"test": {"y_true": "0123", "y_pred": "012"}}  # lengths differ
    (d / "final.json").write_text(json.dumps(final))
    assert load_trial(d).predictions("test") is None
    report = build_report(exp).read_text()
    assert "_Not available: no comparison has two or more seeds" in section(report, "Uncertainty from the faces")
    odd = section(report, "Failed, stopped and odd trials")
    assert "t_no_dropout_1" in odd and "predictions test malformed" in odd


def test_a_one_model_run_says_it_compares_nothing_rather_than_that_predictions_are_missing(tmp_path):
    exp = new_exp(tmp_path)
    for seed in range(2):
        write_trial(exp, f"t_baseline_{seed}", params("baseline", seed), val=0.5, test=0.5)
    report = build_report(exp).read_text()
    diffs = section(report, "Differences from the reference level")
    assert "Nothing to compare within this run" in diffs and "`model.name` = baseline" in diffs
    assert "paired t-test" not in diffs  # the method paragraph would describe no row
    faces = section(report, "Uncertainty from the faces")
    assert "Nothing to estimate" in faces and "Not available" not in faces
