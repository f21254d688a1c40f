"""Keras-style L2 kernel penalty (what the study means by "L2"), distinct from optimiser weight decay.

Keras' `kernel_regularizer=l2(lam)` adds `lam * sum(W**2)` of that layer's kernel to the loss (a sum,
not a mean, and no factor 1/2); biases and BatchNorm parameters are not penalised. The builders mark each
penalised module with a float attribute `kernel_l2` (0 = off). With plain SGD this equals weight decay
`2*lam` on those kernels only; with Adam it does not (the penalty's gradient is rescaled by Adam), which is
why `TrainConfig.weight_decay` exists separately.
"""

from __future__ import annotations

import torch
from torch import nn


def l2_modules(model: nn.Module) -> list[tuple[str, nn.Module, float]]:
    """(name, module, lambda) for every module whose kernel carries a positive L2 lambda."""
    return [(n, m, float(m.kernel_l2)) for n, m in model.named_modules() if getattr(m, "kernel_l2", 0.0) > 0]


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """sum over penalised layers of lambda * sum(kernel**2); a 0-dim tensor (0.0 when no layer carries L2)."""
    terms = [lam * m.weight.float().pow(2).sum() for _, m, lam in l2_modules(model)]
    if not terms:
        p = next(model.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else "cpu")
    return torch.stack(terms).sum()
