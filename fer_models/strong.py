"""Stronger-than-the-study model: torchvision's ResNet-18 adapted to 1-channel 48x48 faces.

Changes to `torchvision.models.resnet18` (He et al. 2016), the usual small-image adaptation (as for CIFAR):
the 7x7 stride-2 stem becomes a 3x3 stride-1 conv with `cfg.in_channels` inputs and the stem MaxPool is
dropped, so a 48x48 face reaches layer4 as a 6x6 map instead of 2x2; the head is `Dropout? -> Linear(512, 7)`.
Global average pooling makes the parameter count independent of `input_size`. No pretrained weights
(ImageNet RGB stems do not transfer to this stem and nothing is downloaded).
"""

from __future__ import annotations

from torch import nn
from .config import ModelConfig


def build_resnet18(cfg: ModelConfig) -> nn.Module:
    """ResNet-18 for `cfg`; honours in_channels, num_classes, dropout (before fc) and l2 (every conv kernel)."""
    if not cfg.batchnorm:
        raise ValueError("resnet18 family: batchnorm=False is not supported (ResNet blocks are built with BatchNorm)")
    if tuple(cfg.conv_widths) != (64, 128, 256, 512) or cfg.dense_widths:
        raise ValueError("resnet18 family: conv_widths must be (64, 128, 256, 512) and dense_widths () (fixed by torchvision)")
    from torchvision.models import resnet18  # lazy: torchvision adds ~1 s to every `import fer_models`

    model = resnet18(weights=None, num_classes=cfg.num_classes)
    model.conv1 = nn.Conv2d(cfg.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    if cfg.dropout > 0:
        model.fc = nn.Sequential(nn.Dropout(cfg.dropout), model.fc)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.kernel_l2 = float(cfg.l2)
    return model
