"""How good is a model: accuracy, per-class precision/recall/F1, confusion matrix, ROC AUC (binary).

Predictions come from ``predict.Predictor``, so evaluation sees images exactly as prediction does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .bundle import Bundle
from .errors import UsageError
from .predict import Predictor
from .folders import list_classes, list_items


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank-sum statistic (ties get average ranks)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict:
    """Metrics from true class indices and (N, K) probabilities, in the CLI's JSON format."""
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float).reshape(len(y_true), len(classes))
    y_pred = probs.argmax(axis=1) if len(y_true) else np.zeros(0, int)
    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = {"precision": round(float(p), 4), "recall": round(float(r), 4),
                        "f1": round(float(f1), 4), "support": int(support)}
    present = [c for c in classes if per_class[c]["support"] > 0]
    out = {
        "accuracy": round(float((y_pred == y_true).mean()), 4) if len(y_true) else 0.0,
        "n": int(len(y_true)),
        "classes": list(classes),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "macro_f1": round(float(np.mean([per_class[c]["f1"] for c in present])), 4) if present else 0.0,
    }
    if k == 2:
        auc = roc_auc(y_true == 1, probs[:, 1])
        if auc is not None:
            out["roc_auc"] = round(auc, 4)
    return out


def evaluate_files(predictor: Predictor, paths: Sequence[str], labels: Sequence[str],
                   results_out: list | None = None) -> dict:
    """Predict ``paths`` and score them against ``labels`` (class names). Unreadable files are listed
    under ``errors`` and left out of the metrics. ``results_out`` gets each scored image's predict
    result with its true label under ``true`` (for the report page)."""
    classes = predictor.classes
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise UsageError(f"label(s) {', '.join(unknown)} are not classes of this model "
                         f"({', '.join(classes)}); pick folders with --classes")
    results = predictor.predict(list(paths))
    y, probs, errors, found, decided = [], [], [], [], []
    for res, label in zip(results, labels):
        if "error" in res:
            errors.append({"path": res["path"], "error": res["error"]})
            continue
        y.append(classes.index(label))
        if results_out is not None:
            results_out.append({**res, "true": label})
        probs.append([res["probabilities"][c] for c in classes])
        if "face_found" in res:
            found.append(res["face_found"])
        if "decided_by" in res:
            decided.append(res["decided_by"])
    probs = np.array(probs).reshape(len(y), len(classes))
    out = compute_metrics(y, probs, classes)
    if predictor.tta in ("flip", "tencrop"):  # the figures are of averaged views: say so
        out["tta"] = predictor.tta
    if predictor.faces:  # the image-level label was scored; say how often a face was found, and how each part did
        out["faces"] = True
        out["face_found_share"] = round(float(np.mean(found)), 4) if found else 0.0
        out["face_found"] = int(sum(found))
        hit = probs.argmax(axis=1) == np.asarray(y, int) if len(y) else np.zeros(0, bool)
        mask = np.asarray(found, bool)
        out["by_face"] = {key: {"accuracy": round(float(hit[m].mean()), 4) if m.any() else None, "n": int(m.sum())}
                          for key, m in (("face_found", mask), ("no_face", ~mask))}
    if decided:
        out["decided_by"] = {b: decided.count(b) for b in ("face", "scene")}
    if errors:
        out["errors"] = errors
    return out


def evaluate(data: str | os.PathLike, model: Bundle | str | os.PathLike, classes: Sequence[str] | None = None,
             tta: bool | str | None = None, batch_size: int = 64, faces: bool | None = None,
             results_out: list | None = None) -> dict:
    """Evaluate ``model`` on a folder of class folders named after (some of) the model's classes.
    Images are judged as ``predict`` judges them: face and photo models find the faces in each image
    (``faces=False`` turns that off, ``True`` forces it on for any model), and the result also gives the
    share of images where a face was found and the accuracy with and without one. ``tta``: see
    predict.Predictor (None: as the model's meta.json says)."""
    predictor = Predictor(model, batch_size=batch_size, tta=tta, faces=faces)
    root = Path(data)
    classes = list_classes(root, classes, min_classes=1)
    unknown = [c for c in classes if c not in predictor.classes]
    if unknown:
        raise UsageError(f"{root}: folder(s) {', '.join(unknown)} are not classes of this model "
                         f"({', '.join(predictor.classes)}); choose folders with --classes")
    items, _ = list_items(root, classes)
    out = evaluate_files(predictor, [str(root / p) for p, _, _ in items], [lab for _, lab, _ in items],
                         results_out)
    out["data"] = str(root)
    return out
