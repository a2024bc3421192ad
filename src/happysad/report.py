"""Figures for a run folder: training curves and the confusion matrix (matplotlib, no display needed)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_results(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def plot_curves(results_csv: str | os.PathLike, out: str | os.PathLike, title: str = "") -> Path:
    """Accuracy and loss per epoch, train vs validation (the seed's two plots, side by side)."""
    plt = _plt()
    rows = read_results(results_csv)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        for prefix, style, name in (("", "-o", "train"), ("val_", "-s", "val")):
            ys = [r.get(prefix + key) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, style, ms=3, label=name, color="teal" if not prefix else "orange")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], out: str | os.PathLike,
                   title: str = "") -> Path:
    """Confusion matrix with counts and row-normalised shading (rows: true class)."""
    import numpy as np

    plt = _plt()
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(classes)
    size = max(4.0, 0.7 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title + ' - ' if title else ''}accuracy {acc:.3f} (n={int(cm.sum())})")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
