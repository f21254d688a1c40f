"""Multi-node behaviour on real Ray clusters started on loopback.

- the helper starts two nodes, runs a task on each, and leaves no process behind even when the
  test body raises;
- a smoke ablation sweep (`python -m sweep.run ... --address`) uses both nodes;
- killing the worker node mid-sweep loses no trial: the sweep finishes, every trial complete,
  the interrupted one resumed on the surviving node, and report.md lists them all;
- Ray's fake multi-node autoscaler (cluster/fake_multinode.yaml) launches worker nodes that join,
  scales up on the sweep's demand, and the sweep completes on them.

Each cluster node gets 1 CPU and its own temp dir; everything is killed by process group
(tests/ray_cluster.py), never `ray stop`. Slow (~1-2 min per sweep test on 2 cores):

    .venv/bin/pytest -m ray tests/test_multinode.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_cluster import FAST_SNAPSHOTS, LoopbackCluster, kill_pids, pids_of, run_cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
FAKE_YAML = ROOT / "cluster" / "fake_multinode.yaml"


def smoke_sweep(grid: str = "ablation") -> list[str]:
    return [sys.executable, "-m", "sweep.run", "--grid", grid, "--profile", "smoke", "--data", "synthetic"]

# Generous: a 6-trial smoke sweep took ~4.5 min on 2 cores shared with other jobs (load ~16), ~1.5 min idle.
SWEEP_TIMEOUT_S = 420
# The node-loss sweep trains longer than smoke (8 epochs on all 700 synthetic training faces, ~3-6 s
# an epoch here) and the worker node is killed only while its trial is at epoch <= 4: on a loaded
# machine result.json trails the Train worker by several seconds. With 2 epochs of 1.5 s left (the
# first version) the trial could finish before the kill landed, and with 512 faces, 6 epochs and
# epoch <= 2 a trial was once never seen in time.
EPOCHS_LOSS = 8
KILL_BY_EPOCH = 4
LIMIT_LOSS = 1024  # more than the 700 synthetic training faces: all of them

# Detect a dead node in ~3 s instead of Ray's default ~15 s (period x threshold), so node loss
# is noticed while the sweep is still running.
FAST_HEALTH_CHECK = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


def expected_trials(grid_spec: str = "ablation") -> int:
    """Trials of `--grid <grid_spec> --profile smoke`: grid points for the smoke seeds + audit trials."""
    from sweep.grid import load_grid
    from sweep.profiles import PROFILES

    grid = load_grid(grid_spec)
    return len(grid.points(list(range(PROFILES["smoke"].seeds))))


def mini_ablation(tmp_path: Path, n_variants: int = 3) -> str:
    """The ablation grid cut to its first `n_variants` models and no audit trial (3 trials, not 6):
    same file format and code path, half the wall time for the slower cluster tests."""
    import yaml
    from sweep.grid import load_grid

    cfg = yaml.safe_load(Path(load_grid("ablation").path).read_text())
    cfg["scientific"]["model.name"] = cfg["scientific"]["model.name"][:n_variants]
    cfg.pop("audit", None)
    path = tmp_path / "mini_ablation.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def trial_dirs(exp: Path) -> list[Path]:
    """Tune trial folders of an experiment (those with params.json; Train's own runs live elsewhere)."""
    return sorted(p.parent for p in exp.glob("*/params.json"))


def result_rows(trial: Path) -> list[dict]:
    path = trial / "result.json"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            pass
    return rows


def epoch_rows(trial: Path) -> list[dict]:
    """result.json rows of training epochs (the last row, the final evaluation, has no node_id)."""
    return [r for r in result_rows(trial) if "epoch_s" in r]


def sweep_env(cluster: LoopbackCluster) -> dict[str, str]:
    # The driver imports this repo's packages; PYTHONPATH in case the venv's editable install is stale.
    return cluster.env | {"PYTHONPATH": str(ROOT) + os.pathsep + cluster.env.get("PYTHONPATH", "")}


def assert_sweep_complete(exp: Path, out: str, grid_spec: str = "ablation") -> list[Path]:
    """Every trial has final.json and epoch rows with a node_id; report.md lists them all."""
    n = expected_trials(grid_spec)
    trials = trial_dirs(exp)
    assert len(trials) == n, f"{len(trials)} trial folders in {exp}, expected {n}\n{out[-3000:]}"
    unfinished = [t.name for t in trials if not (t / "final.json").exists()]
    assert not unfinished, f"trials without final.json: {unfinished}\n{out[-3000:]}"
    for t in trials:
        rows = epoch_rows(t)
        assert rows and all(r.get("node_id") for r in rows), f"{t.name}: epoch rows without node_id"
    report = exp / "report.md"
    assert report.exists(), f"no report.md in {exp}\n{out[-3000:]}"
    text = report.read_text()
    assert f"- trials: {n} ({n} completed)" in text, [ln for ln in text.splitlines() if ln.startswith("- trials")]
    return trials


def node_ids_of(trials: list[Path]) -> set[str]:
    return {r["node_id"] for t in trials for r in epoch_rows(t)}


# -------------------------------------------------------------------------------------------------

def test_cluster_helper_runs_tasks_on_both_nodes_and_cleans_up_after_failure():
    cluster = LoopbackCluster()
    with pytest.raises(RuntimeError, match="deliberate"):
        with cluster:
            head = cluster.start_head(num_cpus=1, resources={"driver_slot": 2})
            worker = cluster.add_worker(num_cpus=1)
            cluster.wait_for_nodes(2, timeout_s=120)
            ids = {cluster.node_id(head), cluster.node_id(worker)}
            # A 1-CPU task pinned to each node, from a separate driver process (keeps this one Ray-free).
            code = (
                "import ray, sys, json\n"
                "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as A\n"
                f"ray.init(address='{cluster.address}', log_to_driver=False)\n"
                "f = ray.remote(num_cpus=1)(lambda: ray.get_runtime_context().get_node_id())\n"
                "ids = sys.argv[1:]\n"
                "print(json.dumps(ray.get([f.options(scheduling_strategy=A(i, soft=False)).remote() for i in ids])))\n"
            )
            res = run_cli([sys.executable, "-c", code, *sorted(ids)], cluster.env, timeout_s=90)
            assert res.returncode == 0, res.stdout[-3000:]
            assert set(json.loads(res.stdout.strip().splitlines()[-1])) == ids
            assert head.pids() and worker.pids()
            raise RuntimeError("deliberate failure inside the test body")
    assert cluster.leftover_pids() == []
    assert not cluster.root.exists()


@pytest.fixture
def two_nodes():
    with LoopbackCluster() as cluster:
        head = cluster.start_head(num_cpus=1, resources={"driver_slot": 2}, system_config=FAST_HEALTH_CHECK)
        worker = cluster.add_worker(num_cpus=1)
        cluster.wait_for_nodes(2, timeout_s=120)
        yield cluster, head, worker
    assert cluster.leftover_pids() == [], "Ray processes survived the teardown"


def test_smoke_sweep_uses_both_nodes(two_nodes, tmp_path):
    cluster, head, worker = two_nodes
    head_id, worker_id = cluster.node_id(head), cluster.node_id(worker)
    grid = mini_ablation(tmp_path)
    res = run_cli(smoke_sweep(grid) + ["--address", cluster.address, "--storage-path", str(tmp_path),
                                       "--name", "two"],
                  sweep_env(cluster), timeout_s=SWEEP_TIMEOUT_S, cwd=ROOT, log=tmp_path / "sweep.log")
    assert res.returncode == 0, res.stdout[-5000:] + cluster.logs_tail()
    trials = assert_sweep_complete(tmp_path / "two", res.stdout, grid)
    assert node_ids_of(trials) == {head_id, worker_id}


def test_worker_node_loss_mid_sweep_loses_no_trial(two_nodes, tmp_path):
    cluster, head, worker = two_nodes
    head_id, worker_id = cluster.node_id(head), cluster.node_id(worker)
    exp = tmp_path / "loss"
    log = tmp_path / "sweep.log"
    grid = mini_ablation(tmp_path)
    args = smoke_sweep(grid) + ["--epochs", str(EPOCHS_LOSS), "--set", f"data.limit_per_split={LIMIT_LOSS}",
                                "--address", cluster.address,
                          "--storage-path", str(tmp_path), "--name", "loss"]
    with open(log, "w") as fh:
        # Snapshots every 0.5 s: the poll below sees a trial mid-way (FAST_SNAPSHOTS says why).
        env = sweep_env(cluster) | FAST_SNAPSHOTS
        sweep = subprocess.Popen(args, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        # Kill the worker node while a trial is training there: it has reported an epoch from
        # the worker (so a checkpoint exists) but has not finished.
        victim = None
        seen = {}  # (trial, last epoch, node) -> seconds since start: in the failure message
        t_start = time.monotonic()
        deadline = t_start + SWEEP_TIMEOUT_S / 2
        while victim is None and time.monotonic() < deadline and sweep.poll() is None:
            for t in trial_dirs(exp) if exp.exists() else []:
                rows = epoch_rows(t)
                if rows:
                    seen.setdefault((t.name[:22], rows[-1]["epoch"], rows[-1].get("node_id", "")[:6]),
                                    round(time.monotonic() - t_start, 1))
                if (rows and rows[-1].get("node_id") == worker_id and rows[-1]["epoch"] <= KILL_BY_EPOCH
                        and not (t / "final.json").exists()):
                    victim = t
                    break
            time.sleep(0.2)
        assert victim is not None, (f"no trial was seen mid-training on the worker node {worker_id[:6]}: {seen}\n"
                                    + log.read_text()[-4000:])
        epochs_before = [r["epoch"] for r in epoch_rows(victim)]
        killed = cluster.kill_node(worker)
        assert killed
        try:
            rc = sweep.wait(timeout=SWEEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = None
        out = log.read_text()
        assert rc == 0, f"sweep rc={rc} after the worker node was killed\n{out[-5000:]}\n{cluster.logs_tail()}"
    finally:
        kill_pids(pids_of({sweep.pid}), grace_s=2)

    assert [n["node_id"] for n in cluster.alive_nodes()] == [head_id]
    trials = assert_sweep_complete(exp, out, grid)
    rows = epoch_rows(victim)
    # The interrupted trial went on on the head, from its checkpoint (not from epoch 1 again).
    after = [r for r in rows if r["node_id"] == head_id]
    assert after, f"{victim.name}: no epoch rows from the surviving node: {rows}"
    assert after[0]["epoch"] > min(epochs_before), (
        f"{victim.name}: restarted from scratch (epochs {[r['epoch'] for r in rows]}, before the kill {epochs_before})")
    assert worker_id in node_ids_of(trials)


def test_fake_autoscaler_cluster_runs_a_sweep(tmp_path):
    with LoopbackCluster() as cluster:
        # No CPU on the head (like cluster.yaml's GPU work): every Train worker needs an autoscaled node.
        cluster.start_fake_autoscaling_head(FAKE_YAML, num_cpus=0, resources={"driver_slot": 2})
        nodes = cluster.wait_for_nodes(2, timeout_s=120)  # head + min_workers: 1
        fake_workers = {n["node_id"] for n in nodes if n["resources"].get("CPU", 0) == 1}
        assert len(fake_workers) == 1, nodes
        # Two trials at once need two 1-CPU nodes: the autoscaler must launch the second on demand.
        grid = mini_ablation(tmp_path)
        res = run_cli(smoke_sweep(grid) + ["--address", cluster.address, "--storage-path", str(tmp_path),
                                     "--name", "fake", "--max-concurrent", "2"],
                      sweep_env(cluster), timeout_s=SWEEP_TIMEOUT_S, cwd=ROOT, log=tmp_path / "sweep.log")
        assert res.returncode == 0, res.stdout[-5000:] + cluster.logs_tail()
        trials = assert_sweep_complete(tmp_path / "fake", res.stdout, grid)
        workers_now = {n["node_id"] for n in cluster.alive_nodes() if n["resources"].get("CPU", 0) == 1}
        used = node_ids_of(trials)
        assert len(workers_now) == 2, cluster.alive_nodes()
        assert used <= workers_now and len(used) == 2, (used, workers_now)
    assert cluster.leftover_pids() == []


def test_a_local_sweep_beside_another_ray_instance_is_refused_before_it_starts(tmp_path):
    # Two local instances on one machine hang Ray Train (its placement-group cleaner finds "multiple active Ray
    # instances"), so a sweep that would start a second one stops at once and names the way out.
    with LoopbackCluster() as cluster:
        cluster.start_head(num_cpus=1, resources={"driver_slot": 2})
        env = {k: v for k, v in sweep_env(cluster).items() if k != "RAY_ADDRESS"}  # no --address: a local start
        res = run_cli(smoke_sweep() + ["--storage-path", str(tmp_path), "--name", "second"], env, timeout_s=120,
                      cwd=ROOT)
    assert res.returncode == 2, res.stdout[-3000:]
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("error: another Ray instance is running on this machine (")
    assert f":{cluster.port}" in line and "--address " in line and "ray stop" in line
    assert not (tmp_path / "second").exists()  # nothing written
