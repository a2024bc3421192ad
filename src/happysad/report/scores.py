"""Curves and tables behind a report's figures, from true labels and scores (NumPy only).

Scores are probabilities; for more than two classes every class is scored one-vs-rest. The ROC area is
``evaluate.roc_auc`` (the one used in metrics.json); average precision follows the usual step-wise
definition (sum over thresholds of the recall gained times the precision there), as scikit-learn's does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..evaluate import roc_auc

THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
BINS = 10  # reliability diagram


def _ranked(y: np.ndarray, score: np.ndarray):
    """Cumulative true and false positives at each distinct score, highest first."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of equal scores
    tp = np.cumsum(yy)[last]
    fp = (last + 1) - tp
    return tp.astype(float), fp.astype(float), s[last]


def roc_curve(y, score) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), from (0, 0) to (1, 1). Empty when a class is absent."""
    tp, fp, _ = _ranked(y, score)
    if not len(tp) or tp[-1] == 0 or fp[-1] == 0:
        return np.zeros(0), np.zeros(0)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def pr_curve(y, score) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct score, highest score first. Empty without positives."""
    tp, fp, _ = _ranked(y, score)
    if not len(tp) or tp[-1] == 0:
        return np.zeros(0), np.zeros(0)
    return tp / tp[-1], tp / (tp + fp)


def average_precision(y, score) -> float | None:
    """Area under the step-wise precision-recall curve; None without positives."""
    recall, precision = pr_curve(y, score)
    if not len(recall):
        return None
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def one_vs_rest(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Per scored class: name, ROC and PR curves, ROC AUC and AP (None when it cannot be computed).
    Two classes score only the second (the sigmoid's positive class); more score each against the rest."""
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float).reshape(len(y_true), len(classes))
    scored = [1] if len(classes) == 2 else range(len(classes))
    out = []
    for k in scored:
        y, s = y_true == k, probs[:, k]
        fpr, tpr = roc_curve(y, s)
        recall, precision = pr_curve(y, s)
        out.append({"class": classes[k], "fpr": fpr, "tpr": tpr, "recall": recall, "precision": precision,
                    "auc": roc_auc(y, s), "ap": average_precision(y, s), "positives": int(y.sum())})
    return out


def reliability(y_true: Sequence[int], probs: np.ndarray, bins: int = BINS) -> dict:
    """Top-label calibration: per confidence bin the mean confidence, the accuracy and the count, and the
    expected calibration error (bin-size-weighted mean gap between the two)."""
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=int)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    hit = (probs.argmax(axis=1) == y_true) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        if n:
            c, a = float(conf[m].mean()), float(hit[m].mean())
            ece += n / len(conf) * abs(a - c)
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": c, "accuracy": a, "n": n})
    return {"bins": rows, "ece": float(ece) if len(conf) else None}


def _prf(y: np.ndarray, pred: np.ndarray) -> tuple[float, float, float, float]:
    tp = float(np.sum(pred & y))
    p = tp / pred.sum() if pred.sum() else 0.0
    r = tp / y.sum() if y.sum() else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1, float(np.mean(pred == y)) if len(y) else 0.0


def threshold_table(y, score, thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """Two classes: precision, recall, F1 of the positive class and accuracy when ``score >= t`` says
    positive, for each threshold ``t``."""
    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=float)
    rows = []
    for t in thresholds:
        p, r, f1, acc = _prf(y, score >= t)
        rows.append({"threshold": float(t), "precision": p, "recall": r, "f1": f1, "accuracy": acc})
    return rows


def best_f1_threshold(y, score) -> dict | None:
    """The score threshold with the highest F1 of the positive class (the lowest such threshold on ties),
    with its precision, recall and accuracy; None without positives."""
    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=float)
    if not y.any():
        return None
    tp, fp, s = _ranked(y, score)
    f1 = 2 * tp / (tp + fp + y.sum())
    i = len(f1) - 1 - int(np.argmax(f1[::-1]))
    return threshold_table(y, score, [float(s[i])])[0]


def kept_epoch(rows: Sequence[dict]) -> dict | None:
    """The epoch whose weights were kept (weights/best.keras): the first with the lowest val_loss, as
    training's checkpoint chooses it. 1-based."""
    scored = [(r["val_loss"], i) for i, r in enumerate(rows) if "val_loss" in r]
    if not scored:
        return None
    loss, i = min(scored)
    return {"epoch": int(rows[i].get("epoch", i)) + 1, "val_loss": loss, "val_accuracy": rows[i].get("val_accuracy"), "of": len(rows)}
