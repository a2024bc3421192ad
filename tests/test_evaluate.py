import itertools

import numpy as np
import pytest

from happysad.evaluate import compute_metrics, roc_auc


def test_metrics_by_hand():
    y = [0, 0, 0, 1, 1, 2]
    p = np.eye(3)[[0, 1, 0, 1, 1, 0]]
    m = compute_metrics(y, p, ["a", "b", "c"])
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == round(4 / 6, 4) and m["n"] == 6
    assert m["per_class"]["a"] == {"precision": round(2 / 3, 4), "recall": round(2 / 3, 4),
                                   "f1": round(2 / 3, 4), "support": 3}
    assert m["per_class"]["b"]["precision"] == round(2 / 3, 4) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert "roc_auc" not in m


def test_roc_auc_matches_pair_counting():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60).astype(bool)
    s = np.round(rng.random(60), 1)  # many ties
    pos, neg = s[y], s[~y]
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg)])
    assert roc_auc(y, s) == pytest.approx(brute)
    assert roc_auc(np.ones(3, bool), np.ones(3)) is None
