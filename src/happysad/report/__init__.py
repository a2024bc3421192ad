"""Figures and HTML reports: training curves and the confusion matrix of a run folder (matplotlib, no
display needed) and the page of a run or an evaluation (``page``: metrics, curves,
calibration and a gallery of mistakes; ``scores``: the numbers behind its figures)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_results(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def curve_keys(rows: Sequence[dict]) -> list[str]:
    """What a training log can show: accuracy, loss, and the learning rate when it was logged."""
    return ["accuracy", "loss"] + (["learning_rate"] if any("learning_rate" in r for r in rows) else [])


def draw_curve(ax, rows: Sequence[dict], key: str) -> None:
    """One training-log quantity per epoch (train vs validation), with a dotted line at the kept epoch."""
    from matplotlib.ticker import MaxNLocator

    from .scores import kept_epoch

    epochs = [int(r["epoch"]) + 1 for r in rows]
    for prefix, style, name in (("", "-o", "train"), ("val_", "-s", "val")):
        ys = [r.get(prefix + key) for r in rows]
        if any(y is not None for y in ys) and not (prefix and key == "learning_rate"):
            ax.plot(epochs, ys, style, ms=3, label="per epoch" if key == "learning_rate" else name,
                    color="teal" if not prefix else "orange")
    lrs = [r["learning_rate"] for r in rows if r.get("learning_rate", 0) > 0]
    if key == "learning_rate" and lrs and max(lrs) >= 10 * min(lrs):
        ax.set_yscale("log")
    elif key == "learning_rate":
        ax.set_ylim(0, 1.1 * max(lrs, default=1))
    kept = kept_epoch(rows)
    if kept:
        ax.axvline(kept["epoch"], color="grey", ls=":", label=f"kept (epoch {kept['epoch']})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title(key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_curves(results_csv: str | os.PathLike, out: str | os.PathLike, title: str = "") -> Path:
    """Accuracy and loss per epoch, train vs validation (the seed's two plots, side by side), the
    learning rate when the log has it, and a dotted line at the epoch whose weights were kept."""
    plt = _plt()
    rows = read_results(results_csv)
    keys = curve_keys(rows)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4))
    for ax, key in zip(axes, keys):
        draw_curve(ax, rows, key)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], out: str | os.PathLike | None,
                   title: str = "") -> Path | bytes:
    """Confusion matrix with counts and row-normalised shading (rows: true class). ``out`` None: PNG bytes."""
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
    if out is None:
        from .figures import png

        return png(fig)
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


from .page import inline, write_eval_report, write_run_report  # noqa: E402  (the page uses the figures above)
from .tensorboard import require_tensorboard, tensorboard_callbacks  # noqa: E402
