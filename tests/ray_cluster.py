"""Throwaway multi-node Ray clusters on loopback for tests, stopped by process group.

Each node is started with `ray start` in a new session, so every daemon it spawns (gcs_server,
raylet, dashboard, agents, Python workers; for a fake-autoscaler head also the fake worker
nodes its monitor launches) shares one process group that we can signal without touching
anybody else's Ray. Never `ray stop`: it kills every Ray process on the machine.

    with LoopbackCluster() as cluster:
        cluster.start_head(num_cpus=1, resources={"driver_slot": 2})
        worker = cluster.add_worker(num_cpus=1)
        cluster.wait_for_nodes(2)
        ...                          # drive it with cluster.address / cluster.env
        cluster.kill_node(worker)    # simulate node loss
    # leaving the block (even on an exception) kills what is left and removes the temp dirs

Linux only (reads /proc). Used by tests/test_multinode.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY_BIN = str(Path(sys.executable).with_name("ray"))

# Ray 2.60 turns on token auth for local clusters; usage stats would try to phone home.
BASE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

# For a test that polls a trial's rows mid-run. Tune's driver writes result.json to a local staging folder and
# copies it to the storage path with each experiment snapshot, at most every 10 s by default: longer than a whole
# trial in these tests, so a trial's rows reached the storage path only once it had finished (CI, 2026-12-04).
# Snapshots every 0.5 s let a poll see a trial mid-way. Set it on a sweep's first run: a resumed run keeps the
# snapshot period saved in the experiment state it resumes (Ray 2.60's TuneController.__setstate__), whatever
# the environment says then.
FAST_SNAPSHOTS = {"TUNE_GLOBAL_CHECKPOINT_S": "0.5"}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (racy by nature; good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie is dead, only unreaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pids_where(pred) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        if pred(pgid=int(fields[2]), cmdline=cmdline):
            out.append(pid)
    return out


def pids_of(pgids: set[int], marker: str | None = None) -> list[int]:
    """Live processes in one of `pgids`, or whose command line mentions `marker` (a temp dir)."""
    me = os.getpid()
    return [
        p
        for p in _pids_where(lambda pgid, cmdline: pgid in pgids or (marker is not None and marker in cmdline))
        if p != me
    ]


def kill_pids(pids: list[int], *, grace_s: float = 5.0) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL whatever is left (gcs/raylet ignore TERM for a while)."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        live = [p for p in pids if _proc_alive(p)]
        if not live:
            return
        for p in live:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_proc_alive(p) for p in live):
            time.sleep(0.1)


@dataclass
class Node:
    """One `ray start` we launched: its process group, temp dir and raylet port (its identity in the GCS)."""

    name: str
    temp_dir: Path
    node_manager_port: int
    pgid: int
    head: bool
    log: Path
    killed: bool = False
    extra_pgids: set[int] = field(default_factory=set)

    def pids(self) -> list[int]:
        return pids_of({self.pgid} | self.extra_pgids, marker=str(self.temp_dir))


class LoopbackCluster:
    """Head + worker nodes on 127.0.0.1, each with its own temp dir, all removed on `stop()`."""

    def __init__(self, root: str | Path | None = None, env: dict[str, str] | None = None):
        # Short root: Ray's unix socket paths live under the temp dir and are limited to 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="rc", dir=root or "/tmp"))
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | BASE_ENV | (env or {})
        self.nodes: list[Node] = []
        self.port: int | None = None
        self.head_env: dict[str, str] = {}

    @property
    def address(self) -> str:
        assert self.port is not None, "start_head() first"
        return f"127.0.0.1:{self.port}"

    # -- start ---------------------------------------------------------------------------------
    def _ray_start(self, name: str, args: list[str], env: dict[str, str], timeout_s: float) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir()
        nm_port = free_port()
        log = self.root / f"{name}.start.log"
        cmd = [
            RAY_BIN, "start", *args,
            "--node-ip-address=127.0.0.1",
            f"--node-manager-port={nm_port}",
            f"--temp-dir={temp_dir}",
            # 0/0: workers bind random free ports (the default 10002-19999 range collides with other clusters here)
            "--min-worker-port=0",
            "--max-worker-port=0",
            "--disable-usage-stats",
        ]
        with open(log, "wb") as fh:
            # New session: `ray start` is the group leader, its daemons inherit the group.
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        node = Node(name, temp_dir, nm_port, pgid=proc.pid, head="--head" in args, log=log)
        self.nodes.append(node)  # before waiting, so stop() cleans up a half-started node too
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        if rc != 0:
            raise RuntimeError(f"`ray start` for node {name!r} failed (rc={rc}):\n{log.read_text()[-3000:]}")
        return node

    def start_head(
        self,
        num_cpus: int = 1,
        resources: dict[str, float] | None = None,
        *,
        autoscaling_config: str | Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        system_config: dict | None = None,
        timeout_s: float = 180,
    ) -> Node:
        """`ray start --head` on a free port; dashboard and agent ports free too (others run Ray here).

        `system_config`: Ray internal settings for the whole cluster (e.g. faster node-death detection).
        """
        self.port = port or free_port()
        # RAY_ADDRESS for every process of this cluster (nodes inherit it from `ray start`): Ray
        # components that look the cluster up themselves (Train V2's PlacementGroupCleaner) otherwise
        # fail with "Found multiple active Ray instances" when other clusters run on this machine.
        self.env["RAY_ADDRESS"] = self.address
        self.head_env = self.env | (env or {})
        args = [
            "--head",
            f"--port={self.port}",
            f"--num-cpus={num_cpus}",
            f"--dashboard-port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        if system_config:
            args.append(f"--system-config={json.dumps(system_config, separators=(',', ':'))}")
        if autoscaling_config:
            args.append(f"--autoscaling-config={autoscaling_config}")
        return self._ray_start("head", args, self.head_env, timeout_s)

    def start_fake_autoscaling_head(
        self,
        config: str | Path,
        num_cpus: int = 0,
        resources: dict[str, float] | None = None,
        timeout_s: float = 180,
    ) -> Node:
        """Head whose autoscaler runs Ray's fake multi-node provider (worker nodes = local raylets).

        Writes a copy of `config` with provider.gcs_address set to this head, which the fake
        workers need to find it (Ray 2.60; see cluster/fake_multinode.yaml).
        """
        import yaml

        self.port = free_port()
        cfg = yaml.safe_load(Path(config).read_text())
        cfg["provider"]["gcs_address"] = self.address
        copy = self.root / "autoscaling.yaml"
        copy.write_text(yaml.safe_dump(cfg))
        # AUTOSCALER_UPDATE_INTERVAL_S=1: react in ~1 s instead of 5 (what ray.cluster_utils does).
        env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        return self.start_head(num_cpus, resources, autoscaling_config=copy, env=env, port=self.port,
                               timeout_s=timeout_s)

    def add_worker(self, num_cpus: int = 1, resources: dict[str, float] | None = None, timeout_s: float = 180) -> Node:
        """`ray start --address=<head>` as a second node with its own temp dir."""
        name = f"worker{sum(not n.head for n in self.nodes) + 1}"
        args = [
            f"--address={self.address}",
            f"--num-cpus={num_cpus}",
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        return self._ray_start(name, args, self.env, timeout_s)

    # -- inspect -------------------------------------------------------------------------------
    def node_table(self) -> list[dict]:
        """Nodes the GCS knows: node_id (hex), alive, node_manager_port, resources. No driver needed."""
        from ray._raylet import GcsClient

        infos = GcsClient(address=self.address).get_all_node_info(timeout=10)
        return [
            {
                "node_id": info.node_id.hex(),
                "alive": info.state == 0,  # GcsNodeInfo.ALIVE
                "node_manager_port": info.node_manager_port,
                "resources": dict(info.resources_total),
            }
            for info in infos.values()
        ]

    def alive_nodes(self) -> list[dict]:
        return [n for n in self.node_table() if n["alive"]]

    def node_id(self, node: Node) -> str:
        """The Ray node id of a node we started (matched by its raylet port)."""
        for n in self.node_table():
            if n["node_manager_port"] == node.node_manager_port and n["alive"]:
                return n["node_id"]
        raise LookupError(f"node {node.name!r} (raylet port {node.node_manager_port}) is not alive in the GCS")

    def wait_for_nodes(self, n: int, timeout_s: float = 120) -> list[dict]:
        """Block until `n` nodes are alive; returns them. Raises TimeoutError listing what is there."""
        deadline = time.monotonic() + timeout_s
        alive: list[dict] = []
        while time.monotonic() < deadline:
            try:
                alive = self.alive_nodes()
            except Exception:  # GCS not answering yet
                alive = []
            if len(alive) >= n:
                return alive
            time.sleep(1)
        raise TimeoutError(f"{len(alive)} of {n} Ray nodes alive after {timeout_s}s: {alive}")

    # -- stop ----------------------------------------------------------------------------------
    def kill_node(self, node: Node) -> list[int]:
        """SIGKILL every process of `node` at once (node loss, not a graceful stop). Returns the pids."""
        pids = node.pids()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.killed = True
        return pids

    def stop(self) -> None:
        """Kill workers, then the head, then any straggler mentioning our temp root; remove the temp root."""
        for node in sorted(self.nodes, key=lambda n: n.head):
            kill_pids(node.pids())
        kill_pids(pids_of(set(), marker=str(self.root)))
        shutil.rmtree(self.root, ignore_errors=True)

    def leftover_pids(self) -> list[int]:
        """Processes of this cluster still alive (empty after a clean stop)."""
        groups = {n.pgid for n in self.nodes}.union(*(n.extra_pgids for n in self.nodes))
        return pids_of(groups, marker=str(self.root))

    def logs_tail(self, chars: int = 4000) -> str:
        """Tail of the raylet/gcs/monitor logs, for failure messages."""
        parts = []
        for pattern in ("*/session_latest/logs/raylet.out", "*/session_latest/logs/gcs_server.out",
                        "*/session_latest/logs/monitor.log"):
            for f in sorted(self.root.glob(pattern)):
                parts.append(f"== {f.relative_to(self.root)}\n{f.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def __enter__(self) -> "LoopbackCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_cli(args: list[str], env: dict[str, str], timeout_s: float, cwd: str | Path | None = None,
            log: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout kill the whole group (driver + its children)."""
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_pids(pids_of({proc.pid}), grace_s=2)
        out, _ = proc.communicate()
        out = (out or "") + f"\n[run_cli] killed after {timeout_s}s"
    finally:
        kill_pids(pids_of({proc.pid}), grace_s=2)  # orphans the driver left behind
    if log is not None:
        log.write_text(out or "")
    return subprocess.CompletedProcess(args, proc.returncode, out, None)
