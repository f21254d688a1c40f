"""`ModelConfig`: every architectural knob of the models in one frozen dataclass.

A variant of the study is a `ModelConfig` (see `registry.py`); `cnn.build_cnn` turns it into a module.
Overrides (`build_model("baseline", dropout=0.3)`) go through `ModelConfig.replace`, which rejects unknown
keys with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FAMILIES = ("cnn", "resnet18")
PADDINGS = ("same", "valid")
INITS = ("torch", "keras")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model. Units: widths are channels / units; sizes are pixels."""

    family: str = "cnn"  # which builder: "cnn" (cnn.build_cnn, all study variants + vgg_fer) or "resnet18" (strong.py)
    conv_widths: tuple[int, ...] = (32, 64, 128)  # output channels of each conv block; len = number of blocks
    convs_per_block: int = 1  # 3x3 convs per block before its pool (study: 1; VGG-style: 2)
    batchnorm: bool = True  # BatchNorm2d after every conv (before ReLU, as the study orders it)
    dropout: float = 0.5  # Dropout after every hidden dense layer; 0 = no Dropout layer at all
    dense_widths: tuple[int, ...] = (128,)  # hidden dense layers after Flatten (each Linear + ReLU [+ Dropout])
    l2: float = 0.0  # Keras-style kernel_regularizer lambda on every conv kernel: loss += l2 * sum(w**2); 0 = off
    padding: str = "same"  # conv padding; the study does not say: "same" keeps S/2^k maps, so 64->8 and 48->6
    pool: int = 2  # MaxPool kernel = stride after every block
    num_classes: int = 7  # FER-2013 emotions, order fer_data.CLASS_NAMES
    in_channels: int = 1  # grayscale faces
    input_size: int = 64  # side S of the square input [B, in_channels, S, S]; fixes the Flatten width
    # Initial weights: "torch" (PyTorch's defaults) or "keras" (Keras' defaults, which the study most likely had:
    # Glorot-uniform kernels and zero biases in every conv and dense layer). "keras" widens the first dense layer's
    # initial pre-activations about 2.5x at 64x64 (Glorot's bound sqrt(6 / (fan_in + fan_out)) against PyTorch's
    # 1 / sqrt(fan_in); rms 0.61 -> 1.56 in benchmarks/dead_units_probe.py, which shows what it does to dead units).
    init: str = "torch"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"ModelConfig.family={self.family!r}: valid families are {', '.join(FAMILIES)}")
        if self.padding not in PADDINGS:
            raise ValueError(f"ModelConfig.padding={self.padding!r}: valid values are {', '.join(PADDINGS)}")
        if self.init not in INITS:
            raise ValueError(f"ModelConfig.init={self.init!r}: valid values are {', '.join(INITS)}")
        if self.family != "cnn" and self.init != "torch":
            raise ValueError(f"ModelConfig.init={self.init!r}: only the cnn family has a choice of init")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout={self.dropout}: must be in [0, 1)")
        if self.l2 < 0:
            raise ValueError(f"ModelConfig.l2={self.l2}: must be >= 0")
        if not self.conv_widths or any(int(w) <= 0 for w in self.conv_widths):
            raise ValueError(f"ModelConfig.conv_widths={self.conv_widths}: need at least one positive width")
        if any(int(w) <= 0 for w in self.dense_widths):
            raise ValueError(f"ModelConfig.dense_widths={self.dense_widths}: widths must be positive")
        if self.input_size < 8:
            raise ValueError(f"ModelConfig.input_size={self.input_size}: must be >= 8 pixels")
        # Tuples, not lists, so configs stay hashable and JSON round-trips compare equal.
        object.__setattr__(self, "conv_widths", tuple(int(w) for w in self.conv_widths))
        object.__setattr__(self, "dense_widths", tuple(int(w) for w in self.dense_widths))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **overrides) -> "ModelConfig":
        """Copy with `overrides`; an unknown key is a one-line error listing the valid ones."""
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise TypeError(f"unknown ModelConfig field(s) {unknown}; valid fields: {', '.join(self.field_names())}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
