"""Typed trial configuration, built from the flat dotted keys Ray Tune hands a trial.

Dotted keys (`"model.name"`, `"train.lr"`, `"augment.hflip_p"`) exist only at the Ray boundary:
`TrialConfig.from_flat(config)` is the first line of every trial and nothing below it sees a dict.
Unknown keys are errors that list the valid ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from fer_data import BALANCE_METHODS, PROTOCOLS, AugmentConfig
from fer_models import get_config as get_model_config
from fer_models.training import TrainConfig
from sweep.params import flatten_params  # noqa: F401  (re-exported: the trial's first step)


class ConfigError(ValueError):
    """A grid, profile or flag names a key or value that does not exist."""


@dataclass(frozen=True)
class DataSection:
    """What the shared data preparation does; trials with equal sections share one prepared dataset."""

    protocol: str = "official"  # official | leaky-oversample-before-split (the study's mistake, audit only)
    input_size: int = 64  # pixels per side fed to the model; the study resamples 48 -> 64
    smoothing_sigma: float = 0.0  # Gaussian smoothing sigma in pixels (study Eq. 2); 0 = off
    standardize: bool = False  # subtract train mean / divide by train std after min-max scaling
    balance: str = "none"  # none | oversample | smote | class_weight (training split only)
    limit_per_split: int = 0  # 0 = every row; >0 = a stratified subset per split (smoke runs)
    seed: int = 0  # seed of the shared preparation (resampling, the leaky split); not the trial seed

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"data.protocol: unknown value {self.protocol!r}; valid: {', '.join(PROTOCOLS)}")
        if self.balance not in BALANCE_METHODS:
            raise ConfigError(f"data.balance: unknown value {self.balance!r}; valid: {', '.join(BALANCE_METHODS)}")
        if self.input_size < 16:
            raise ConfigError(f"data.input_size: {self.input_size} is too small (>= 16 pixels)")

    @property
    def preprocess(self):
        """fer_data's per-image preprocessing of this section (also what `to_model_input` reads per batch)."""
        from fer_data import PreprocessConfig

        return PreprocessConfig(self.input_size, self.smoothing_sigma, self.standardize)

    def to_fer_data(self):
        """The one translation into fer_data's config of the shared preparation."""
        from fer_data import BalanceConfig
        from fer_data.pipeline import DataConfig

        return DataConfig(protocol=self.protocol, seed=self.seed, limit_per_split=self.limit_per_split or None,
                          preprocess=self.preprocess, balance=BalanceConfig(method=self.balance))


@dataclass(frozen=True)
class ModelSection:
    """A registry name plus overrides of its ModelConfig fields (e.g. `model.l2`, `model.dropout`)."""

    name: str = "baseline"
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialConfig:
    seed: int = 0  # fixes initialisation, data order and augmentation of one trial
    data: DataSection = DataSection()
    augment: AugmentConfig = AugmentConfig()
    model: ModelSection = ModelSection()
    train: TrainConfig = TrainConfig()

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "TrialConfig":
        flat = flatten_params(flat)
        groups: dict[str, dict[str, Any]] = {"data": {}, "augment": {}, "model": {}, "train": {}}
        seed = 0
        for key, value in flat.items():
            if key == "seed":
                seed = int(value)
                continue
            section, _, name = key.partition(".")
            if section not in groups or not name:
                raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid_keys())}")
            groups[section][name] = value
        model_name = groups["model"].pop("name", ModelSection.name)
        model_fields = _field_names(type(get_model_config(model_name))) - {"input_size"}
        if "input_size" in groups["model"]:
            raise ConfigError("model.input_size: set data.input_size instead (the data are resampled to it)")
        for name in groups["model"]:
            if name not in model_fields:
                raise ConfigError(f"unknown key 'model.{name}'; valid: model.name, "
                                  + ", ".join(f"model.{f}" for f in sorted(model_fields)))
        try:  # values too (a dropout of 2 fails here, not in a worker an hour later)
            get_model_config(model_name, **groups["model"])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model: {err}") from None
        return cls(
            seed=seed,
            data=_build(DataSection, "data", groups["data"]),
            augment=_build(AugmentConfig, "augment", groups["augment"]),
            model=ModelSection(model_name, dict(groups["model"])),
            train=_build(TrainConfig, "train", groups["train"]),
        )

    def to_flat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed, "model.name": self.model.name}
        out.update({f"model.{k}": v for k, v in self.model.overrides.items()})
        for section in ("data", "augment", "train"):
            out.update({f"{section}.{k}": v for k, v in dataclasses.asdict(getattr(self, section)).items()})
        return out


def valid_keys() -> list[str]:
    keys = ["seed", "model.name", "model.<field of the model's config, see `python -m fer_models summary`>"]
    for section, klass in (("data", DataSection), ("augment", AugmentConfig), ("train", TrainConfig)):
        keys += [f"{section}.{f}" for f in _field_names(klass)]
    return keys


def _field_names(klass) -> set[str]:
    return {f.name for f in fields(klass)}


def _build(klass, section: str, values: dict[str, Any]):
    names = _field_names(klass)
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key '{section}.{unknown[0]}'; valid: "
                          + ", ".join(f"{section}.{n}" for n in sorted(names)))
    typed = {}
    for f in fields(klass):
        if f.name in values:
            typed[f.name] = _coerce(values[f.name], f.default, f"{section}.{f.name}")
    try:
        return klass(**typed)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # the dataclass's own range checks
        raise ConfigError(f"{section}: {err}") from None


def _coerce(value, default, key):
    """YAML and CLI values arrive as str/int/float; convert to the type of the field's default."""
    if default is dataclasses.MISSING or default is None or isinstance(value, type(default)):
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a valid {type(default).__name__}") from None
