"""Registry from model name to `ModelConfig` (timm-style `register` / `build_model` / `list_models`).

A variant is data: a name plus a `ModelConfig`. Every CNN of the study is a config of the single builder
`cnn.build_cnn`; the ResNet family uses `strong.build_resnet18`. Parameter counts below are trainable
parameters (BatchNorm's gamma/beta count, its running statistics do not) and are asserted by
tests/test_models_registry.py. Notation: conv k->c costs 9*k*c + c, BN(c) 2c, Linear a->b a*b + b.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .cnn import build_cnn
from .config import ModelConfig
from .strong import build_resnet18

_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {"cnn": build_cnn, "resnet18": build_resnet18}
_REGISTRY: dict[str, ModelConfig] = {}
_DOCS: dict[str, str] = {}


class UnknownModelError(KeyError):
    """An unknown model name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(name: str, cfg: ModelConfig, doc: str = "") -> ModelConfig:
    """Add `name`; a duplicate name is an error (re-registering would silently change a published variant)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered; registered: {', '.join(list_models())}")
    if cfg.family not in _BUILDERS:
        raise ValueError(f"model {name!r}: no builder for family {cfg.family!r}; families: {', '.join(_BUILDERS)}")
    _REGISTRY[name] = cfg
    _DOCS[name] = doc
    return cfg


def list_models() -> list[str]:
    """Registered names, in registration order (the study's five first)."""
    return list(_REGISTRY)


def get_config(name: str, **overrides) -> ModelConfig:
    """The registered config of `name`, with `overrides` applied (unknown fields are an error)."""
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _REGISTRY[name].replace(**overrides) if overrides else _REGISTRY[name]


def describe(name: str) -> str:
    """One-line description of a registered model."""
    get_config(name)
    return _DOCS[name]


def build_model(name: str, **overrides) -> nn.Module:
    """Build the registered model `name`, e.g. `build_model("optimized", input_size=48, l2=1e-3)`."""
    return build_from_config(get_config(name, **overrides))


def build_from_config(cfg: ModelConfig) -> nn.Module:
    return _BUILDERS[cfg.family](cfg)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------------
# The study (section 4.1.1 and 4.4). Convs use padding "same" (the study does not say; see config.py).
# The parameter counts worked out below are the README's table, which tests compare with the built models.
#
# baseline: Conv 1->32, 32->64, 64->128, each BN, ReLU, MaxPool2; Flatten; Dense128 ReLU Dropout0.5; Dense7.
#   convs 320 + 18,496 + 73,856 = 92,672; BN 64 + 128 + 256 = 448; out Linear 128->7 = 903.
#   64x64: 64->32->16->8, Flatten 128*8*8 = 8192; Dense 8192*128+128 = 1,048,704
#          total 92,672 + 448 + 1,048,704 + 903 = 1,142,727
#   48x48: 48->24->12->6, Flatten 128*6*6 = 4608; Dense 4608*128+128 = 589,952
#          total 92,672 + 448 + 589,952 + 903 = 683,975
_BASE = ModelConfig()
register("baseline", _BASE, "study 4.1.1: Conv 32/64/128 (+BN, ReLU, MaxPool2), Dense128 Dropout0.5, Dense7")

# no_batchnorm: baseline minus the 448 BN parameters.  64: 1,142,279   48: 683,527
register("no_batchnorm", _BASE.replace(batchnorm=False), "baseline without BatchNorm")

# no_dropout: Dropout has no parameters, so the counts equal baseline's.  64: 1,142,727   48: 683,975
register("no_dropout", _BASE.replace(dropout=0.0), "baseline without Dropout")

# fewer_layers: blocks 32, 64 only. convs 320 + 18,496 = 18,816; BN 64 + 128 = 192; out 903.
#   64: 64->32->16, Flatten 64*16*16 = 16,384; Dense 16,384*128+128 = 2,097,280; total 2,117,191
#   48: 48->24->12, Flatten 64*12*12 =  9,216; Dense  9,216*128+128 = 1,179,776; total 1,199,687
register("fewer_layers", _BASE.replace(conv_widths=(32, 64)), "baseline with only the first two conv blocks")

# optimized (4.4): Conv 1->64, 64->128, 128->256 each BN, ReLU, L2 kernel penalty, MaxPool 2 stride 2;
# Flatten; Dense256 ReLU Dropout0.5; Dense128 ReLU Dropout0.5; Dense7.
# L2 strength: the study gives none; 1e-4 (per conv kernel, Keras-style sum not mean) is a common Keras
# default scale and is the centre of the Optuna search range.
#   convs 640 + 73,856 + 295,168 = 369,664; BN 128 + 256 + 512 = 896;
#   Dense 256->128 = 32,896; out 128->7 = 903.
#   64: Flatten 256*8*8 = 16,384; Dense 16,384*256+256 = 4,194,560; total 369,664+896+4,194,560+32,896+903 = 4,598,919
#   48: Flatten 256*6*6 =  9,216; Dense  9,216*256+256 = 2,359,552; total 369,664+896+2,359,552+32,896+903 = 2,763,911
register("optimized", ModelConfig(conv_widths=(64, 128, 256), dense_widths=(256, 128), dropout=0.5, l2=1e-4),
         "study 4.4: Conv 64/128/256 (+BN, ReLU, L2 1e-4, MaxPool2), Dense256/128 Dropout0.5, Dense7")

# ---------------------------------------------------------------------------------------------------
# Beyond the study: stronger models for 48x48 faces.
#
# vgg_fer: VGG-style net after Khaireddin & Chen 2021 ("Facial Emotion Recognition: State of the Art
# Performance on FER2013", 73.28% PrivateTest): 4 stages of 2x [Conv3x3, BN, ReLU] with 64/128/256/512
# channels, MaxPool2 after each; FC 1024, 1024 with Dropout 0.2; FC 7. Same builder as the study.
#   stage convs: 640+36,928 | 73,856+147,584 | 295,168+590,080 | 1,180,160+2,359,808 = 4,684,224
#   BN 2*(64+64+128+128+256+256+512+512) = 3,840; FC 1024->1024 = 1,049,600; out 1024->7 = 7,175.
#   48: 48->24->12->6->3, Flatten 512*9 = 4608; FC 4608*1024+1024 = 4,719,616; total 10,464,455
#   64: 64->32->16->8->4, Flatten 512*16 = 8192; FC 8192*1024+1024 = 8,389,632; total 14,134,471
register("vgg_fer", ModelConfig(conv_widths=(64, 128, 256, 512), convs_per_block=2, dense_widths=(1024, 1024),
                                dropout=0.2, input_size=48),
         "beyond the study: VGG-style (Khaireddin & Chen 2021), 4x2 convs 64-512 + BN, FC 1024x2 Dropout0.2")

# vgg_fer_small: vgg_fer's shape at 3/8 of its widths (24/48/96/192, FC 256x2), so that it fits the quick
# profile's hour on 2 CPU cores (~5 min per 48x48 epoch at 1 thread, like the baseline's 3 and optimized's 8;
# vgg_fer takes 30). Parameters about the baseline's and fewer_layers', but 8 convs deep instead of 2-3.
#   stage convs: 240+5,208 | 10,416+20,784 | 41,568+83,040 | 166,080+331,968 = 659,304
#   BN 2*(24+24+48+48+96+96+192+192) = 1,440; FC 256->256 = 65,792; out 256->7 = 1,799.
#   48: Flatten 192*3*3 = 1728; FC 1728*256+256 = 442,624; total 1,170,959
#   64: Flatten 192*4*4 = 3072; FC 3072*256+256 = 786,688; total 1,515,023
register("vgg_fer_small", ModelConfig(conv_widths=(24, 48, 96, 192), convs_per_block=2, dense_widths=(256, 256),
                                      dropout=0.2, input_size=48),
         "beyond the study: vgg_fer at 3/8 width (4x2 convs 24-192 + BN, FC 256x2 Dropout0.2), CPU-sized")

# resnet18_fer: torchvision resnet18, 3x3 stride-1 1-channel stem, no stem MaxPool, Dropout 0.2 + Linear 512->7.
#   torchvision resnet18 (1000 classes) = 11,689,512; stem 7x7x3x64 = 9,408 -> 3x3x1x64 = 576;
#   fc 512*1000+1000 = 513,000 -> 512*7+7 = 3,591. Total 11,689,512 - 9,408 + 576 - 513,000 + 3,591 = 11,171,271
#   (global average pooling: same at 48 and 64).
register("resnet18_fer", ModelConfig(family="resnet18", conv_widths=(64, 128, 256, 512), dense_widths=(),
                                     dropout=0.2, input_size=48),
         "beyond the study: torchvision ResNet-18, 3x3 stride-1 1-channel stem, no stem pool, Dropout0.2")
