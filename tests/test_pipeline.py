"""Train, bundle, evaluate and predict on a tiny generated dataset (one shared training run)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from happysad import bundle, evaluate, files, predict
from happysad.errors import HappysadError


def test_run_folder_contents(trained_run):
    data, res = trained_run
    run = res.run_dir
    for f in ("weights/best.keras", "weights/last.keras", "meta.json", "split.csv", "results.csv",
              "curves.png", "confusion_matrix.png", "metrics.json"):
        assert (run / f).is_file(), f
    meta = json.loads((run / "meta.json").read_text())
    assert meta["classes"] == ["circle", "square"]
    assert meta["input"]["height"] == 32 and meta["input"]["color_mode"] == "rgb"
    assert meta["arch"] == "default" and meta["train"]["seed"] == 0 and meta["versions"]["tensorflow"]
    lines = (run / "results.csv").read_text().splitlines()
    assert lines[0].startswith("epoch") and "val_loss" in lines[0] and len(lines) == 3
    m = json.loads((run / "metrics.json").read_text())
    assert m["split"] == "test" and m["n"] == 6 and 0 <= m["accuracy"] <= 1
    assert sum(map(sum, m["confusion"])) == m["n"]
    assert not any(p.name.endswith(".tmp") or ".tmp." in p.name for p in run.rglob("*"))


def test_runs_are_never_overwritten(tmp_path):
    from happysad.train import new_run_dir

    a, b, c = (new_run_dir(tmp_path, None) for _ in range(3))
    assert [a.name, b.name, c.name] == ["exp", "exp2", "exp3"]


def test_bundle_loads_three_ways(trained_run, tmp_path):
    _, res = trained_run
    run = res.run_dir
    for ref in (run, run / "weights" / "best.keras", run / "weights" / "last.keras"):
        b = bundle.load(ref)
        assert b.classes == ["circle", "square"] and b.image_size == (32, 32)
    lone = tmp_path / "lonely.keras"
    lone.write_bytes((run / "weights" / "best.keras").read_bytes())
    with pytest.raises(HappysadError, match="no meta.json"):
        bundle.load(lone)
    with pytest.raises(HappysadError, match="built-in"):
        bundle.load("no-such-model")


def test_save_is_atomic(trained_run, tmp_path, monkeypatch):
    _, res = trained_run
    b = bundle.load(res.run_dir)
    target = tmp_path / "m.keras"
    bundle.save_keras(b.model, target)
    good = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(b.model), "save", boom)
    with pytest.raises(RuntimeError):
        bundle.save_keras(b.model, target)
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def test_safe_mode_refuses_lambda_layers(tmp_path):
    import keras

    inp = keras.Input((8, 8, 3))
    out = keras.layers.Lambda(lambda x: x * 2)(inp)
    m = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(out)))
    m.save(tmp_path / "evil.keras")
    files.write_json(tmp_path / "meta.json", {"format_version": 1, "classes": ["a", "b"],
                                               "input": {"height": 8, "width": 8, "color_mode": "rgb"}})
    with pytest.raises(HappysadError, match="cannot load"):
        bundle.load(tmp_path / "evil.keras")


def test_predict_paths_arrays_and_errors(trained_run, tmp_path):
    data, res = trained_run
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    files = [str(data / "circle" / "circle_000.png"), str(bad), str(tmp_path / "missing.png")]
    out = predict.predict(files, res.run_dir)
    assert [("error" in r) for r in out] == [False, True, True]
    assert out[0]["label"] in ("circle", "square")
    assert sum(out[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    p = predict.Predictor(res.run_dir)
    arr = p.load(files[0])
    np.testing.assert_allclose(p.predict_arrays(arr[None])[0],
                               [out[0]["probabilities"][c] for c in p.classes], atol=1e-5)
    # a folder expands recursively
    assert len(predict.expand_paths([data])) == 60


def test_evaluate_folder_and_subset(trained_run):
    data, res = trained_run
    m = evaluate.evaluate(data, res.run_dir)
    assert m["n"] == 60 and set(m["per_class"]) == {"circle", "square"}
    sub = evaluate.evaluate(data, res.run_dir, classes=["square"])
    assert sub["n"] == 30 and sub["per_class"]["circle"]["support"] == 0


def test_three_classes_softmax(shapes3, tmp_path):
    from happysad import train

    res = train.train(shapes3, arch="seed", img_size=32, epochs=2, batch_size=16, project=str(tmp_path),
                      verbose=False)
    meta = json.loads((res.run_dir / "meta.json").read_text())
    assert meta["output"] == "softmax" and len(meta["classes"]) == 3
    assert np.array(res.metrics["confusion"]).shape == (3, 3)
    out = predict.predict([str(shapes3 / "square" / "square_000.png")], res.run_dir)
    assert set(out[0]["probabilities"]) == {"circle", "square", "triangle"}


def test_separate_validation_folder(tmp_path):
    import shutil

    from happysad import split as splitting
    from happysad import train

    from conftest import make_shapes

    data = make_shapes(tmp_path / "train", n_per_class=20, kinds=("circle", "square"), seed=1)
    val = make_shapes(tmp_path / "val", n_per_class=6, kinds=("circle", "square"), seed=2)
    shutil.copy(val / "circle" / "circle_000.png", data / "circle" / "leaked.png")
    res = train.train(data, val_data=str(val), arch="seed", img_size=32, epochs=1, project=str(tmp_path / "r"),
                      verbose=False)
    rows = splitting.read_manifest(res.run_dir / "split.csv")
    assert sum(r.split == "train" for r in rows) == 40  # the leaked copy is left out
    assert sum(r.split == "val" for r in rows) == 12 and not any(r.split == "test" for r in rows)
    assert res.metrics["split"] == "val" and res.metrics["n"] == 12


def test_saved_files_are_readable_by_others(trained_run):
    _, res = trained_run
    for f in ("weights/best.keras", "meta.json", "metrics.json"):
        mode = (res.run_dir / f).stat().st_mode & 0o777
        assert mode == 0o666 & ~_umask(), (f, oct(mode))


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
