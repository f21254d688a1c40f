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
TOP_KEYS = ("description", "scientific", "reference", "nuisance", "fixed", "audit", "search", "tune")
SEARCH_KEYS = ("metric", "mode", "num_samples", "space", "asha")
TUNE_KEYS = ("space", "num_samples", "epochs", "seed", "asha")
SPACE_KINDS = ("loguniform", "uniform", "choice")


class GridError(ValueError):
    """A grid file is missing, malformed or names an unknown key."""


@dataclass(frozen=True)
class Grid:
    name: str
    path: Path
    description: str = ""
    scientific: dict[str, list] = field(default_factory=dict)
    # The level each scientific axis is compared against; an axis not named here: its first listed value.
    reference: dict[str, Any] = field(default_factory=dict)
    nuisance: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    search: dict[str, Any] | None = None
    # Nuisance parameters tuned per scientific point on validation before the seeded comparison:
    # {"space": {key: {choice|loguniform|uniform: ...}}, "num_samples", "epochs", "seed", "asha"}.
    tune: dict[str, Any] | None = None

    @property
    def constants(self) -> dict[str, Any]:
        return {**self.nuisance, **self.fixed}

    def points(self, seeds: list[int]) -> list[dict[str, Any]]:
        """Every grid point of a grid sweep: the audit trials first (the leaky protocol trains on ~1.75x
        the images, so starting it first packs the concurrent slots better), then seed by seed every
        combination of the scientific axes: a sweep stopped early leaves whole paired seed sets."""
        axes = list(self.scientific.items())
        out = [{**extra, "seed": seeds[0]} for extra in self.audit]
        for seed in seeds:
            for values in itertools.product(*(v for _, v in axes)):
                out.append({**dict(zip((k for k, _ in axes), values)), "seed": seed})
        return out


def scientific_points(grid: Grid) -> list[dict[str, Any]]:
    """Each combination of the scientific axes once, without seeds, in grid order."""
    axes = list(grid.scientific.items())
    return [dict(zip((k for k, _ in axes), values)) for values in itertools.product(*(v for _, v in axes))]


def with_tuned(points: list[dict[str, Any]], chosen: list[dict], grid: Grid) -> list[dict[str, Any]]:
    """`points` with each one's tuned nuisance values merged in: those chosen for the scientific point it shares
    its scientific values with (an audit point of model X takes X's values; one matching none keeps the grid's)."""
    by_key = {tuple(c["point"].get(k) for k in grid.scientific): c["values"] for c in chosen}
    return [{**by_key.get(tuple(p.get(k) for k in grid.scientific), {}), **p} for p in points]


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
        reference=_mapping(raw, "reference", path),
        nuisance=_mapping(raw, "nuisance", path),
        fixed=_mapping(raw, "fixed", path),
        audit=list(raw.get("audit") or []),
        search=raw.get("search"),
        tune=raw.get("tune"),
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
    for key, level in grid.reference.items():
        if key not in grid.scientific:
            raise GridError(f"{p}: reference.{key}: not a scientific axis; axes: {', '.join(grid.scientific) or 'none'}")
        if level not in grid.scientific[key]:
            raise GridError(f"{p}: reference.{key}: {level!r} is not one of its levels {grid.scientific[key]}")
    if grid.search is not None:
        if grid.scientific:
            raise GridError(f"{p}: a grid has either 'scientific' axes or a 'search' block, not both")
        _validate_search(grid)
    elif not grid.scientific:
        raise GridError(f"{p}: needs 'scientific' axes (a grid sweep) or a 'search' block (an Optuna search)")
    if grid.tune is not None:
        if grid.search is not None:
            raise GridError(f"{p}: 'tune' (nuisance tuning per scientific point) needs 'scientific' axes, not 'search'")
        _validate_tune(grid)
    for extra in grid.audit:
        if not isinstance(extra, dict):
            raise GridError(f"{p}: each audit entry is a mapping of dotted keys, got {extra!r}")
    try:
        for point in grid.points([0]) if grid.scientific else [_search_probe(grid)]:
            TrialConfig.from_flat({**grid.constants, **point})
        if grid.tune is not None:
            for point in grid.points([0]):
                TrialConfig.from_flat({**grid.constants, **point, **_space_probe(grid.tune["space"])})
    except (ConfigError, KeyError) as err:
        raise GridError(f"{p}: {err}") from None


def _validate_block(p: Path, name: str, block, keys: tuple[str, ...]) -> None:
    """A `search:` or `tune:` block: a mapping of known keys whose `space` is well formed."""
    if not isinstance(block, dict):
        raise GridError(f"{p}: '{name}' must be a mapping with keys {', '.join(keys)}")
    unknown = sorted(set(block) - set(keys))
    if unknown:
        raise GridError(f"{p}: unknown key {name}.{unknown[0]}; valid: {', '.join(keys)}")
    _validate_space(p, name, block.get("space"))


def _validate_search(grid: Grid) -> None:
    p, search = grid.path, grid.search
    _validate_block(p, "search", search, SEARCH_KEYS)
    if search.get("mode", "max") not in ("max", "min"):
        raise GridError(f"{p}: search.mode must be max or min")


def _validate_tune(grid: Grid) -> None:
    p, spec = grid.path, grid.tune
    _validate_block(p, "tune", spec, TUNE_KEYS)
    clash = sorted(set(spec["space"]) & (set(grid.scientific) | {"seed", "train.epochs"}))
    if clash:
        raise GridError(f"{p}: tune.space.{clash[0]}: a tuned nuisance key cannot be a scientific axis, the seed "
                        "or the budget")
    for key, low in (("num_samples", 1), ("epochs", 1), ("seed", 0)):
        value = spec.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise GridError(f"{p}: tune.{key} must be an integer >= {low}, got {value!r}")


def _validate_space(p: Path, block: str, space) -> None:
    if not isinstance(space, dict) or not space:
        raise GridError(f"{p}: {block}.space must map dotted keys to {{loguniform|uniform|choice: ...}}")
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SPACE_KINDS:
            raise GridError(f"{p}: {block}.space.{key}: expected one of {', '.join(SPACE_KINDS)}, got {spec!r}")
        kind, args = next(iter(spec.items()))
        if kind == "choice" and (not isinstance(args, list) or not args):
            raise GridError(f"{p}: {block}.space.{key}: choice needs a non-empty list of values, got {args!r}")
        if kind != "choice" and (not isinstance(args, list) or len(args) != 2 or not args[0] < args[1]):
            raise GridError(f"{p}: {block}.space.{key}: {kind} needs [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise GridError(f"{p}: {block}.space.{key}: loguniform needs low > 0, got {args!r}")


def _space_probe(space: dict) -> dict:
    """One point of a space (its lower bounds / first choices) to validate the keys and values."""
    return {key: next(iter(spec.values()))[0] for key, spec in space.items()}


def _search_probe(grid: Grid) -> dict:
    return _space_probe(grid.search["space"])


def tune_space(space: dict) -> dict[str, Any]:
    """A `space` block ({key: {loguniform|uniform|choice: args}}) as Ray Tune sampling objects."""
    from ray import tune

    out = {}
    for key, spec in space.items():
        kind, args = next(iter(spec.items()))
        out[key] = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
                    "choice": lambda a: tune.choice(a)}[kind](args)
    return out


def search_space(grid: Grid) -> dict[str, Any]:
    return tune_space(grid.search["space"])


def in_space(spec: dict, value) -> bool:
    """Whether `value` is one of a `choice` or inside a `uniform` / `loguniform` range."""
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return value in args
    return isinstance(value, (int, float)) and args[0] <= value <= args[1]


def on_edge(spec: dict, value) -> bool:
    """Whether a chosen value sits at the edge of its range: the first or last choice, or the outer 10% of a
    range (in log space for loguniform). A best value on the edge says the range should be widened."""
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        ordered = sorted(args) if all(isinstance(a, (int, float)) for a in args) else list(args)
        return len(ordered) > 1 and value in (ordered[0], ordered[-1])
    import math

    lo, hi, v = (math.log(args[0]), math.log(args[1]), math.log(value)) if kind == "loguniform" else (*args, value)
    return not lo + 0.1 * (hi - lo) < v < hi - 0.1 * (hi - lo)
