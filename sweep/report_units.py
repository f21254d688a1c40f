"""The report's dead ReLU units: per variant and ReLU layer, the units never active on validation.

Trials record, with the weights selected on validation, which ReLU units never fired on any validation face
(final.json `unit_activity`, `fer_models.activity.UnitActivity`; trials from 2026-12-03 evening on). A unit that
never fires passes no gradient there: a layer mostly dead narrows the network to its few live units, which can
decide a comparison on its own (reports/components-64px-fer2013: the baseline's dense layer kept 2-5 of its 128
units at 64x64). Reports whose trials predate the record have no such section.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sweep.report_format import md_table
from sweep.report_load import Variant

MOSTLY_DEAD = 0.9  # share of a layer's units never active, mean over seeds, that the section names


def layer_rows(v: Variant) -> list[dict]:
    """One row per ReLU layer of the variant: its name, kind, units, never-active count per seed (seed order)
    and share of outputs active, over the seeds whose trials recorded the same layers."""
    per_seed = [u for u in (t.unit_activity("val") for t in sorted(v.done, key=lambda t: repr(t.seed_key)))
                if u is not None]
    if not per_seed:
        return []
    names = [(r["layer"], r["units"]) for r in per_seed[0]]
    per_seed = [u for u in per_seed if [(r["layer"], r["units"]) for r in u] == names]
    return [{"layer": first["layer"], "kind": first["kind"], "units": first["units"],
             "dead": [u[i]["never_active"] for u in per_seed],
             "share": float(np.mean([u[i]["active_share"] for u in per_seed]))}
            for i, first in enumerate(per_seed[0])]


def section_units(variants: Sequence[Variant]) -> list[str]:
    table, mostly = [], []
    for v in variants:
        for r in layer_rows(v):
            frac = float(np.mean(r["dead"])) / r["units"]
            if frac >= MOSTLY_DEAD:
                mostly.append(f"{v.label} `{r['layer']}` ({r['kind']}, {100 * frac:.0f}%)")
            table.append([v.label, f"`{r['layer']}`", r["kind"], r["units"],
                          f"{np.mean(r['dead']):.1f} ({', '.join(map(str, r['dead']))})", f"{100 * frac:.0f}%",
                          f"{100 * r['share']:.1f}%", "**mostly dead**" if frac >= MOSTLY_DEAD else ""])
    if not table:
        return []
    return ["## Dead ReLU units (validation)", "",
            "Per variant and ReLU layer, in forward order, with the weights each trial selected on validation: the "
            "units (a conv layer's channels, a dense layer's features) never positive on any validation face, which "
            "pass no gradient there (\"dead\"), as the mean over seeds with each seed's count in parentheses, and "
            "the share of the layer's outputs that were positive. A layer whose units are mostly dead narrows the "
            "network to the few that live: a difference between variants may then be about which recipe kills "
            f"units rather than about the component removed. Mostly dead (>= {100 * MOSTLY_DEAD:.0f}% of units, "
            f"mean over seeds): {'; '.join(mostly) if mostly else 'none'}.", "",
            *md_table(["variant", "layer", "kind", "units", "never active: mean (per seed)", "share dead",
                       "outputs active", ""], table), ""]
