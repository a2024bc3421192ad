"""The report page: every training run writes RUN/report.html; `evaluate --report` and `report RUN` write
the same kind of page. Its numbers are metrics.json's and scikit-learn's; in headless Chromium every image
loads, nothing logs an error, the gallery holds the expected cards and a phone-width screen needs no
sideways scrolling."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from happysad import demo, report, train
from happysad.cli import main
from happysad.evaluate import roc_auc
from happysad.report import page, scores

sklearn_metrics = pytest.importorskip("sklearn.metrics")


class Tagged(HTMLParser):
    """Collects the page's tagged values: data-metric (from metrics.json) and data-score (computed)."""

    def __init__(self):
        super().__init__()
        self.metric, self.score, self.cards, self._key = {}, {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-metric" in a:
            self._key = a["data-metric"]
        if "data-score" in a:
            self.score[a["data-score"]] = float(a["data-value"])
        if tag == "figure" and "card" in a.get("class", ""):
            self.cards.append(a["class"])

    def handle_data(self, data):
        if self._key is not None:
            self.metric[self._key] = data.strip()
            self._key = None


def read_page(path: Path) -> Tagged:
    p = Tagged()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p


def flat(metrics: dict) -> dict:
    """metrics.json's numbers under the page's keys: accuracy, per_class.C.f1, confusion.i.j, ..."""
    out = {k: metrics[k] for k in ("accuracy", "macro_f1", "n", "roc_auc") if k in metrics}
    for c, v in metrics["per_class"].items():
        out.update({f"per_class.{c}.{k}": x for k, x in v.items()})
    for i, row in enumerate(metrics["confusion"]):
        out.update({f"confusion.{i}.{j}": x for j, x in enumerate(row)})
    return out


def assert_page_matches(tagged: Tagged, metrics: dict, results: list[dict]):
    want = flat(metrics)
    assert set(want) <= set(tagged.metric)
    for k, v in want.items():
        assert float(tagged.metric[k]) == v, k
    classes = metrics["classes"]
    y = np.array([classes.index(r["true"]) for r in results])
    probs = np.array([[r["probabilities"][c] for c in classes] for r in results])
    scored = [1] if len(classes) == 2 else range(len(classes))
    for k in scored:
        assert abs(tagged.score[f"auc.{classes[k]}"] - sklearn_metrics.roc_auc_score(y == k, probs[:, k])) < 1e-6
        assert abs(tagged.score[f"ap.{classes[k]}"] -
                   sklearn_metrics.average_precision_score(y == k, probs[:, k])) < 1e-6
    wrong = sum(r["label"] != r["true"] for r in results)
    assert len(tagged.cards) == min(page.GALLERY_WRONG, wrong) + min(page.GALLERY_UNSURE, len(results) - wrong)
    assert [c for c in tagged.cards if "wrong" in c] == ["card wrong"] * min(page.GALLERY_WRONG, wrong)


# ---- the numbers ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_average_precision_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    score = np.round(np.clip(y * 0.3 + rng.random(300) * 0.8, 0, 1), 2)  # rounded: many ties
    assert abs(roc_auc(y, score) - sklearn_metrics.roc_auc_score(y, score)) < 1e-6
    assert abs(scores.average_precision(y, score) - sklearn_metrics.average_precision_score(y, score)) < 1e-6
    fpr, tpr = scores.roc_curve(y, score)
    ref_fpr, ref_tpr, _ = sklearn_metrics.roc_curve(y, score, drop_intermediate=False)
    assert np.allclose(fpr, ref_fpr) and np.allclose(tpr, ref_tpr)


def test_best_f1_threshold_is_the_best_of_all_cuts():
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.4
    score = np.clip(y * 0.25 + rng.random(200) * 0.75, 0, 1)
    best = scores.best_f1_threshold(y, score)
    f1s = [sklearn_metrics.f1_score(y, score >= t) for t in np.unique(score)]
    assert abs(best["f1"] - max(f1s)) < 1e-12
    assert abs(sklearn_metrics.f1_score(y, score >= best["threshold"]) - best["f1"]) < 1e-12
    table = scores.threshold_table(y, score)
    assert [t["threshold"] for t in table] == list(scores.THRESHOLDS)
    assert abs(table[4]["precision"] - sklearn_metrics.precision_score(y, score >= 0.5)) < 1e-12


def test_expected_calibration_error():
    # 10 answers at confidence 0.9 of which 6 right, 10 at 0.6 of which 6 right: ECE = (0.3 + 0) / 2
    probs = np.array([[0.9, 0.1]] * 10 + [[0.4, 0.6]] * 10)
    y = np.array([0] * 6 + [1] * 4 + [1] * 6 + [0] * 4)
    rel = scores.reliability(y, probs)
    assert abs(rel["ece"] - 0.15) < 1e-12 and [b["n"] for b in rel["bins"]] == [10, 10]


# ---- a trained run's page ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo's smile/frown faces, demo-sized at 32 px for speed, 2 epochs, with TensorBoard logs."""
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("report")
    data = demo.make_dataset(root / "data", n_per_class=40, seed=0, size=48)
    res = train.train(data, img_size=32, epochs=2, batch_size=16, project=str(root / "runs"), name="demo",
                      verbose=False, tensorboard=True)
    return data, res


def test_every_run_writes_a_report_with_its_metrics(demo_run):
    _, res = demo_run
    run = res.run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    results = page.read_predictions(run / page.PREDICTIONS)
    assert len(results) == metrics["n"]
    tagged = read_page(run / "report.html")
    assert_page_matches(tagged, metrics, results)
    rows = report.read_results(run / "results.csv")
    assert all(r["learning_rate"] > 0 for r in rows)  # the log carries the learning rate
    assert tagged.score["kept_epoch"] == scores.kept_epoch(rows)["epoch"]
    text = (run / "report.html").read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text  # self-contained


def test_tensorboard_logs_scalars_learning_rate_and_confusion_images(demo_run):
    import tensorflow as tf

    _, res = demo_run
    tags = {}
    for f in (res.run_dir / "tensorboard").rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                tags.setdefault(v.tag, set()).add(event.step)
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(tags)
    assert tags["confusion_matrix"] == {0, 1}  # one image per epoch


def test_report_page_in_chromium(demo_run, tmp_path):
    from test_serve_browser import browser

    _, res = demo_run
    results = page.read_predictions(res.run_dir / page.PREDICTIONS)
    wrong = sum(r["label"] != r["true"] for r in results)
    drv = browser()
    try:
        drv.set_window_size(1200, 900)
        drv.get((res.run_dir / "report.html").resolve().as_uri())
        imgs = drv.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert len(imgs) >= 6 and all(done and width > 0 for done, width in imgs), imgs
        cards = drv.execute_script("return document.querySelectorAll('#mistakes .card').length + ','"
                                   " + document.querySelectorAll('#unsure .card').length")
        assert cards == f"{min(page.GALLERY_WRONG, wrong)},{min(page.GALLERY_UNSURE, len(results) - wrong)}"
        drv.save_screenshot(str(tmp_path / "report-desktop.png"))
        drv.set_window_size(390, 844)
        time.sleep(0.3)
        assert drv.execute_script("return document.documentElement.scrollWidth") <= \
            drv.execute_script("return window.innerWidth")
        # each figure fits the screen
        assert drv.execute_script("return Math.max(...Array.from(document.images).map(i => "
                                  "i.getBoundingClientRect().right))") <= 390
        drv.save_screenshot(str(tmp_path / "report-phone.png"))
        assert (tmp_path / "report-phone.png").stat().st_size > 5000
        assert [e for e in drv.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        drv.quit()


def test_report_command_renders_the_run_again(demo_run, tmp_path, capsys):
    _, res = demo_run
    run = res.run_dir
    (run / page.PREDICTIONS).rename(tmp_path / "kept.jsonl")  # a run without it is predicted again
    out = tmp_path / "again.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    again = page.read_predictions(run / page.PREDICTIONS)
    assert [(r["path"], r["label"]) for r in again] == \
        [(r["path"], r["label"]) for r in page.read_predictions(tmp_path / "kept.jsonl")]
    assert_page_matches(read_page(out), json.loads((run / "metrics.json").read_text()), again)
    assert main(["report", str(tmp_path)]) == 1  # not a run folder: one line
    assert "not a finished run folder" in capsys.readouterr().err


def test_evaluate_report_cli(demo_run, tmp_path, capsys):
    data, res = demo_run
    out = tmp_path / "eval.html"
    assert main(["evaluate", str(data), "--model", str(res.run_dir), "--report", str(out), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    tagged = read_page(out)
    assert float(tagged.metric["accuracy"]) == m["accuracy"] and int(tagged.metric["n"]) == m["n"] == 80


# ---- more than two classes; faces -------------------------------------------------------------------------

def test_three_classes_are_scored_one_vs_rest(shapes3, tmp_path):
    from happysad.evaluate import compute_metrics

    classes = ["circle", "square", "triangle"]
    files = sorted(shapes3.rglob("*.png"))
    rng = np.random.default_rng(0)
    y = np.array([classes.index(f.parent.name) for f in files])
    probs = rng.dirichlet(np.ones(3), len(files)) + np.eye(3)[y] * rng.random((len(files), 1))
    probs /= probs.sum(axis=1, keepdims=True)
    metrics = compute_metrics(y, probs, classes)
    results = [{"path": str(f), "true": classes[t], "label": classes[int(p.argmax())],
                "probabilities": dict(zip(classes, map(float, p)))} for f, t, p in zip(files, y, probs)]
    out = page.write_eval_report(tmp_path / "r.html", metrics, results)
    tagged = read_page(out)
    assert_page_matches(tagged, metrics, results)
    assert "best_threshold" not in tagged.score  # thresholds are for two classes


def test_evaluate_report_with_faces_draws_boxes(tmp_path, capsys):
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    for label in ("happy", "sad"):
        (tmp_path / "photos" / label).mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(tmp_path / "photos" / "happy" / "astronaut.jpg")
    Image.fromarray(skdata.coffee()).save(tmp_path / "photos" / "sad" / "coffee.jpg")  # no face in it
    out = tmp_path / "faces.html"
    assert main(["evaluate", str(tmp_path / "photos"), "--model", "fer-happy-sad", "--report", str(out)]) == 0
    text = out.read_text()
    assert re.search(r'data-metric="face_found">1<', text) and "no face found" in text
    assert "Grad-CAM: face crop" in text and len(read_page(out).cards) == 2


def test_tensorboard_missing_is_a_usage_error_before_any_run_folder(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    data = demo.make_dataset(tmp_path / "data", n_per_class=3)
    assert main(["train", str(data), "--tensorboard", "--project", str(tmp_path / "runs")]) == 2
    assert "pip install 'happysad[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
