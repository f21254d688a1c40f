"""Dead ReLU units: which units of a model never fire on a set of images.

A ReLU unit that is never positive on any image passes no gradient on them (a "dead" unit; He et al. 2015,
Lu et al. 2019). `sweep.evaluate` counts them for any checkpoint; a sweep's trials count them on validation
with the selected weights (final.json `unit_activity`), and the report shows them per variant.
"""
from __future__ import annotations

import torch


class UnitActivity:
    """Forward hooks on every `nn.ReLU` of a model: per layer, the units (a conv layer's channels, a dense layer's
    features) that were never positive on any image passed through while the hooks were on, and the share of
    outputs that were positive. Use around an evaluation, then `close()`."""

    def __init__(self, model: torch.nn.Module):
        self.seen: dict[str, list] = {}  # layer name -> [ever positive per unit, positive outputs, outputs, kind]
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in model.named_modules()
                        if isinstance(m, torch.nn.ReLU)]

    def _hook(self, name: str):
        def hook(_module, _inputs, out):
            pos = out.detach().transpose(0, 1).reshape(out.shape[1], -1) > 0  # units x (images * positions)
            key = name  # a ReLU module called at two widths gets a row per width
            if name in self.seen and self.seen[name][0].numel() != len(pos):
                key = f"{name} ({len(pos)} units)"
            kind = "conv" if out.dim() == 4 else "dense"
            ever, n_pos, n, _ = self.seen.setdefault(key, [torch.zeros(len(pos), dtype=torch.bool), 0, 0, kind])
            self.seen[key] = [ever | pos.any(1).cpu(), n_pos + int(pos.sum()), n + pos.numel(), kind]
        return hook

    def close(self) -> list[dict]:
        """Remove the hooks; one row per ReLU layer, in forward order: layer (module name), kind ("conv": units
        are channels, "dense": features), units, never_active, active_share."""
        for h in self.handles:
            h.remove()
        return [{"layer": name, "kind": kind, "units": int(ever.numel()), "never_active": int((~ever).sum()),
                 "active_share": n_pos / n if n else float("nan")}
                for name, (ever, n_pos, n, kind) in self.seen.items()]
