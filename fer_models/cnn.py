"""The one configurable CNN builder behind every study variant (and the VGG-style `vgg_fer`).

    block_i = [Conv3x3(w_i) -> BatchNorm? -> ReLU] * convs_per_block -> MaxPool(pool)
    model   = blocks -> Flatten -> [Linear(d_j) -> ReLU -> Dropout?] * len(dense_widths) -> Linear(num_classes)

The study's order inside a block is Conv, BatchNorm, ReLU, MaxPool (Keras default: BN before the
activation). Conv kernels carry the Keras-style L2 lambda as the attribute `kernel_l2`
(see `regularization.l2_penalty`). The Flatten width is computed from `cfg.input_size`, so the parameter
count is known at build time (no lazy layers) and a checkpoint's shapes are fixed by its config.
"""

from __future__ import annotations

from torch import nn

from .config import ModelConfig


def spatial_after_blocks(cfg: ModelConfig) -> int:
    """Side of the feature map entering Flatten (pixels); an error if a block would shrink it below 1."""
    s = cfg.input_size
    for i, _ in enumerate(cfg.conv_widths):
        if cfg.padding == "valid":
            s -= 2 * cfg.convs_per_block  # each 3x3 valid conv loses one pixel per side
        s //= cfg.pool  # MaxPool floors, like Keras' "valid" pooling
        if s < 1:
            raise ValueError(
                f"input_size={cfg.input_size} is too small for {len(cfg.conv_widths)} blocks "
                f"(padding={cfg.padding!r}): feature map vanishes after block {i + 1}"
            )
    return s


def build_cnn(cfg: ModelConfig) -> nn.Sequential:
    """Build `cfg` as `Sequential(features=..., classifier=...)` with one sub-Sequential per conv block."""
    blocks = []
    c_in = cfg.in_channels
    pad = 1 if cfg.padding == "same" else 0
    for width in cfg.conv_widths:
        layers: list[nn.Module] = []
        for _ in range(cfg.convs_per_block):
            conv = nn.Conv2d(c_in, width, kernel_size=3, padding=pad)
            conv.kernel_l2 = float(cfg.l2)  # read by regularization.l2_penalty
            layers.append(conv)
            if cfg.batchnorm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            c_in = width
        layers.append(nn.MaxPool2d(cfg.pool, stride=cfg.pool))
        blocks.append(nn.Sequential(*layers))

    s = spatial_after_blocks(cfg)
    head: list[nn.Module] = [nn.Flatten()]
    d_in = c_in * s * s
    for width in cfg.dense_widths:
        head += [nn.Linear(d_in, width), nn.ReLU(inplace=True)]
        if cfg.dropout > 0:  # 0 means no Dropout layer, so "no_dropout" is structurally visible
            head.append(nn.Dropout(cfg.dropout))
        d_in = width
    head.append(nn.Linear(d_in, cfg.num_classes))

    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*blocks))
    model.add_module("classifier", nn.Sequential(*head))
    if cfg.init == "keras":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # Keras' glorot_uniform: fans count the kernel's 3x3 too
                nn.init.zeros_(m.bias)
    return model
