"""The report page's figures beside those of a run folder: ROC and precision-recall curves, the
reliability diagram, and the confusion matrix as an image for TensorBoard. Each returns PNG bytes."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

from . import _plt

DPI = 90


def png(fig) -> bytes:
    """Render and close a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def training_panels(rows: Sequence[dict]) -> list[bytes]:
    """The run's training curves one panel at a time (they wrap on a narrow screen)."""
    from . import curve_keys, draw_curve

    out = []
    for key in curve_keys(rows):
        fig, ax = _plt().subplots(figsize=(5, 3.8))
        draw_curve(ax, rows, key)
        fig.tight_layout()
        out.append(png(fig))
    return out


def roc(curves: Sequence[dict]) -> bytes:
    """ROC curves, one line per scored class, AUC in the legend."""
    fig, ax = _plt().subplots(figsize=(5, 4.4))
    for c in curves:
        if len(c["fpr"]):
            ax.plot(c["fpr"], c["tpr"], label=f"{c['class']}  AUC {c['auc']:.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return png(fig)


def precision_recall(curves: Sequence[dict]) -> bytes:
    """Step-wise precision-recall curves, one per scored class, AP in the legend."""
    fig, ax = _plt().subplots(figsize=(5, 4.4))
    for c in curves:
        if len(c["recall"]):
            ax.step(np.r_[0.0, c["recall"]], np.r_[c["precision"][0], c["precision"]], where="pre",
                    label=f"{c['class']}  AP {c['ap']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return png(fig)


def reliability(rel: dict) -> bytes:
    """Accuracy against confidence per bin (bars, with their counts), the diagonal of perfect calibration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    bins = rel["bins"]
    ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=[b["high"] - b["low"] for b in bins],
           align="edge", alpha=0.7, edgecolor="black", label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="darkred",
            ms=4, label="bin mean confidence")
    for b in bins:
        ax.text((b["low"] + b["high"]) / 2, min(b["accuracy"] + 0.02, 0.97), str(b["n"]), ha="center", fontsize=7)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ece = rel["ece"]
    ax.set(xlabel="confidence (top class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="reliability" + (f"  (ECE {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


def confusion_image(confusion, classes: Sequence[str], title: str = "") -> np.ndarray:
    """The run folder's confusion matrix figure as an (H, W, 3) uint8 array (TensorBoard images)."""
    from . import plot_confusion

    return np.asarray(Image.open(io.BytesIO(plot_confusion(confusion, classes, None, title))).convert("RGB"))
