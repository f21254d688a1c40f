"""Offline checks of cluster.yaml and cluster/fake_multinode.yaml: Ray's own schema validation plus
the cluster's safety points (no credentials, dashboard not opened to the world, GPU nodes scale
from zero, results on shared s3:// storage). No cloud access, no Ray cluster; runs in ~2 s.

    .venv/bin/pytest tests/test_cluster_config.py
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
FAKE_YAML = ROOT / "cluster" / "fake_multinode.yaml"
CLUSTER_DOC = ROOT / "README.md"  # its section "Running on a cluster"

# Credential shapes that must never be committed in a cluster config.
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key assignment": re.compile(r"aws_secret_access_key|aws_session_token|AWS_SECRET", re.I),
    "AWS access key assignment": re.compile(r"aws_access_key_id|AWS_ACCESS_KEY", re.I),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "40-char secret-looking token": re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
    "password field": re.compile(r"^\s*[\w.-]*password\s*:", re.I | re.M),
}


def _docker_env(cfg: dict) -> dict[str, str]:
    """`--env=K=V` / `-e K=V` entries of docker.run_options as a dict."""
    env = {}
    for opt in cfg.get("docker", {}).get("run_options", []):
        m = re.match(r"^(?:--env[= ]|-e )(\w+)=(\S+)$", opt.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


def _gpu_types(cfg: dict) -> dict[str, dict]:
    return {k: v for k, v in cfg["available_node_types"].items() if v.get("resources", {}).get("GPU", 0) > 0}


def safety_problems(text: str, cfg: dict) -> list[str]:
    """Every safety rule cluster.yaml breaks, as one-line messages (empty list = safe)."""
    problems = []
    for what, pat in SECRET_PATTERNS.items():
        for m in pat.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            problems.append(f"{CLUSTER_YAML.name}: line {line}: looks like a credential ({what})")
    if "ssh_private_key" in cfg.get("auth", {}):
        problems.append("auth.ssh_private_key: let Ray create the key pair; no key paths in the config")
    commands = " ".join(
        str(c) for key in ("head_start_ray_commands", "worker_start_ray_commands", "setup_commands",
                           "head_setup_commands", "worker_setup_commands", "initialization_commands")
        for c in cfg.get(key, [])
    )
    if re.search(r"--dashboard-host[= ]*0\.0\.0\.0", commands) or "0.0.0.0" in commands:
        problems.append("a start command opens the dashboard (or another port) on 0.0.0.0")
    head = cfg["available_node_types"][cfg["head_node_type"]]
    if "IamInstanceProfile" not in head["node_config"]:
        problems.append("head node_config has no IamInstanceProfile: nodes need role credentials, not keys")
    gpu = _gpu_types(cfg)
    if not gpu:
        problems.append("no worker node type offers a GPU")
    for name, nt in gpu.items():
        if nt.get("min_workers", 0) != 0:
            problems.append(f"available_node_types.{name}.min_workers is {nt['min_workers']}, must be 0 (GPUs bill idle)")
        if "IamInstanceProfile" not in nt["node_config"]:
            problems.append(f"available_node_types.{name}: no IamInstanceProfile (workers write checkpoints to s3)")
    storage = _docker_env(cfg).get("FER_STORAGE_PATH", "")
    if not storage.startswith("s3://"):
        problems.append(f"FER_STORAGE_PATH is {storage!r}: multi-node checkpoints need shared s3:// storage")
    return problems


@pytest.fixture(scope="module")
def cluster_text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def cluster_cfg(cluster_text) -> dict:
    return yaml.safe_load(cluster_text)


def test_cluster_yaml_passes_ray_validation(cluster_cfg):
    prepared = prepare_config(copy.deepcopy(cluster_cfg))  # merges Ray's AWS defaults, as `ray up` does
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # The per-type caps fit under the global one.
    workers = [nt for name, nt in prepared["available_node_types"].items() if name != prepared["head_node_type"]]
    assert all(nt["max_workers"] <= prepared["max_workers"] for nt in workers)


def test_ray_validation_is_not_a_rubber_stamp(cluster_cfg):
    bad = copy.deepcopy(cluster_cfg)
    bad["available_node_types"]["gpu.g5.xlarge"]["min_wokers"] = 0  # typo'd key
    with pytest.raises(Exception, match="min_wokers"):
        validate_config(prepare_config(bad))
    bad = copy.deepcopy(cluster_cfg)
    bad["head_node_type"] = "no.such.type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(bad))


def test_cluster_yaml_is_safe(cluster_text, cluster_cfg):
    assert safety_problems(cluster_text, cluster_cfg) == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda t, c: (t + "\n# AKIAABCDEFGHIJKLMNOP\n", c), "credential"),
        (lambda t, c: (t + "\n# aws_secret_access_key: x\n", c), "credential"),
        (lambda t, c: (t, {**c, "head_start_ray_commands": ["ray start --head --dashboard-host=0.0.0.0"]}), "0.0.0.0"),
        (lambda t, c: (t, _with(c, ["available_node_types", "gpu.g5.xlarge", "min_workers"], 2)), "min_workers is 2"),
        (lambda t, c: (t, _with(c, ["docker", "run_options"], ["--env=FER_STORAGE_PATH=/home/ray/results"])), "s3://"),
        (lambda t, c: (t, _with(c, ["auth", "ssh_private_key"], "~/.ssh/id_rsa")), "ssh_private_key"),
    ],
    ids=["access-key", "secret-key", "dashboard-0.0.0.0", "gpu-min-workers", "local-storage", "ssh-key"],
)
def test_safety_checks_catch_violations(cluster_text, cluster_cfg, mutate, expected):
    text, cfg = mutate(cluster_text, copy.deepcopy(cluster_cfg))
    problems = safety_problems(text, cfg)
    assert any(expected in p for p in problems), problems


def _with(cfg: dict, path: list[str], value) -> dict:
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return cfg


def test_head_runs_trial_drivers_not_train_workers(cluster_cfg):
    head = cluster_cfg["available_node_types"][cluster_cfg["head_node_type"]]
    gpu = _gpu_types(cluster_cfg)
    # driver_slot: one per concurrent trial driver (docs/DESIGN.md), enough for one trial per GPU node.
    assert head["resources"]["driver_slot"] >= max(nt["max_workers"] for nt in gpu.values())
    assert head["resources"].get("GPU", 0) == 0
    assert "--dashboard-host=127.0.0.1" in " ".join(cluster_cfg["head_start_ray_commands"])
    for name, nt in gpu.items():
        assert "driver_slot" not in nt["resources"], f"{name}: trial drivers belong on the head"


def test_project_and_dataset_reach_every_node(cluster_cfg):
    mounts = cluster_cfg["file_mounts"]
    project_remote = next(remote for remote, local in mounts.items() if local == ".")
    assert any(f"pip install -q -e {project_remote}" in c for c in cluster_cfg["setup_commands"])
    data_remote, data_local = next((r, l) for r, l in mounts.items() if "fer2013" in l)
    # The local side is relative to the repo root, where `ray up` runs.
    assert (ROOT / data_local).resolve().name == "fer2013"
    assert _docker_env(cluster_cfg)["FER2013_PATH"].startswith(data_remote + "/")
    assert ".gitignore" in cluster_cfg["rsync_filter"] and ".venv" in cluster_cfg["rsync_exclude"]


def test_docs_use_the_configured_storage(cluster_cfg):
    if not CLUSTER_DOC.exists():
        pytest.fail(f"{CLUSTER_DOC} is missing")
    doc = CLUSTER_DOC.read_text()
    storage = _docker_env(cluster_cfg)["FER_STORAGE_PATH"]
    for needed in ("ray up cluster.yaml", "ray down cluster.yaml", "ray dashboard cluster.yaml",
                   "--profile paper", "--use-gpu", f"--storage-path {storage}", "tensorboard"):
        assert needed in doc, f"README.md (Running on a cluster) does not mention {needed!r}"
    assert "0.0.0.0" not in doc


# -- the local fake-provider variant -------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_cfg() -> dict:
    return yaml.safe_load(FAKE_YAML.read_text())


def test_fake_yaml_passes_ray_schema(fake_cfg):
    # prepare_config can't run: it merges the fake provider's defaults file, which the 2.60 wheel
    # lacks (the `ray up` breakage). The file is complete instead, so the schema alone must accept it.
    validate_config(fake_cfg)
    assert fake_cfg["provider"]["type"] == "fake_multinode"
    assert re.fullmatch(r"[\w.-]+:\d+", fake_cfg["provider"]["gcs_address"])


def test_fake_yaml_mirrors_the_real_cluster(fake_cfg, cluster_cfg):
    head = fake_cfg["available_node_types"]["ray.head.default"]
    assert fake_cfg["head_node_type"] == "ray.head.default"  # the fake provider hard-codes this name
    assert head["resources"].get("CPU", 0) == 0 and head["resources"]["driver_slot"] >= 1
    workers = {k: v for k, v in fake_cfg["available_node_types"].items() if k != "ray.head.default"}
    assert workers and all(0 <= nt["min_workers"] <= nt["max_workers"] <= fake_cfg["max_workers"]
                           for nt in workers.values())
    assert any(nt["max_workers"] > nt["min_workers"] for nt in workers.values()), "nothing left to autoscale"
    # Same section keys as the real config (so the local variant exercises the same structure).
    assert set(cluster_cfg) - set(fake_cfg) == set()
