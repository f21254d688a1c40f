"""Grids, profiles and the flat-to-typed trial config: no Ray needed."""
import math
import sys
from pathlib import Path

import pytest

from sweep.config import ConfigError, TrialConfig, flatten_params
from sweep.grid import GridError, builtin_grids, load_grid
from sweep.profiles import PROFILES
from sweep.run import UsageError, build_parser, check_flags, main, make_plan, parse_sets, resolve_seeds, with_models

REPO_GRIDS = Path(__file__).resolve().parents[1] / "sweep" / "grids"


def test_builtin_grids_load_and_name_the_study_variants():
    assert {"ablation", "search"} <= set(builtin_grids())
    ablation = load_grid("ablation")
    assert ablation.scientific["model.name"] == ["baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized"]
    points = ablation.points([0, 1, 2])
    assert len(points) == 5 * 3 + 2  # the leaky audit trial and its control (first seed only) + variants x seeds
    assert points[0] == {"model.name": "baseline", "data.protocol": "leaky-oversample-before-split", "seed": 0}
    # seed-major: every variant's seed 0 before any seed 1, so a sweep stopped early keeps whole paired sets
    assert [(p["model.name"], p["seed"]) for p in points[2:8]] == [
        ("baseline", 0), ("no_batchnorm", 0), ("no_dropout", 0), ("fewer_layers", 0), ("optimized", 0), ("baseline", 1)]
    search = load_grid("search")
    assert set(search.search["space"]) == {"model.l2", "model.dropout"}
    stronger = load_grid("stronger")
    assert stronger.points([0, 1]) == [{"model.name": "vgg_fer", "seed": 0}, {"model.name": "vgg_fer", "seed": 1}]
    assert stronger.fixed == ablation.fixed and stronger.nuisance == ablation.nuisance  # comparable runs


def _plan(*argv):
    args = build_parser().parse_args(["--data", "synthetic", "--max-concurrent", "1", *argv])
    args.command = "test"
    return make_plan(args, *check_flags(args))


def test_the_resolved_grid_is_the_grid_file_plus_the_flags_and_nothing_else(tmp_path):
    study = load_grid("ablation").scientific["model.name"]
    for profile in PROFILES:  # a profile sets the budget, never the variants
        plan = _plan("--profile", profile, "--storage-path", str(tmp_path))
        assert plan.grid == load_grid("ablation")
        assert sorted({c.model.name for c in plan.configs}) == sorted(study)
        assert len(plan.configs) == len(study) * PROFILES[profile].seeds + 2
    plan = _plan("--profile", "quick", "--models", "+vgg_fer_small", "--seeds", "2", "--storage-path", str(tmp_path))
    assert plan.grid.scientific["model.name"] == study + ["vgg_fer_small"]
    assert [c.model.name for c in plan.configs].count("vgg_fer_small") == 2
    plan = _plan("--grid", "ablation", "--models", "baseline,no_dropout", "--profile", "settle", "--epochs", "7",
                 "--set", "train.lr=0.003", "--storage-path", str(tmp_path))
    assert plan.grid.scientific == {"model.name": ["baseline", "no_dropout"]}
    assert {(c.train.epochs, c.train.lr, c.data.input_size) for c in plan.configs} == {(7, 0.003, 32)}  # flag > profile
    search = load_grid("search")  # the grid's num_samples beats the profile's; the flag beats both
    assert _plan("--grid", "search", "--profile", "smoke", "--storage-path", str(tmp_path)).n_trials == \
        search.search["num_samples"]
    assert _plan("--grid", "search", "--profile", "smoke", "--num-samples", "3",
                 "--storage-path", str(tmp_path)).n_trials == 3


def test_models_flag_replaces_or_extends_the_model_axis_and_refuses_nonsense():
    ablation = load_grid("ablation")
    study = ablation.scientific["model.name"]
    assert with_models(ablation, None) == ablation
    assert with_models(ablation, "+vgg_fer").scientific["model.name"] == study + ["vgg_fer"]
    assert with_models(ablation, "optimized").scientific["model.name"] == ["optimized"]
    for spec, msg in [("nope", "unknown model 'nope'"), ("+baseline", "listed twice"), (",", "comma list"),
                      ("baseline,baseline", "listed twice")]:
        with pytest.raises(UsageError, match=msg):
            with_models(ablation, spec)
    with pytest.raises(UsageError, match="no model.name axis"):
        with_models(load_grid("search"), "baseline")


def test_trial_config_from_flat_types_values_and_merges_variant():
    cfg = TrialConfig.from_flat({"train.epochs": "3", "data.input_size": 48, "train.lr": "0.01",
                                 "variant": {"model.name": "optimized", "seed": 2, "model.l2": 0.001}})
    assert cfg.seed == 2 and cfg.train.epochs == 3 and cfg.train.lr == 0.01
    assert cfg.model.name == "optimized" and cfg.model.overrides == {"l2": 0.001}
    assert cfg.data.input_size == 48
    assert flatten_params({"a": 1, "variant": {"b": 2}}) == {"a": 1, "b": 2}


@pytest.mark.parametrize("flat, message", [
    ({"train.lrr": 0.1}, "unknown key 'train.lrr'"),
    ({"model.widthz": 3}, "unknown key 'model.widthz'"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"data.protocol": "random"}, "data.protocol: unknown value 'random'"),
    ({"train.epochs": "many"}, "train.epochs: 'many' is not a valid int"),
    ({"model.name": "resnet9000"}, "resnet9000"),
])
def test_bad_keys_and_values_name_themselves(flat, message):
    with pytest.raises((ConfigError, KeyError, ValueError)) as err:
        TrialConfig.from_flat(flat)
    assert message in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("scientific:\n  model.name: [baseline]\nbogus: 1\n", "unknown top-level key 'bogus'"),
    ("scientific:\n  model.nam: [baseline]\n", "unknown key 'model.nam'"),
    ("scientific:\n  model.name: baseline\n", "scientific.model.name must be a non-empty list"),
    ("scientific: [1, 2\n", "invalid YAML"),
    ("fixed:\n  train.lr: 0.1\n", "needs 'scientific' axes"),
    ("search:\n  space:\n    model.l2: {gaussian: [0, 1]}\n", "search.space.model.l2: expected one of"),
    ("search:\n  space:\n    model.l2: {loguniform: [1, 0.1]}\n", "low < high"),
])
def test_bad_grid_files_give_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(GridError) as err:
        load_grid(str(path))
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_rejects_bad_grid_and_flags_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scientific:\n  model.name: [nope]\n")
    assert main(["--grid", str(bad), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and "nope" in err
    assert main(["--grid", "nosuchgrid", "--data", "synthetic"]) == 2
    assert "valid: ablation" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--profile", "huge"])
    assert exit_.value.code == 2
    (tmp_path / "runs" / "taken").mkdir(parents=True)  # refused before Ray starts, so this test needs no Ray
    assert main(["--data", "synthetic", "--storage-path", str(tmp_path / "runs"), "--name", "taken"]) == 2
    assert "--name taken: " in (err := capsys.readouterr().err) and "already exists; pass --resume" in err


def test_missing_dataset_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # none of the default locations exist from here
    monkeypatch.delenv("FER2013_PATH", raising=False)
    import sweep.run as run

    monkeypatch.setattr(run, "DEFAULT_DATA", ("data/fer2013/icml_face_data.csv.gz",))
    assert main(["--grid", "ablation"]) == 2
    err = capsys.readouterr().err
    assert "FER-2013 not found" in err and "--data synthetic" in err and "Kaggle" in err


def test_seeds_and_sets_parsing():
    assert resolve_seeds(None, 3) == [0, 1, 2]
    assert resolve_seeds("2", 3) == [0, 1]
    assert resolve_seeds("0,5,7", 1) == [0, 5, 7]
    with pytest.raises(UsageError, match="--seeds x"):
        resolve_seeds("x", 1)
    assert parse_sets(["train.lr=0.0005", "data.standardize=true"]) == {"train.lr": 0.0005, "data.standardize": True}
    with pytest.raises(UsageError, match="--set train.lr: expected KEY=VALUE"):
        parse_sets(["train.lr"])


def test_rank_share_gives_ddp_ranks_equal_disjoint_shares():
    import numpy as np

    from sweep.trial import _rank_share

    x, y = np.arange(11 * 4).reshape(11, 2, 2), np.arange(11)
    shares = [_rank_share(x, y, r, 3) for r in range(3)]
    assert [len(sy) for _, sy in shares] == [3, 3, 3]  # 11 // 3 * 3 = 9 faces, 2 left over
    assert sorted(np.concatenate([sy for _, sy in shares]).tolist()) == list(range(9))
    assert all((sx[:, 0, 0] // 4 == sy).all() for sx, sy in shares)  # images stay with their labels
    assert _rank_share(x, y, 0, 1)[1] is y


def _grid_file(tmp_path, text: str):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return path


def test_tune_block_is_validated_and_tuned_values_reach_their_points(tmp_path):
    from sweep.grid import on_edge, scientific_points, with_tuned

    good = load_grid(str(_grid_file(tmp_path, "scientific:\n  model.name: [baseline, optimized]\n"
                                              "audit:\n  - {model.name: baseline, data.balance: oversample}\n"
                                              "tune:\n  space:\n    train.lr: {choice: [0.0003, 0.001, 0.003]}\n"
                                              "  epochs: 2\n  seed: 9\n")))
    assert scientific_points(good) == [{"model.name": "baseline"}, {"model.name": "optimized"}]
    chosen = [{"point": {"model.name": "baseline"}, "values": {"train.lr": 0.003}},
              {"point": {"model.name": "optimized"}, "values": {"train.lr": 0.0003}}]
    pts = with_tuned(good.points([0, 1]), chosen, good)
    assert [p["train.lr"] for p in pts] == [0.003, 0.003, 0.0003, 0.003, 0.0003]  # the audit takes baseline's
    assert on_edge({"choice": [0.0003, 0.001, 0.003]}, 0.003) and not on_edge({"choice": [0.0003, 0.001, 0.003]}, 0.001)
    assert on_edge({"loguniform": [1e-4, 1e-2]}, 1.1e-4) and not on_edge({"loguniform": [1e-4, 1e-2]}, 1e-3)
    bad = {
        "tune:\n  space:\n    train.lr: {choice: []}\n": "choice needs a non-empty list",
        "tune:\n  space:\n    train.lr: {loguniform: [0, 1]}\n": "loguniform needs low > 0",
        "tune:\n  space:\n    model.name: {choice: [baseline]}\n": "cannot be a scientific axis",
        "tune:\n  space:\n    train.lr: {choice: [0.001]}\n  epochs: 0\n": "tune.epochs must be an integer >= 1",
        "tune:\n  space:\n    train.nope: {choice: [1]}\n": "train.nope",
        "tune:\n  space:\n    train.lr: {choice: [0.001]}\n  budget: 3\n": "unknown key tune.budget",
    }
    for text, message in bad.items():
        with pytest.raises(GridError, match=message):
            load_grid(str(_grid_file(tmp_path, "scientific:\n  model.name: [baseline]\n" + text)))


def test_seeds_must_be_distinct_non_negative_integers():
    assert resolve_seeds("0,3,7", 1) == [0, 3, 7] and resolve_seeds(None, 2) == [0, 1]
    # one seed alone (a count of 2 would be seeds 0 and 1), a range, ranges in a list
    assert resolve_seeds("2,", 1) == [2] and resolve_seeds("2-2", 1) == [2]
    assert resolve_seeds("3-5", 1) == [3, 4, 5] and resolve_seeds("0,3-4", 1) == [0, 3, 4]
    for spec, message in (("3,3", "seed 3 is listed more than once"), ("0,-1", "must be >= 0"),
                          ("1.5", "expected a count"), ("5-3", "the range 5-3 is empty"),
                          ("2-4,3", "seed 3 is listed more than once"), (",", "at least one seed")):
        with pytest.raises(UsageError, match=message):
            resolve_seeds(spec, 1)


def test_bad_flags_are_refused_before_ray_starts(capsys):
    import ray

    for argv, message in ((["--seeds", "2,2"], "listed more than once"), (["--epochs", "0"], "must be >= 1"),
                          (["--set", "train.nope=1"], "train.nope")):
        assert main(["--grid", "ablation", "--data", "synthetic", "--profile", "smoke", *argv]) == 2
        assert not ray.is_initialized(), f"{argv}: refused only after Ray had started"
        assert message in capsys.readouterr().err


def test_name_must_be_a_plain_folder_and_resume_needs_a_readable_experiment(tmp_path, capsys):
    import ray

    base = ["--grid", "ablation", "--data", "synthetic", "--profile", "smoke", "--storage-path", str(tmp_path)]
    for name in ("../x", "/abs", "a/b", ".."):
        assert main([*base, "--name", name]) == 2
        assert "plain folder name" in capsys.readouterr().err
    assert main([*base, "--name", "nope", "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()  # no stub left behind to block a fresh run
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep_meta.json").write_text("{not json")
    before = (tmp_path / "bad" / "sweep_meta.json").read_bytes()
    assert main([*base, "--name", "bad", "--resume"]) == 2
    assert "unreadable" in capsys.readouterr().err
    assert (tmp_path / "bad" / "sweep_meta.json").read_bytes() == before
    assert not ray.is_initialized()


def test_quiet_console_sends_rays_asides_to_the_log_and_keeps_everything_else(tmp_path):
    import io

    from sweep.console import QuietStream

    term, log = io.StringIO(), io.StringIO()
    q = QuietStream(term)
    q.write("plan: grid ablation\n")
    q.write("\x1b[33m(raylet)\x1b[0m WARNING: 8 PYTHON worker processes have been started\n")
    q.write("(RayTrainWorker pid=4242) a worker's line\n")
    q.attach(log)  # lines held until the experiment folder exists are written first
    q.write("Traceback (most recent call last):\n")
    q.write("error: a real one")
    q.write(" (split across writes)\n")
    q.write("(pid=7) late aside\n")
    assert term.getvalue() == ("plan: grid ablation\nTraceback (most recent call last):\n"
                               "error: a real one (split across writes)\n")
    assert log.getvalue().splitlines() == ["\x1b[33m(raylet)\x1b[0m WARNING: 8 PYTHON worker processes have been "
                                           "started", "(RayTrainWorker pid=4242) a worker's line", "(pid=7) late aside"]
    # Tune pickles objects holding sys.stdout (callbacks, experiment state): the filter unpickles as the
    # receiving process's own stream instead of failing on the open files inside it
    from ray import cloudpickle

    holder = {"out": QuietStream(open(tmp_path / "o.txt", "w"), "stdout")}
    holder["out"].attach(open(tmp_path / "l.txt", "a"))
    assert cloudpickle.loads(cloudpickle.dumps(holder))["out"] is sys.stdout


def test_plan_counts_the_epochs_asha_leaves_not_every_samples_full_run():
    from sweep.estimate import asha_expected

    # 16 samples, 10 epochs, rungs at 1, 2, 4, 8 keeping half: 16 + 8 + 4x2 + 2x4 + 1x2 = 42 epochs, 1 of 16 finishes
    epochs, finishing = asha_expected(10, grace=1, reduction=2)
    assert 16 * epochs == pytest.approx(42) and finishing == pytest.approx(1 / 16)
    # rungs 1, 3, 9 keeping a third: 27 + 9x2 + 3x6 + 1x1 = 64 epochs for 27 samples
    assert 27 * asha_expected(10, grace=1, reduction=3)[0] == pytest.approx(64)
    assert asha_expected(10, grace=2, reduction=2) == (4.25, 0.125)  # rungs 2, 4, 8
    assert asha_expected(1, grace=1, reduction=2) == (1.0, 1.0)  # no rung below the last epoch: nothing stopped


def test_a_search_records_the_samples_and_the_seed_it_runs(tmp_path):
    import json

    from sweep.run import record_meta

    plan = _plan("--grid", "search", "--num-samples", "5", "--profile", "settle", "--storage-path", str(tmp_path),
                 "--name", "s")
    record_meta(plan)
    meta = json.loads((tmp_path / "s" / "sweep_meta.json").read_text())
    assert meta["search"]["num_samples"] == 5 and meta["search"]["space"]  # the flag, not the grid file's 16
    assert meta["seeds"] == [0]  # the settle profile's five seeds, but a search trains every sample at one
    # the first sample is the optimized CNN's own setting (sweep/grids/search.yaml leaves both keys to the model)
    assert meta["search"]["default"] == {"model.l2": 1e-4, "model.dropout": 0.5}
    plan = _plan("--grid", "search", "--set", "model.dropout=0.75", "--storage-path", str(tmp_path))
    assert plan.search_default is None  # outside the range 0..0.7: nothing to start from


@pytest.mark.parametrize("path", sorted((REPO_GRIDS / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_grid_plans(path, tmp_path):
    """The example grids the README points users at resolve to trial configs (keys and values checked)."""
    grid = load_grid(str(path))
    plan = _plan("--grid", str(path), "--profile", "smoke", "--seeds", "2", "--storage-path", str(tmp_path))
    n_points = math.prod(len(values) for values in grid.scientific.values())
    assert len(plan.configs) == n_points * 2 + len(grid.audit or [])
    for key, value in grid.fixed.items():
        assert {flatten_params(c.to_flat())[key] for c in plan.configs} == {value}
