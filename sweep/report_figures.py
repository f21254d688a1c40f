"""Small PNG figures for the report: a row-normalised confusion matrix and learning curves per variant.

Uses matplotlib's Agg backend (no display); figures are sized and rendered at a modest dpi so each
PNG stays around 30-80 KB and the committed report stays small. Called by `sweep.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: sweeps run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 90


def confusion_figure(
    confusion: np.ndarray, class_names: Sequence[str], title: str, path: Path
) -> Path:
    """Write a row-normalised confusion matrix (rows = true class) of count matrix `confusion` [K,K]."""
    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    # a class absent from the test split has an all-zero row: leave it at 0 instead of dividing by 0
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.0, 4.4), dpi=DPI)
    im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues")
    k = len(class_names)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(norm.shape[0]):
        for j in range(norm.shape[1]):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def curves_figure(curves: Mapping[str, Mapping[int, float]], title: str, path: Path) -> Path:
    """Write loss and accuracy vs epoch; `curves` maps "train/loss", "val/acc", ... to {epoch: mean}."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0), dpi=DPI)
    for ax, metric in zip(axes, ("loss", "acc")):
        for split, style in (("train", "-"), ("val", "--")):
            series = curves.get(f"{split}/{metric}") or {}
            if series:
                xs = sorted(series)
                ax.plot(xs, [series[x] for x in xs], style, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
