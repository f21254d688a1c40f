"""Writers of fake experiment folders in DESIGN.md's format, shared by the tests/test_report*.py files.

Holds no tests. Every number is chosen so the report's answer can be computed by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

LEAKY = "leaky-oversample-before-split"
K = 7
BALANCED = [100] * K
# official PrivateTest's class counts (Happy, class 3, is the majority: 879 / 3589 = 24.49%)
PRIVATE_TEST = [491, 55, 528, 879, 594, 416, 626]


def split_metrics(acc: float, *, support=None, macro_recall: float | None = None, confusion=None,
                  subsets: dict | None = None) -> dict:
    """Metrics of one split with accuracy `acc`: per class, `acc` of its faces on the diagonal and the
    rest predicted as the next class (so no class dominates the predictions)."""
    support = list(support or BALANCED)
    if confusion is None:
        confusion = [[0] * K for _ in range(K)]
        for i, s in enumerate(support):
            right = round(acc * s)
            confusion[i][i] = right
            confusion[i][(i + 1) % K] += s - right
    f1 = [round(acc - 0.01 * i, 4) for i in range(K)]
    m = {
        "acc": acc, "loss": 1.0 - acc, "macro_precision": acc - 0.01,
        "macro_recall": acc - 0.02 if macro_recall is None else macro_recall, "macro_f1": acc - 0.03,
        "per_class": {"precision": f1, "recall": f1, "f1": f1, "support": support},
        "confusion": confusion,
    }
    if subsets is not None:
        m["subsets"] = subsets
    return m


def collapsed_metrics(support=None, cls: int = 3) -> dict:
    """Every face predicted as class `cls` (Happy): accuracy = its share, macro recall = 1/7."""
    support = list(support or PRIVATE_TEST)
    confusion = [[s if j == cls else 0 for j in range(K)] for s in support]
    return split_metrics(support[cls] / sum(support), support=support, macro_recall=1 / K, confusion=confusion)


def curve_values(final: float, epochs: int, shape: str) -> list[float]:
    """Per-epoch val accuracies ending at `final`: "plateau" reaches it at epoch epochs-2 and stays flat
    (best epoch epochs-2, no rise over the last two epochs); "rising" climbs linearly to the last epoch."""
    if shape == "rising":
        return [final * e / epochs for e in range(1, epochs + 1)]
    top = max(1, epochs - 2)
    return [final * min(1.0, e / top) for e in range(1, epochs + 1)]


def write_trial(exp: Path, name: str, params: dict, *, train=0.5, val=0.5, test=0.5, epochs: int = 5,
                curve: str = "plateau", best_epoch: int | None = None, final: bool = True,
                error: str | None = None, wall_s: float = 100.0, n_params: int = 620615,
                metrics: dict | None = None, test_support=None, test_subsets: dict | None = None,
                test_recall: float | None = None, predictions: dict | None = None,
                unit_activity: dict | None = None) -> Path:
    """One Tune trial folder: params.json, result.json (one line per epoch plus the closing report
    that repeats the last epoch), final.json, error.txt."""
    d = exp / name
    d.mkdir(parents=True)
    (d / "params.json").write_text(json.dumps(params))
    vals = curve_values(val, epochs, curve)
    trains = curve_values(train, epochs, curve)
    rows = []
    for e in range(1, epochs + 1):
        rows.append({"epoch": e, "training_iteration": e, "train/loss": 2.0 - trains[e - 1],
                     "train/acc": trains[e - 1], "val/loss": 2.1 - vals[e - 1], "val/acc": vals[e - 1],
                     "best_val_acc": max(vals[:e]), "time_total_s": wall_s * e / epochs,
                     "config": {"ignored": True}})
    if best_epoch is None:
        best_epoch = max(range(1, epochs + 1), key=lambda e: (vals[e - 1], -e))
    if final:  # the trial's closing report: no train metrics, val/acc of the selected weights
        rows.append({"epoch": epochs, "val/acc": max(vals), "best_val_acc": max(vals), "best_epoch": best_epoch})
    (d / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    if final:
        m = metrics or {"train": split_metrics(train), "val": split_metrics(val),
                        "test": split_metrics(test, support=test_support, subsets=test_subsets,
                                              macro_recall=test_recall)}
        body = {"best_epoch": best_epoch, "epochs_run": epochs, "params": n_params, "wall_s": wall_s, "metrics": m}
        if predictions is not None:  # final.json `predictions`: {split: {"y_true": "...", "y_pred": "..."}}
            body["predictions"] = predictions
        if unit_activity is not None:  # final.json `unit_activity`: {split: [{layer, kind, units, ...}]}
            body["unit_activity"] = unit_activity
        (d / "final.json").write_text(json.dumps(body))
    if error is not None:
        (d / "error.txt").write_text(error)
    return d


def params(model: str, seed: int, protocol: str = "official", *, balance: str | None = None,
           epochs: int = 5, **consts) -> dict:
    # DESIGN.md: constants flat at top level, the grid point nested under "variant"
    variant = {"model.name": model, "seed": seed, "data.protocol": protocol}
    if balance is not None:
        variant["data.balance"] = balance
    return {"train.epochs": epochs, "data.input_size": 64, **consts, "variant": variant}


def write_meta(exp: Path, **extra) -> None:
    meta = {"name": exp.name, "command": "python -m sweep.run --grid ablation", "grid": "ablation",
            "profile": "quick", "started": "2025-01-01T00:00:00", **extra}
    (exp / "sweep_meta.json").write_text(json.dumps(meta))


def new_exp(root: Path, name: str = "exp", **meta) -> Path:
    exp = root / name
    exp.mkdir(parents=True)
    write_meta(exp, **meta)
    return exp


def row(report: str, label: str) -> list[str]:
    """Cells of the first markdown table row whose first cell is `label`."""
    for line in report.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # "\|" is an escaped pipe
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no table row for {label!r}")


def rows(report: str, label: str) -> list[list[str]]:
    out = []
    for line in report.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if line.startswith("|") and cells[0] == label:
            out.append(cells)
    return out


def section(report: str, title: str) -> str:
    start = report.index(f"## {title}")
    nxt = report.find("\n## ", start + 1)
    return report[start: nxt if nxt >= 0 else None]
