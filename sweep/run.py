"""Run an ablation grid or an Optuna search: `python -m sweep.run --grid ablation`.

Ray Tune fans the trials out, each trial a Ray Train `TorchTrainer` (see `sweep/trial.py`). The
data are prepared once per sweep and shared by every trial. Results land in
`<storage-path>/<name>/` (see docs/DESIGN.md), with TensorBoard files and a markdown report.
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sweep.config import ConfigError, TrialConfig, flatten_params, valid_keys
from sweep.grid import (Grid, GridError, builtin_grids, load_grid, on_edge, scientific_points, search_space, tune_space,
                        with_tuned)
from sweep.profiles import PROFILES
from sweep.trial import ASHA_TIME, Resources, data_key, run_trial, share_arrays

DEFAULT_DATA = (  # where the README says FER-2013 is looked for, in this order
    "data/fer2013/icml_face_data.csv.gz", "data/fer2013/icml_face_data.csv",
    "data/fer2013/fer2013.csv", "../shared/datasets/fer2013/icml_face_data.csv.gz",
)
GET_DATA_HINT = ("FER-2013 not found. Download it from Kaggle ('challenges-in-representation-learning-facial-"
                 "expression-recognition-challenge', file icml_face_data.csv) into data/fer2013/, set FER2013_PATH, "
                 "or pass --data PATH; `--data synthetic` tries the pipeline without it")


class UsageError(Exception):
    """A flag or argument that cannot work; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sweep.run",
        description="Run the FER-2013 ablation grid or an Optuna search on Ray Tune + Ray Train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--grid", default="ablation",
                   help=f"built-in grid ({', '.join(builtin_grids())}) or a path to a grid YAML in the same format")
    p.add_argument("--data", default=None,
                   help="FER-2013: icml_face_data.csv / fer2013.csv (plain or .gz) or the image-folder root; "
                        "'synthetic' for the built-in synthetic faces; default: $FER2013_PATH, then "
                        + ", ".join(DEFAULT_DATA))
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="budget: " + "; ".join(f"{k}: {v.about}" for k, v in PROFILES.items())
                        + ". Default: paper when a GPU is visible, else settle")
    p.add_argument("--seeds", default=None,
                   help="number of seeds (N -> 0..N-1), a comma list (0,3,7), a range (3-5: 3,4,5) or one seed "
                        "(2,); default from the profile")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per trial (overrides the profile)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="Optuna trials for a search grid (default: the grid's num_samples, else the profile's)")
    p.add_argument("--models", default=None,
                   help="the grid's model.name axis: 'a,b' runs exactly these, '+a,b' adds them to the grid's "
                        "(e.g. +vgg_fer_small for the stronger CPU model beside the study's CNNs); the plan prints "
                        "the resulting axis")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any dotted key for every trial, e.g. --set train.lr=0.0005 (repeatable)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once; default: as many as this machine's CPUs (or GPUs) fit, "
                        "or with --address the cluster's driver_slot total (it may autoscale)")
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="Train workers per trial; >1 trains with DistributedDataParallel")
    p.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs (and torch threads) per Train worker")
    p.add_argument("--use-gpu", action="store_true", help="train on GPUs (one per worker unless --gpus-per-worker)")
    p.add_argument("--gpus-per-worker", type=float, default=1.0, help="GPUs per worker with --use-gpu (fractions share)")
    p.add_argument("--storage-path", default="runs",
                   help="where experiments are written: a local folder or a URI Ray accepts (s3://, gs://)")
    p.add_argument("--name", default=None, help="experiment name (folder under --storage-path); default: GRID-PROFILE-TIME")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted experiment --name: finished trials are kept, unfinished resumed from checkpoints")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="connect to a running Ray cluster (host:port or 'auto') instead of starting a local one")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--no-report", action="store_true", help="skip the markdown report at the end")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's and the libraries' own log lines (workers, controllers, Ray Data) in the console; "
                        "without it they go only to Ray's session logs and the console shows the plan, a line per "
                        "trial event and epoch, and the summary")
    p.add_argument("--list-keys", action="store_true", help="print every dotted key a grid or --set may use, and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command = "python -m sweep.run " + shlex.join(argv)
    if args.list_keys:
        print("\n".join(valid_keys()))
        return 0
    try:
        return _run(args)
    except (UsageError, GridError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # data errors and the like: one line, no traceback
        from fer_data import DataError

        if isinstance(err, DataError):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise


# ---------------------------------------------------------------- planning

def resolve_data(spec: str | None) -> str:
    if spec:
        if spec != "synthetic" and not Path(spec).exists():
            raise UsageError(f"--data {spec}: no such file or folder")
        return spec
    candidates = [os.environ["FER2013_PATH"]] if os.environ.get("FER2013_PATH") else []
    for c in candidates + list(DEFAULT_DATA):
        if Path(c).exists():
            return str(Path(c).resolve())
    raise UsageError(GET_DATA_HINT)


SEED_RANGE = re.compile(r"(\d+)-(\d+)")  # --seeds 3-5: seeds 3, 4 and 5


def resolve_seeds(spec: str | None, default: int) -> list[int]:
    if spec is None:
        return list(range(default))

    def items(part: str) -> list[int]:
        if m := SEED_RANGE.fullmatch(part):
            first, last = int(m[1]), int(m[2])
            if last < first:
                raise UsageError(f"--seeds {spec}: the range {part} is empty (write it from low to high)")
            return list(range(first, last + 1))
        return [int(part)]

    try:
        if "," in spec or SEED_RANGE.fullmatch(spec):  # a list; one seed alone is "2," or "2-2"
            seeds = [s for part in spec.split(",") if part.strip() for s in items(part.strip())]
        else:
            seeds = list(range(int(spec)))
    except ValueError:
        raise UsageError(f"--seeds {spec}: expected a count (3 -> 0,1,2), a comma list (0,3,7), a range (3-5) or "
                         "one seed (2,)") from None
    if not seeds:
        raise UsageError(f"--seeds {spec}: at least one seed")
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds {spec}: seeds must be >= 0")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:  # two trials with one seed are one measurement counted twice
        raise UsageError(f"--seeds {spec}: seed {repeated[0]} is listed more than once")
    return seeds


def parse_sets(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def trial_configs(grid: Grid, constants: dict, seeds: list[int], chosen: list[dict] | None = None) -> list[TrialConfig]:
    points = grid.points(seeds) if grid.search is None else [{"seed": seeds[0]}]
    if chosen:
        points = with_tuned(points, chosen, grid)
    try:
        return [TrialConfig.from_flat({**constants, **p}) for p in points]
    except ConfigError as err:
        raise UsageError(str(err)) from None


def code_defaults(cfg: TrialConfig, grid: Grid) -> dict:
    """The data/augment/train settings no grid, profile or flag names, at the code's defaults: recorded in every
    trial's params.json so a report can state the whole recipe, not only what was overridden."""
    varying = _point_keys(grid) | set((grid.search or {}).get("space", {}))
    return {k: v for k, v in cfg.to_flat().items()
            if k.partition(".")[0] in ("data", "augment", "train") and k not in varying}


def with_models(grid: Grid, spec: str | None) -> Grid:
    """The grid with `--models` applied to its `model.name` axis: `a,b` replaces the axis, `+a,b` appends to it."""
    if not spec:
        return grid
    from fer_models import list_models

    append = spec.startswith("+")
    names = [n.strip() for n in spec.lstrip("+").split(",") if n.strip()]
    unknown = [n for n in names if n not in list_models()]
    if not names or unknown:
        raise UsageError(f"--models {spec}: " + (f"unknown model {unknown[0]!r}; valid: {', '.join(list_models())}"
                                                 if unknown else "expected a comma list of model names"))
    axis = grid.scientific.get("model.name")
    if axis is None:
        raise UsageError(f"--models {spec}: grid {grid.name} has no model.name axis to change")
    if len(set(names)) < len(names) or (append and set(names) & set(axis)):
        raise UsageError(f"--models {spec}: a model is listed twice on the model.name axis")
    names = (axis + names) if append else names
    ref = grid.reference.get("model.name")
    if ref is not None and ref not in names:
        raise UsageError(f"--models {spec}: the grid's reference model {ref} is not among {', '.join(names)}")
    return replace(grid, scientific={**grid.scientific, "model.name": names})


def gpu_visible(address: str | None) -> bool:
    if address:
        import ray

        return ray.cluster_resources().get("GPU", 0) > 0
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------- running

@dataclass
class Plan:
    """A checked sweep: what runs (the resolved grid and one config per trial), on what, and where it goes."""

    args: argparse.Namespace
    grid: Grid  # the grid file with --models applied: exactly the variants that run
    profile: str
    seeds: list[int]
    constants: dict  # profile < grid < flags, plus the code's defaults of every unnamed setting
    configs: list[TrialConfig]
    resources: Resources
    max_concurrent: int
    name: str
    exp_uri: str
    data_spec: str
    n_trials: int
    prepared: dict = field(default_factory=dict)  # data key -> arrays in the object store, norm, counts
    audits: dict = field(default_factory=dict)
    data_sha256: str | None = None

    @property
    def search_default(self) -> dict | None:
        """A search's sampled keys at their values without the search (the trial config's, which for a model key
        is the model's own config unless the grid sets it), when each lies in its range. The search tries it
        first, so its report can say whether the search beat the default: same seed, same recipe."""
        if self.grid.search is None:
            return None
        from fer_models import get_config

        from sweep.grid import in_space

        cfg, out = self.configs[0], {}
        for key, spec in self.grid.search["space"].items():
            section, _, attr = key.partition(".")
            if section == "model":
                v = cfg.model.overrides.get(attr, getattr(get_config(cfg.model.name), attr, None))
            else:
                v = getattr(getattr(cfg, section, None), attr, None)
            if v is None or not in_space(spec, v):
                return None
            out[key] = v
        return out

    @property
    def storage(self) -> str:
        return _storage_root(self.args.storage_path)


def _run(args) -> int:
    grid, early, data_spec = check_flags(args)  # every refusal before Ray's ~10 s start-up
    import ray

    _init_ray(args)
    plan = make_plan(args, grid, early, data_spec)
    prepare_data(plan)
    print_plan(plan)
    meta = record_meta(plan)
    t0 = time.time()
    if plan.grid.tune is not None:
        plan.configs = trial_configs(plan.grid, plan.constants, plan.seeds, tuned_values(plan, meta))
    results = _fit(plan)
    from sweep import storage as store

    meta.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_s=time.time() - t0)
    store.write_json(f"{plan.exp_uri}/sweep_meta.json", meta)
    errors = _print_summary(results, plan.grid) + _write_report(plan)
    print(f"tensorboard --logdir {plan.exp_uri}")
    ray.shutdown()
    return 1 if errors else 0


def check_flags(args) -> tuple[Grid, dict, str]:
    """The resolved grid, the flags' settings and the data path; a UsageError for anything that cannot work.
    Needs no Ray and writes nothing (the profile only changes values, not which keys exist)."""
    grid = with_models(load_grid(args.grid), args.models)
    data_spec = resolve_data(args.data)
    if args.workers_per_trial < 1 or args.cpus_per_worker < 1:
        raise UsageError("--workers-per-trial and --cpus-per-worker must be >= 1")
    if args.resume and not args.name:
        raise UsageError("--resume needs --name of the experiment to continue")
    if args.name is not None and (not args.name.strip() or args.name in (".", "..") or "/" in args.name
                                  or "\\" in args.name or args.name != args.name.strip()):
        raise UsageError(f"--name {args.name!r}: must be a plain folder name under --storage-path (no '/', no '..')")
    if args.resume:
        _check_resumable(_experiment_uri(args.storage_path, args.name), args.name)
    elif args.name:
        _refuse_existing(_experiment_uri(args.storage_path, args.name), args.name)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: must be >= 1")
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples {args.num_samples}: must be >= 1")
    early = {**parse_sets(args.set), **({"train.epochs": args.epochs} if args.epochs else {})}
    trial_configs(grid, {**grid.constants, **early}, resolve_seeds(args.seeds, 1))
    if args.use_gpu and not args.address:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--use-gpu: this machine has no visible GPU (torch.cuda.is_available() is False)")
    return grid, early, data_spec


def make_plan(args, grid: Grid, early: dict, data_spec: str) -> Plan:
    """Budget (profile < grid < flags), trial configs, concurrency and the experiment's place."""
    profile_name = args.profile
    if profile_name is None:
        profile_name = "paper" if gpu_visible(args.address) else "settle"
        print(f"profile: {profile_name} (no --profile given; {'a GPU is' if profile_name == 'paper' else 'no GPU'} visible)")
    profile = PROFILES[profile_name]
    seeds = resolve_seeds(args.seeds, profile.seeds)
    constants = {**profile.settings, **grid.constants, **early}
    configs = trial_configs(grid, constants, seeds)
    constants = {**code_defaults(configs[0], grid), **constants}
    resources = Resources(args.workers_per_trial, args.cpus_per_worker, args.use_gpu, args.gpus_per_worker)
    name = args.name or f"{grid.name}-{profile_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    exp_uri = _experiment_uri(args.storage_path, name)
    if not args.name and not args.resume:  # a given --name was checked before Ray started
        _refuse_existing(exp_uri, name)
    n_trials = len(configs) if grid.search is None else (
        args.num_samples or grid.search.get("num_samples") or profile.search_samples)
    return Plan(args=args, grid=grid, profile=profile_name, seeds=seeds, constants=constants, configs=configs,
                resources=resources, name=name, exp_uri=exp_uri, data_spec=data_spec, n_trials=n_trials,
                max_concurrent=args.max_concurrent or _fit_concurrency(resources, on_cluster=bool(args.address)))


def prepare_data(plan: Plan) -> None:
    """Each distinct data section prepared once and shared by every trial through the object store."""
    from fer_data.pipeline import prepare

    for cfg in plan.configs:
        key = data_key(cfg.data)
        if key in plan.prepared:
            continue
        t0 = time.perf_counter()
        pd_ = prepare(plan.data_spec, cfg.data.to_fer_data())
        plan.prepared[key] = {"arrays": share_arrays(pd_.datasets), "norm": pd_.norm,
                              "class_weights": pd_.class_weights, "test_copy_in_train": pd_.test_copy_in_train,
                              "counts": {k: int(sum(v)) for k, v in pd_.counts.items()}}
        plan.audits[cfg.data.protocol] = pd_.audit
        plan.data_sha256 = pd_.sha256
        print(f"data: {cfg.data.protocol}, {cfg.data.input_size}x{cfg.data.input_size}, balance {cfg.data.balance}: "
              f"{_counts_line(plan.prepared[key]['counts'])} prepared in {time.perf_counter() - t0:.1f} s")


def record_meta(plan: Plan) -> dict:
    """sweep_meta.json: the resolved grid, budget, data and provenance; a resume keeps the first start's."""
    from sweep import storage as store

    g, r = plan.grid, plan.resources
    meta = {
        "name": plan.name, "command": plan.args.command,
        "grid": g.name, "grid_file": str(g.path), "description": g.description,
        # a search trains every sample at the first seed, with --num-samples (or the grid's, or the profile's)
        "profile": plan.profile, "seeds": plan.seeds if g.search is None else plan.seeds[:1],
        "data": plan.data_spec, "data_sha256": plan.data_sha256,
        "data_audit": plan.audits,
        "resources_per_trial": {"workers": r.workers, "cpus_per_worker": r.cpus_per_worker,
                                "gpus_per_worker": r.gpus_per_worker if r.use_gpu else 0},
        "max_concurrent": plan.max_concurrent, "scientific": g.scientific, "reference": g.reference,
        "nuisance": g.nuisance,
        "fixed": g.fixed, "audit": g.audit, "constants": plan.constants,
        "search": g.search if g.search is None else {**g.search, "num_samples": plan.n_trials,
                                                     "default": plan.search_default},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **provenance(),
    }
    if plan.args.resume:  # keep how the experiment was first started; record each resume beside it
        first = store.read_json(f"{plan.exp_uri}/sweep_meta.json")
        resumes = first.get("resumes", []) + [{"command": plan.args.command, "at": meta["started"],
                                                "git_commit": meta["git_commit"]}]
        meta = {**first, **meta, **{k: first[k] for k in ("command", "started", "git_commit") if k in first},
                "resumes": resumes}
    store.write_json(f"{plan.exp_uri}/sweep_meta.json", meta)
    if not plan.args.verbose:
        from sweep import console

        import tempfile

        # beside the results; for remote storage in a local temporary folder (the file grows while Ray runs)
        where = Path(plan.exp_uri) if "://" not in plan.exp_uri else Path(tempfile.gettempdir()) / "sweep" / plan.name
        if (path := console.log_to(where / "ray_console.log")) is not None:
            print(f"  Ray's own console messages: {path}")
    return meta


def tuned_values(plan: Plan, meta: dict) -> list[dict]:
    """The nuisance values tuned per scientific point; tuned once, and kept across a resume."""
    from sweep import storage as store

    if plan.args.resume and meta.get("tuning", {}).get("chosen"):
        return meta["tuning"]["chosen"]
    chosen = _tune_nuisance(plan)
    meta["tuning"] = {**plan.grid.tune, "chosen": chosen}
    store.write_json(f"{plan.exp_uri}/sweep_meta.json", meta)
    return chosen


def _write_report(plan: Plan) -> int:
    """The markdown report; 1 if it could not be written (the trials' results are saved either way)."""
    if plan.args.no_report:
        return 0
    from sweep import storage as store
    from sweep.report import ReportError, build_report

    local = store.local_copy(plan.exp_uri)
    try:
        report = build_report(local)
    except ReportError as err:
        print(f"error: report: {err}", file=sys.stderr)
        return 1
    store.publish(report, plan.exp_uri)
    print(f"report: {store.join(plan.exp_uri, Path(report).name) if '://' in plan.exp_uri else report}")
    return 0


def _storage_root(storage_path: str) -> str:
    return storage_path if "://" in storage_path else str(Path(storage_path).resolve())


def _experiment_uri(storage_path: str, name: str) -> str:
    return f"{_storage_root(storage_path).rstrip('/')}/{name}"


def _check_resumable(exp_uri: str, name: str) -> None:
    from sweep import storage as store

    meta_uri = f"{exp_uri}/sweep_meta.json"
    if not store.exists(meta_uri):
        raise UsageError(f"--resume --name {name}: nothing to resume, {meta_uri} does not exist")
    try:
        if not isinstance(store.read_json(meta_uri), dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        raise UsageError(f"--resume: {meta_uri} is unreadable ({err}); it cannot be resumed") from None


def _refuse_existing(exp_uri: str, name: str) -> None:
    from sweep import storage as store

    if store.exists(exp_uri):
        raise UsageError(f"--name {name}: {exp_uri} already exists; pass --resume to continue it or choose another --name")


def _refuse_a_second_local_ray() -> None:
    """Two local Ray instances on one machine hang sweeps: Ray Train 2.60's placement-group cleaner asks "the"
    local cluster for its controller's state, finds two ("Found multiple active Ray instances") and gives up, and
    trials then waited forever (seen twice here: a stopped trial's CPU kept, a resumed sweep's next trial never
    started). The same process search Ray uses, uncached (Ray caches what it found for the process's lifetime);
    skipped if that private helper moves."""
    try:
        from ray._private.services import _find_address_from_flag

        others = sorted(set(_find_address_from_flag("--gcs-address")))
    except Exception:  # noqa: BLE001 - a check, never a reason to fail
        return
    if others:
        raise UsageError(f"another Ray instance is running on this machine ({', '.join(others)}): Ray Train cannot "
                         "tell two local instances apart and the sweep's trials can wait forever; let it finish or "
                         f"`ray stop` it, or queue this sweep on it with --address {others[0]} (sharing its CPUs)")


TRAIN_POLL_ENV, TRAIN_POLL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"


def _init_ray(args) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local clusters only; see RAY_NOTES
    if not args.verbose:
        import logging

        from sweep import console

        console.quiet()  # Ray's raylet warnings reach the driver whatever log_to_driver says
        logging.getLogger("ray._private.worker").setLevel(logging.WARNING)  # "Started a local Ray instance"
    # Ray Train's controller polls its workers every 2 s by default and takes up a report that carries a
    # checkpoint (every epoch here) only at a poll: a trial's end waited ~4 s on polls. At 0.5 s a trial's
    # fixed cost fell from 20.7 to 16.7 s, and polling faster cost no measurable CPU
    # (benchmarks/trial_fixed_cost.py). A job-level env var: it reaches the controllers on every node.
    health = {TRAIN_POLL_ENV: os.environ.get(TRAIN_POLL_ENV, TRAIN_POLL_S)}
    if args.address:
        ray.init(address=args.address, log_to_driver=args.verbose, runtime_env={"env_vars": health})
        if ray.cluster_resources().get("driver_slot", 0) < 1:
            raise UsageError(f"--address {args.address}: the cluster advertises no 'driver_slot' resource; start its "
                             "nodes with --resources='{\"driver_slot\": N}' (see cluster.yaml)")
    else:
        _refuse_a_second_local_ray()
        # Its own machine: no spot preemption to watch for (one process less per trial) and no Prometheus
        # scraping Ray Train's metrics (a reporting thread less in the controller and every worker). On
        # few cores every live Ray process slows the training loop (8 idle actors cost a 2-thread loop ~14%).
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
        cpus = args.num_cpus or os.cpu_count() or 1
        # Trial drivers hold a custom 'driver_slot' instead of a CPU, so every CPU goes to Train workers
        # (two CPU-holding drivers deadlock a 2-CPU machine; ../shared/RAY_NOTES.md).
        ctx = ray.init(num_cpus=cpus, resources={"driver_slot": cpus * 2}, log_to_driver=args.verbose,
                       runtime_env={"env_vars": health})
        if not args.verbose and ctx.dashboard_url:
            print(f"ray: local instance with {cpus} CPUs, dashboard http://{ctx.dashboard_url}")
    import ray.data

    # The one-off preprocessing prints its own line; Ray Data's progress bars only flood the log.
    ray.data.DataContext.get_current().enable_progress_bars = False
    if not args.verbose:
        import logging
        import warnings

        for logger in ("ray.tune", "ray.train"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        # Ray Data warns that "the cluster has no available CPUs" while Tune holds them: expected in a sweep.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")


def _fit_concurrency(resources: Resources, on_cluster: bool = False) -> int:
    import ray

    total = ray.cluster_resources()
    if on_cluster:
        # An autoscaling cluster shows only the nodes up now (at first none with a GPU): its driver_slot
        # total is the cap its author set (cluster.yaml), and trials waiting for resources make the
        # autoscaler add nodes.
        return max(1, int(total.get("driver_slot", 1)))
    if resources.use_gpu:
        fit = total.get("GPU", 0) // (resources.gpus_per_worker * resources.workers)
    else:
        fit = total.get("CPU", 1) // (resources.cpus_per_worker * resources.workers)
    return max(1, int(min(fit, total.get("driver_slot", 1))))


def _counts_line(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _fit(plan: Plan):
    from ray import tune

    grid, exp_uri, max_concurrent = plan.grid, plan.exp_uri, plan.max_concurrent
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, prepared=plan.prepared, resources=plan.resources,
                             storage_path=f"{exp_uri}/train_runs", trials_uri=exp_uri),
        {"driver_slot": 1},
    )
    run_config = tune.RunConfig(
        name=plan.name, storage_path=plan.storage, verbose=0, callbacks=_callbacks(plan.grid),
        # A dead driver (or its node) is relaunched; its TorchTrainer finds its checkpoints by name.
        failure_config=tune.FailureConfig(max_failures=3),
    )
    if plan.args.resume:
        if not tune.Tuner.can_restore(exp_uri):
            raise UsageError(f"--resume: nothing to resume at {exp_uri}")
        tuner = tune.Tuner.restore(exp_uri, trainable=trainable, resume_unfinished=True, resume_errored=True)
    elif grid.search is None:
        points = [{k: v for k, v in flatten_params(c.to_flat()).items() if k in _point_keys(grid)}
                  for c in plan.configs]
        tuner = tune.Tuner(
            trainable,
            param_space={**plan.constants, "variant": tune.grid_search(points)},
            # No reuse_actors: in Ray 2.60 a reused driver's files written after its last report (final.json,
            # best_model/, the confusion image) never reached the later trials' folders (measured).
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=run_config,
        )
    else:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from sweep.schedulers import DefaultKeepingASHA

        epochs = plan.configs[0].train.epochs
        asha = grid.search.get("asha") or {}
        default = plan.search_default  # a property that resolves the model's config: once here
        tuner = tune.Tuner(
            trainable,
            param_space={**plan.constants, "seed": plan.seeds[0], **search_space(grid)},
            tune_config=tune.TuneConfig(
                metric=grid.search.get("metric", "val/acc"), mode=grid.search.get("mode", "max"),
                search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=plan.seeds[0]),
                                        points_to_evaluate=[default] if default else None),
                # time in epochs before the last (see trial.ASHA_TIME): rungs never cut off a final evaluation
                # the model's own setting, the report's reference, is never stopped early (sweep.schedulers)
                scheduler=DefaultKeepingASHA(default=default, time_attr=ASHA_TIME,
                                             max_t=max(epochs, asha.get("grace_period", 1) + 1),
                                             grace_period=asha.get("grace_period", 1),
                                             reduction_factor=asha.get("reduction_factor", 2)),
                num_samples=plan.n_trials, max_concurrent_trials=max_concurrent,
            ),
            run_config=run_config,
        )
    return tuner.fit()


def _tune_nuisance(plan: Plan) -> list[dict]:
    """Stage 1 of a grid with a `tune:` block: for each scientific point, a short search of the nuisance space at
    the tuning seed (ASHA-pruned; every combination once when the space is all `choice`), selected on validation
    only: these trials never evaluate on test and write no final.json. Returns one entry per point:
    {"point", "values", "val_acc", "trials", "on_edge"}."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    grid, exp_uri, max_concurrent = plan.grid, plan.exp_uri, plan.max_concurrent
    spec = grid.tune
    seed, epochs, asha = spec.get("seed", 0), spec.get("epochs", 1), spec.get("asha") or {}
    grace = asha.get("grace_period", 1)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, prepared=plan.prepared, resources=plan.resources,
                             storage_path=f"{exp_uri}/tuning/train_runs", final_eval=False),
        {"driver_slot": 1},
    )
    all_choice = all(next(iter(s)) == "choice" for s in spec["space"].values())
    chosen, points = [], scientific_points(grid)
    for i, point in enumerate(points):
        if all_choice:
            space = {k: tune.grid_search(next(iter(s.values()))) for k, s in spec["space"].items()}
            search_alg, samples = None, 1
        else:
            space = tune_space(spec["space"])
            search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
            samples = spec.get("num_samples", 4)
        scheduler = None if epochs <= grace else ASHAScheduler(
            time_attr=ASHA_TIME, max_t=epochs, grace_period=grace, reduction_factor=asha.get("reduction_factor", 2))
        label = ", ".join(f"{k}={v}" for k, v in point.items())
        print(f"tuning {i + 1}/{len(points)}: {label}: "
              f"{', '.join(spec['space'])} at seed {seed}, {epochs} epoch(s), selected on validation", flush=True)
        results = tune.Tuner(
            trainable,
            param_space={**plan.constants, **point, "seed": seed, "train.epochs": epochs, **space},
            tune_config=tune.TuneConfig(metric="val/acc", mode="max", search_alg=search_alg, scheduler=scheduler,
                                        num_samples=samples, max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(name=f"{i:02d}", storage_path=f"{exp_uri}/tuning", verbose=0,
                                      callbacks=_callbacks(plan.grid)),
        ).fit()
        done = [r for r in results if r.metrics and "best_val_acc" in r.metrics]
        if not done:
            raise UsageError(f"tuning {label}: no trial reported a validation accuracy; see {exp_uri}/tuning/{i:02d}")
        best = max(done, key=lambda r: r.metrics["best_val_acc"])  # running max: the last result holds it
        values = {k: flatten_params(best.config)[k] for k in spec["space"]}
        edge = [k for k, v in values.items() if on_edge(spec["space"][k], v)]
        chosen.append({"point": point, "values": values, "val_acc": float(best.metrics["best_val_acc"]),
                       "trials": len(results), "on_edge": edge})
        print(f"tuned {label}: {values} (val {best.metrics['best_val_acc']:.2%} over {len(results)} trials"
              + (f"; on the edge of the range: {', '.join(edge)}" if edge else "") + ")", flush=True)
    return chosen


def _point_keys(grid: Grid) -> set:
    keys = set(grid.scientific) | {"seed"} | set((grid.tune or {}).get("space", {}))
    for extra in grid.audit:
        keys |= set(extra)
    return keys


def print_plan(plan: Plan) -> None:
    from sweep.estimate import estimate_seconds

    grid, cfg0, resources = plan.grid, plan.configs[0], plan.resources
    per_worker = ", ".join(f"{k} {v:g}" for k, v in resources.worker_resources().items())
    print(f"plan: grid {grid.name} ({grid.description})")
    for key, values in grid.scientific.items():  # the resolved grid: exactly what runs
        print(f"  {key}: {', '.join(map(str, values))}")
    for extra in grid.audit:
        print(f"  audit: {', '.join(f'{k}={v}' for k, v in extra.items())} (first seed only)")
    print(f"  trials: {plan.n_trials}" + (
        f" = {len(plan.configs) - len(grid.audit)} grid points ({len(plan.seeds)} seed(s): "
        f"{', '.join(map(str, plan.seeds))}) + {len(grid.audit)} audit" if grid.search is None
        else " Optuna samples, ASHA"))
    print(f"  per trial: {resources.workers} Train worker(s) x ({per_worker}) + 1 driver_slot; "
          f"{plan.max_concurrent} at once; {cfg0.train.epochs} epochs at {cfg0.data.input_size}x{cfg0.data.input_size}")
    if grid.tune is not None:
        t = grid.tune
        print(f"  first, nuisance tuning of {', '.join(t['space'])} for each of {len(scientific_points(grid))} "
              f"scientific point(s): up to {t.get('num_samples', 4)} trial(s) each (every value once for a `choice` "
              f"space), {t.get('epochs', 1)} epoch(s) at seed {t.get('seed', 0)}, chosen on validation only "
              "(not in the estimate below)")
    configs = plan.configs if grid.search is None else plan.configs * plan.n_trials
    est = estimate_seconds(configs, plan.prepared, resources, plan.max_concurrent,
                           None if grid.search is None else grid.search.get("asha") or {})
    import torch

    from fer_models.perf import cpu_has_native_bf16, host_kind

    # The other CPU kind, from the quick profile measured on both: 8.5 min with native bf16, 44 min on AVX2 (fp32).
    other = "" if torch.cuda.is_available() else (
        "; a CPU without native bf16 takes ~4x longer" if cpu_has_native_bf16()
        else "; a CPU with native bf16 (avx512_bf16) takes ~1/4 of it")
    print(f"  estimated time: {est} on this host: {host_kind()}{other}")
    print(f"  results: {plan.exp_uri}")


def summary_label(cfg: dict, grid: Grid) -> str:
    """A trial's variant by its axis values, as the report names it: `baseline [model.batchnorm=false]`."""
    from sweep.report_load import OFFICIAL, variant_label

    keys = [k for k in (*grid.scientific, *(k for extra in grid.audit for k in extra))
            if k not in ("model.name", "data.protocol")]
    extras = {k: cfg[k] for k in dict.fromkeys(keys) if k in cfg}
    return variant_label(str(cfg.get("model.name", "?")), str(cfg.get("data.protocol", OFFICIAL)), extras)


def _callbacks(grid: Grid) -> list:
    from sweep.progress import EpochLines, KeepTrialRows

    return [KeepTrialRows(), EpochLines(functools.partial(trial_label, grid=grid))]


def trial_label(config: dict, grid: Grid) -> str:
    """A trial on the console while it runs: its variant, its seed and any values a search sampled for it."""
    cfg = flatten_params(config or {})
    sampled = [f"{k.split('.')[-1]}={_short(cfg[k])}" for k in ((grid.search or grid.tune) or {}).get("space", {})
               if k in cfg]
    return " ".join([summary_label(cfg, grid), f"seed {cfg.get('seed', 0)}", *sampled])


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _print_summary(results, grid: Grid) -> int:
    """The trials' table; returns how many errored, or were cut off (a grid has no scheduler to stop one early,
    so a grid trial without a final evaluation is an interrupted sweep's, and the exit status says so)."""
    df = results.get_dataframe()
    rows, errors = [], 0
    for result in results:
        cfg = flatten_params(result.config or {})
        label = summary_label(cfg, grid)
        m = result.metrics or {}
        status = "error" if result.error else ("done" if "final/test/acc" in m else "stopped")
        errors += bool(result.error)
        rows.append((label, cfg.get("seed", ""), status, m.get("epoch", ""), _pct(m.get("best_val_acc")),
                     _pct(m.get("final/test/acc"))))
    width = max([28] + [len(r[0]) for r in rows])
    print(f"\n{'variant':{width}s} {'seed':>4s} {'status':8s} {'epochs':>6s} {'best val':>9s} {'test':>7s}")
    for r in sorted(rows, key=lambda r: (r[0], str(r[1]))):
        print(f"{r[0]:{width}s} {str(r[1]):>4s} {r[2]:8s} {str(r[3]):>6s} {r[4]:>9s} {r[5]:>7s}")
    print(f"{len(rows)} trials, {errors} errored" + (f" ({len(df)} rows in the results table)" if df is not None else ""))
    cut = sum(r[2] == "stopped" for r in rows) if grid.search is None else 0
    if cut:
        print(f"{cut} trial(s) unfinished: the sweep was interrupted; the same command with --resume continues them "
              "from their checkpoints")
    return errors + cut


def _pct(x) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


def provenance() -> dict:
    import importlib.metadata as md

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    versions = {}
    for pkg in ("ray", "torch", "torchvision", "numpy", "optuna", "albumentations", "imbalanced-learn", "scikit-learn"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    from fer_models.perf import host_kind

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {"git_commit": commit or "unknown", "versions": versions, "python": platform.python_version(),
            "hardware": {"cpu": cpu or platform.processor(), "cpus": os.cpu_count(), "gpu": gpu,
                         "kind": host_kind(), "platform": platform.platform()}}


if __name__ == "__main__":
    sys.exit(main())
