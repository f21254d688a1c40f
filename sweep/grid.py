"""Grid files (`sweep/grids/<study>.yaml`) and the one function that turns a grid into Tune's param_space.

A grid point is a dict of dotted keys (`{"model.name": "baseline", "seed": 0, ...}`); the scientific
axes are crossed with each other and with the seeds, audit trials run with the first seed only.
Constants (nuisance + fixed + profile budget) sit at the top level of the param_space, the grid
point in a nested `"variant"` grid value, so TensorBoard's HParams tab compares trials by it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweep.config import ConfigError, TrialConfig

GRIDS_DIR = Path(__file__).parent / "grids"
TOP_KEYS = ("description", "scientific", "nuisance", "fixed", "audit", "search")
SEARCH_KEYS = ("metric", "mode", "num_samples", "space", "asha")
SPACE_KINDS = ("loguniform", "uniform", "choice")


class GridError(ValueError):
    """A grid file is missing, malformed or names an unknown key."""


@dataclass(frozen=True)
class Grid:
    name: str
    path: Path
    description: str = ""
    scientific: dict[str, list] = field(default_factory=dict)
    nuisance: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] | None = None

    @property
    def constants(self) -> dict[str, Any]:
        return {**self.nuisance, **self.fixed}

    def points(self, seeds: list[int]) -> list[dict[str, Any]]:
        """Every grid point of a grid sweep: the audit trials first (the leaky protocol trains on ~1.75x
        the images, so starting it first packs the concurrent slots better), then scientific axes x seeds."""
        axes = list(self.scientific.items())
        out = [{**extra, "seed": seeds[0]} for extra in self.audit]
        for values in itertools.product(*(v for _, v in axes)):
            for seed in seeds:
                out.append({**dict(zip((k for k, _ in axes), values)), "seed": seed})
        return out


def builtin_grids() -> list[str]:
    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def load_grid(spec: str) -> Grid:
    """`spec` is a built-in grid name (`ablation`, `search`) or a path to a YAML file."""
    path = Path(spec)
    if not path.suffix:
        path = GRIDS_DIR / f"{spec}.yaml"
        if not path.exists():
            raise GridError(f"--grid {spec}: no such built-in grid; valid: {', '.join(builtin_grids())} or a .yaml path")
    if not path.exists():
        raise GridError(f"{path}: grid file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise GridError(f"{path}:{where} invalid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise GridError(f"{path}: a grid is a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise GridError(f"{path}: unknown top-level key {unknown[0]!r}; valid: {', '.join(TOP_KEYS)}")
    grid = Grid(
        name=path.stem,
        path=path,
        description=str(raw.get("description", "")),
        scientific=_mapping(raw, "scientific", path),
        nuisance=_mapping(raw, "nuisance", path),
        fixed=_mapping(raw, "fixed", path),
        audit=list(raw.get("audit") or []),
        search=raw.get("search"),
    )
    _validate(grid)
    return grid


def _mapping(raw, key, path) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise GridError(f"{path}: {key!r} must be a mapping of dotted keys")
    return value


def _validate(grid: Grid) -> None:
    """Build a TrialConfig for every point so a typo fails before any trial starts."""
    p = grid.path
    for key, values in grid.scientific.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{p}: scientific.{key} must be a non-empty list of values")
    if grid.search is not None:
        if grid.scientific:
            raise GridError(f"{p}: a grid has either 'scientific' axes or a 'search' block, not both")
        _validate_search(grid)
    elif not grid.scientific:
        raise GridError(f"{p}: needs 'scientific' axes (a grid sweep) or a 'search' block (an Optuna search)")
    for extra in grid.audit:
        if not isinstance(extra, dict):
            raise GridError(f"{p}: each audit entry is a mapping of dotted keys, got {extra!r}")
    try:
        for point in grid.points([0]) if grid.scientific else [_search_probe(grid)]:
            TrialConfig.from_flat({**grid.constants, **point})
    except (ConfigError, KeyError) as err:
        raise GridError(f"{p}: {err}") from None


def _validate_search(grid: Grid) -> None:
    p, search = grid.path, grid.search
    if not isinstance(search, dict):
        raise GridError(f"{p}: 'search' must be a mapping with keys {', '.join(SEARCH_KEYS)}")
    unknown = sorted(set(search) - set(SEARCH_KEYS))
    if unknown:
        raise GridError(f"{p}: unknown key search.{unknown[0]}; valid: {', '.join(SEARCH_KEYS)}")
    space = search.get("space")
    if not isinstance(space, dict) or not space:
        raise GridError(f"{p}: search.space must map dotted keys to {{loguniform|uniform|choice: ...}}")
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SPACE_KINDS:
            raise GridError(f"{p}: search.space.{key}: expected one of {', '.join(SPACE_KINDS)}, got {spec!r}")
        kind, args = next(iter(spec.items()))
        if kind != "choice" and (not isinstance(args, list) or len(args) != 2 or not args[0] < args[1]):
            raise GridError(f"{p}: search.space.{key}: {kind} needs [low, high] with low < high, got {args!r}")
    if search.get("mode", "max") not in ("max", "min"):
        raise GridError(f"{p}: search.mode must be max or min")


def _search_probe(grid: Grid) -> dict:
    """One point of the search space (its lower bounds) to validate the keys."""
    point = {}
    for key, spec in grid.search["space"].items():
        kind, args = next(iter(spec.items()))
        point[key] = args[0]
    return point


def search_space(grid: Grid) -> dict[str, Any]:
    from ray import tune

    out = {}
    for key, spec in grid.search["space"].items():
        kind, args = next(iter(spec.items()))
        out[key] = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
                    "choice": lambda a: tune.choice(a)}[kind](args)
    return out
