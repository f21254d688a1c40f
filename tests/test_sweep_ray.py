"""End-to-end sweeps on a real local Ray instance (each `python -m sweep.run` starts its own).

Smoke-sized: synthetic faces, 48x48, 2 epochs on 256 faces per split. Each test runs the CLI in a
subprocess, exactly as a user would, and reads back what it wrote.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_cluster import FAST_SNAPSHOTS

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1500)]
STUDY = ["baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized"]


def sweep_cmd(storage, name, *extra):
    return [sys.executable, "-m", "sweep.run", "--profile", "smoke", "--data", "synthetic",
            "--storage-path", str(storage), "--name", name, "--num-cpus", "2", *extra]


def run_sweep(storage, name, *extra, timeout=1200):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(sweep_cmd(storage, name, *extra), capture_output=True, text=True, timeout=timeout, env=env)
    return proc


def trials(exp: Path) -> list[dict]:
    out = []
    for params in sorted(exp.glob("*/params.json")):
        d = params.parent
        p = json.loads(params.read_text())
        flat = {k: v for k, v in p.items() if k != "variant"} | p.get("variant", {})
        rows = [json.loads(l) for l in (d / "result.json").read_text().splitlines() if l.strip()] \
            if (d / "result.json").exists() else []
        final = json.loads((d / "final.json").read_text()) if (d / "final.json").exists() else None
        out.append({"dir": d, "config": flat, "rows": rows, "final": final})
    return out


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    proc = run_sweep(storage, "abl")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    CONSOLE["abl"] = proc.stdout + proc.stderr
    return storage / "abl", proc.stdout


CONSOLE: dict[str, str] = {}  # the smoke ablation's whole console (stdout + stderr)


def test_a_normal_run_prints_no_warnings_or_tracebacks(ablation):
    exp, out = ablation
    console = CONSOLE["abl"]
    assert "plan: grid ablation" in out and "report: " in out  # the sweep's own lines are there
    for noise in ("Warning", "WARNING", "Traceback", "SystemExit", "(raylet)", "(pid=", "INFO"):
        assert noise not in console, f"{noise!r} on the console:\n" + "\n".join(
            line for line in console.splitlines() if noise in line)[:2000]
    # what Ray printed to the driver is kept beside the results, not lost
    assert (exp / "ray_console.log").exists()


def test_smoke_ablation_runs_every_variant_end_to_end(ablation):
    exp, out = ablation
    ts = trials(exp)
    assert sorted(t["config"]["model.name"] for t in ts) == sorted(STUDY + ["baseline", "baseline"])  # + the audit
    assert {t["config"]["data.protocol"] for t in ts} == {"official", "leaky-oversample-before-split"}
    assert sorted(t["config"]["data.balance"] for t in ts) == ["none"] * 6 + ["oversample"]  # the leak's control
    for t in ts:
        assert t["final"] is not None, f"{t['dir']} has no final.json"
        epochs = [r for r in t["rows"] if "train/loss" in r]
        assert [r["epoch"] for r in epochs] == [1, 2]
        for split in ("train", "val", "test"):
            m = t["final"]["metrics"][split]
            assert 0.0 <= m["acc"] <= 1.0 and len(m["per_class"]["f1"]) == 7
            assert sum(map(sum, m["confusion"])) == sum(m["per_class"]["support"])
        assert t["final"]["metrics"]["val"]["acc"] == pytest.approx(max(r["val/acc"] for r in epochs))
        subsets = t["final"]["metrics"]["test"]["subsets"]  # the leak's reach, face by face
        assert subsets["copy_in_train"]["n"] + subsets["no_copy_in_train"]["n"] == sum(
            t["final"]["metrics"]["test"]["per_class"]["support"])
        leaky = t["config"]["data.protocol"] != "official"
        assert (subsets["copy_in_train"]["n"] > 0) == leaky  # synthetic faces have no copies across official splits
    # the selected weights sit in each trial folder and load safely, rebuilt as the same architecture
    from fer_models import load_checkpoint

    model, meta = load_checkpoint(ts[0]["dir"] / "best_model")
    assert meta["model_name"] == ts[0]["config"]["model.name"] and meta["best"]["epoch"] == ts[0]["final"]["best_epoch"]
    assert sum(p.numel() for p in model.parameters()) == ts[0]["final"]["params"]
    # the plan, a line per trial and epoch, the summary and the report path
    assert "plan: grid ablation" in out and "estimated time" in out
    assert out.count(" epoch ") >= 12 and "report: " in out
    report = exp / "report.md"
    assert report.exists() and "no_batchnorm" in report.read_text()
    meta = json.loads((exp / "sweep_meta.json").read_text())
    assert meta["data_audit"]["leaky-oversample-before-split"]["test_exact_copies_in_train_fraction"] > 0


def test_tensorboard_files_hold_scalars_hparams_and_confusion_images(ablation):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    exp, _ = ablation
    t = trials(exp)[0]
    tags = {"scalars": set(), "images": set(), "hparams": False}
    for f in t["dir"].glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        acc.Reload()
        tags["scalars"] |= set(acc.Tags()["scalars"])
        tags["images"] |= set(acc.Tags()["images"])
        try:  # the HParams tab's data: experiment + session start/end summaries
            tags["hparams"] |= "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
        except KeyError:  # this file carries no hparams plugin data (our confusion-image writer)
            pass
    for metric in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
        assert f"ray/tune/{metric}" in tags["scalars"], tags["scalars"]
    assert {"confusion/val", "confusion/test"} <= tags["images"]
    assert tags["hparams"]


def test_search_grid_runs_optuna_trials_and_asha_stops_some_early(tmp_path):
    proc = run_sweep(tmp_path, "search", "--grid", "search", "--num-samples", "6", "--epochs", "4",
                     "--set", "data.limit_per_split=512")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ts = trials(tmp_path / "search")
    assert len(ts) == 6
    l2s = {t["config"]["model.l2"] for t in ts}
    assert len(l2s) == 6 and all(1e-7 <= v <= 1e-2 for v in l2s)
    stopped = [t for t in ts if t["final"] is None]
    finished = [t for t in ts if t["final"] is not None]
    assert stopped and finished, "ASHA should stop at least one trial early and let one finish"
    assert all(max(r.get("epoch", 0) for r in t["rows"]) < 4 for t in stopped)
    meta = json.loads((tmp_path / "search" / "sweep_meta.json").read_text())
    assert meta["search"]["num_samples"] == 6 and meta["seeds"] == [0]  # as run, not the grid file's 16
    # the optimized CNN's own setting is one of the samples (Optuna tries it first)
    default = [t for t in ts if (t["config"]["model.l2"], t["config"]["model.dropout"]) == (1e-4, 0.5)]
    assert len(default) == 1
    # ... and ASHA never stops it: the report's reference trains every epoch and is evaluated once
    assert default[0]["final"] is not None and max(r.get("epoch", 0) for r in default[0]["rows"]) == 4


def test_nuisance_tuning_picks_each_variants_value_on_validation_then_compares_at_it(tmp_path):
    grid = tmp_path / "tuned.yaml"
    grid.write_text("scientific:\n  model.name: [baseline, fewer_layers]\n"
                    "tune:\n  space:\n    train.lr: {choice: [0.0001, 0.01]}\n  epochs: 2\n  seed: 100\n")
    proc = run_sweep(tmp_path, "tuned", "--grid", str(grid), "--seeds", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "tuned"
    chosen = json.loads((exp / "sweep_meta.json").read_text())["tuning"]["chosen"]
    assert [c["point"]["model.name"] for c in chosen] == ["baseline", "fewer_layers"]
    for c, folder in zip(chosen, ("00", "01")):
        tuning = trials(exp / "tuning" / folder)
        assert sorted(t["config"]["train.lr"] for t in tuning) == [0.0001, 0.01]  # every choice once
        for t in tuning:  # validation only: no final evaluation, never a test number
            assert t["config"]["seed"] == 100 and t["final"] is None
            assert not any(k.startswith("final/") for r in t["rows"] for k in r)
        best = max(tuning, key=lambda t: max(r.get("best_val_acc", -1) for r in t["rows"]))
        assert c["values"] == {"train.lr": best["config"]["train.lr"]} and c["on_edge"] == ["train.lr"]
    main_trials = trials(exp)
    assert len(main_trials) == 2
    for t in main_trials:  # each variant trained at its own tuned value, test touched once, at the end
        want = next(c for c in chosen if c["point"]["model.name"] == t["config"]["model.name"])["values"]
        assert t["config"]["train.lr"] == want["train.lr"] and t["config"]["seed"] == 0
        assert t["final"] is not None and sum("final/test/acc" in r for r in t["rows"]) == 1
    report = (exp / "report.md").read_text()
    assert "## Nuisance tuning" in report and "[train.lr" not in report  # a tuned value is not a variant axis


def _interrupt(cmd, env, when, sig, timeout=900) -> list[dict]:
    """Run `cmd` until `when(trials)` holds (polled every 50 ms), send `sig` to its whole process group (the
    driver and the Ray processes it started), and return the trials as the interrupt left them."""
    exp = Path(cmd[cmd.index("--storage-path") + 1]) / cmd[cmd.index("--name") + 1]
    log = exp.parent / f"console-{sig.name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline, hit = time.time() + timeout, False
    try:
        while time.time() < deadline and proc.poll() is None and not hit:
            try:
                hit = exp.exists() and when(trials(exp))
            except ValueError:  # a params.json or result.json caught mid-write
                pass
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert hit, f"the sweep ended (exit {proc.returncode}) or timed out before the interrupt point: " + \
        log.read_text()[-3000:]
    return trials(exp)


def test_resume_after_interrupts_at_several_points_reruns_no_finished_trial(tmp_path):
    """Interrupted twice, at the points that break a naive resume, then resumed to the end:
    1. SIGKILL of the driver and all of Ray right after a trial's final.json appears (Tune may not yet have
       recorded the trial as finished, so resume restarts it: the complete final.json must end it untouched);
    2. Ctrl-C in the middle of a later trial (after an epoch's checkpoint: resume continues from it, and the
       rows it had logged stay: Tune restarts it in a fresh folder, `sweep.progress.KeepTrialRows`).
    Whether Tune had recorded point 1's trial as finished depends on timing, so at the end the case is made
    deterministic: a finished trial is marked running again in Tune's saved state, and a resume must end it from
    its final.json without training."""
    grid = tmp_path / "three.yaml"
    grid.write_text("scientific:\n  model.name: [fewer_layers, baseline, no_dropout]\n")
    # Snapshots every 0.5 s from the first run on (FAST_SNAPSHOTS): the polls below see a trial mid-way.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", **FAST_SNAPSHOTS}
    # All the synthetic faces (1,024 > the smoke profile's 256): trials long enough to be caught mid-way.
    cmd = sweep_cmd(tmp_path, "res", "--grid", str(grid), "--max-concurrent", "1", "--epochs", "3",
                    "--set", "data.limit_per_split=1024")
    exp = tmp_path / "res"

    first = _interrupt(cmd, env, lambda ts: any(t["final"] for t in ts), signal.SIGKILL)
    done1 = {t["dir"].name: (t["dir"] / "final.json").read_bytes() for t in first if t["final"]}
    assert len(done1) == 1, "exactly one trial had finished when the driver was killed"

    def mid_trial(ts):
        return any(t["final"] is None and any("train/loss" in r for r in t["rows"]) for t in ts
                   if t["dir"].name not in done1)
    second = _interrupt(cmd + ["--resume"], env, mid_trial, signal.SIGINT)
    partial = {t["dir"].name: [r["epoch"] for r in t["rows"] if "train/loss" in r] for t in second
               if t["final"] is None and t["dir"].name not in done1 and any("train/loss" in r for r in t["rows"])}
    assert partial, "no trial was interrupted mid-way"
    console = (exp.parent / "console-SIGINT.log").read_text()  # Ctrl-C: the driver says so, and how to go on
    assert "trial(s) unfinished: the sweep was interrupted; the same command with --resume" in console, console[-3000:]
    done2 = {t["dir"].name: (t["dir"] / "final.json").read_bytes() for t in second if t["final"]}
    assert all(done2[name] == body for name, body in done1.items())  # the first resume left it untouched

    proc = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = {t["dir"].name: t for t in trials(exp)}
    assert len(after) == 3 and all(t["final"] for t in after.values())
    for name, body in done2.items():  # finished trials: final.json byte-identical, each epoch trained once
        assert (exp / name / "final.json").read_bytes() == body
        assert [r["epoch"] for r in after[name]["rows"] if "train/loss" in r] == [1, 2, 3]
    for name, epochs in partial.items():  # the interrupted trial kept its rows and continued from its checkpoint
        rows = [r for r in after[name]["rows"] if "train/loss" in r]
        assert [r["epoch"] for r in rows][:len(epochs)] == epochs  # the rows logged before the interrupt stayed
        assert sorted({r["epoch"] for r in rows}) == [1, 2, 3]  # and no epoch is missing
        for e in (1, 2, 3):  # an epoch logged twice is its checkpoint's row reported again, not trained again
            assert all(r == next(q for q in rows if q["epoch"] == e) for r in rows if r["epoch"] == e), e

    # Point 1 for certain: the state a kill between final.json and Tune's record leaves behind.
    finished = sorted(after)[0]
    body = (exp / finished / "final.json").read_bytes()
    _mark_running_in_tune_state(exp, finished)
    proc = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    again = {t["dir"].name: t for t in trials(exp)}
    assert (exp / finished / "final.json").read_bytes() == body  # not evaluated again
    assert [r["epoch"] for r in again[finished]["rows"] if "train/loss" in r] == \
        [r["epoch"] for r in after[finished]["rows"] if "train/loss" in r]  # no epoch trained again
    restarted = again[finished]["rows"][len(after[finished]["rows"]):]  # Tune did start it again: a closing row,
    assert restarted and all("train/loss" not in r for r in restarted), proc.stdout[-3000:]  # and no trained epoch


def _mark_running_in_tune_state(exp: Path, trial_dir: str) -> None:
    """Set one trial's status to RUNNING in the newest experiment state, the one `Tuner.restore` reads."""
    state = max(exp.glob("experiment_state-*.json"))
    saved = json.loads(state.read_text())
    hits = 0
    for entry in saved["trial_data"]:  # [the trial's own JSON state, its runtime metadata]
        trial = json.loads(entry[0])
        if trial["relative_logdir"] == trial_dir:
            assert trial["status"] == "TERMINATED", trial["status"]
            trial["status"] = "RUNNING"
            entry[0], hits = json.dumps(trial), hits + 1
    assert hits == 1, f"{trial_dir} not in {state.name}"
    state.write_text(json.dumps(saved))


def test_killed_worker_is_retried_from_its_checkpoint(tmp_path):
    grid = tmp_path / "one.yaml"
    grid.write_text("scientific:\n  model.name: [optimized]\n")
    # Snapshots every 0.5 s: the rows polled below reach the storage path as they are logged.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", **FAST_SNAPSHOTS}
    cmd = sweep_cmd(tmp_path, "kill", "--grid", str(grid), "--epochs", "5", "--set", "data.limit_per_split=1024")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    exp = tmp_path / "kill"
    killed = None
    try:
        deadline = time.time() + 900
        while time.time() < deadline and killed is None:
            try:
                ts = trials(exp) if exp.exists() else []
            except ValueError:  # a params.json or result.json caught mid-copy
                ts = []
            if ts and any(r.get("epoch", 0) >= 2 for r in ts[0]["rows"]):
                ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
                pids = [int(l.split()[0]) for l in ps.splitlines() if "RayTrainWorker" in l]
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed = pids[0]
                    seen_at_kill = max(r.get("epoch", 0) for r in ts[0]["rows"])
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed, "never found the Train worker to kill"
    assert seen_at_kill < 5, f"the worker was killed after its last epoch ({seen_at_kill}): nothing to retry"
    assert proc.returncode == 0, out[-3000:]
    (t,) = trials(exp)
    assert t["final"] is not None
    epochs = [r["epoch"] for r in t["rows"] if "train/loss" in r]
    assert epochs[-1] == 5 and min(epochs) == 1
    # resumed from the last checkpoint, not from scratch: epoch 1 reported once
    assert epochs.count(1) == 1, epochs


def test_two_worker_trial_trains_with_ddp_on_equal_shares(tmp_path):
    grid = tmp_path / "one.yaml"
    grid.write_text("scientific:\n  model.name: [baseline]\n")
    proc = run_sweep(tmp_path, "ddp", "--grid", str(grid), "--workers-per-trial", "2", "--cpus-per-worker", "1",
                     "--epochs", "1", "--max-concurrent", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 Train worker(s)" in proc.stdout
    (t,) = [t for t in trials(tmp_path / "ddp") if t["config"]["model.name"] == "baseline"]
    (row,) = [r for r in t["rows"] if "train/loss" in r]
    assert row["epoch"] == 1 and 0.0 <= row["val/acc"] <= 1.0
    # the final evaluation runs on rank 0 over whole splits, not one rank's share
    assert sum(t["final"]["metrics"]["train"]["per_class"]["support"]) == 256
    assert sum(t["final"]["metrics"]["test"]["per_class"]["support"]) == 140
