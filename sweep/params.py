"""Tune's trial config -> flat dotted keys. Kept free of heavy imports: the report uses it too."""
from __future__ import annotations

from typing import Any, Mapping


def flatten_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the nested grid point (`"variant": {...}`, see sweep/grid.py) into the flat dotted keys."""
    flat = {k: v for k, v in params.items() if k != "variant"}
    variant = params.get("variant")
    if isinstance(variant, Mapping):
        flat.update(variant)
    return flat
