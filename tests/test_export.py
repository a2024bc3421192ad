"""Export to ONNX / LiteRT, predict through the runtimes, parity with Keras; Grad-CAM; --device."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import shape_image
from happysad import bundle, cli, explain, export
from happysad.errors import HappysadError, UsageError
from happysad.predict import Predictor

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def parity_images():
    """100 images the model has not seen (the two trained classes plus an unseen one)."""
    rng = np.random.default_rng(123)
    kinds = ["circle", "square", "triangle"]
    return [np.asarray(shape_image(rng, kinds[i % 3], 40)) for i in range(100)]


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    _, res = trained_run
    out = tmp_path_factory.mktemp("exported")
    return {"onnx": export.export(res.run_dir, "onnx", out / "m.onnx"),
            "tflite": export.export(res.run_dir, "tflite", out / "lite")}


@pytest.mark.parametrize("fmt,tol", [("onnx", 1e-4), ("tflite", 1e-3)])
def test_exported_model_matches_keras(trained_run, exported, parity_images, fmt, tol):
    _, res = trained_run
    keras_p = Predictor(res.run_dir).predict(parity_images)
    exp_p = Predictor(exported[fmt]).predict(parity_images)
    assert len(keras_p) == len(exp_p) == 100
    diff = max(abs(a["probabilities"][c] - b["probabilities"][c])
               for a, b in zip(keras_p, exp_p) for c in a["probabilities"])
    assert diff <= tol, f"{fmt}: max |p_keras - p_exported| = {diff}"
    assert [a["label"] for a in keras_p] == [b["label"] for b in exp_p]


def test_export_layout_and_meta(trained_run, exported):
    _, res = trained_run
    onnx_meta = json.loads(exported["onnx"].with_suffix(".json").read_text())
    assert onnx_meta["export"]["format"] == "onnx"
    assert onnx_meta["classes"] == json.loads((res.run_dir / "meta.json").read_text())["classes"]
    folder = exported["tflite"].parent
    assert exported["tflite"].name == "model.tflite" and (folder / "meta.json").is_file()
    # a folder with model.tflite + meta.json resolves like a run folder
    assert bundle.resolve(folder) == (folder / "model.tflite", folder / "meta.json")
    b = bundle.load(folder)
    assert b.classes == ["circle", "square"] and hasattr(b.model, "predict_on_batch")


def test_export_default_out_beside_run(trained_run, tmp_path):
    import shutil

    _, res = trained_run
    run = tmp_path / "run"
    shutil.copytree(res.run_dir, run)
    p = export.export(run, "onnx")
    assert p == run / "model.onnx" and (run / "model.json").is_file()
    # the run folder itself still loads the Keras model
    assert bundle.resolve(run)[0].suffix == ".keras"


def test_an_export_into_the_models_own_folder_does_not_shadow_its_meta_json(trained_run, tmp_path):
    """model.keras + meta.json exported to model.onnx in the same folder: the Keras model keeps reading
    meta.json (later edits included), the ONNX file its own model.json."""
    import shutil

    _, res = trained_run
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(res.run_dir / "weights" / "best.keras", folder / "model.keras")
    shutil.copy(res.run_dir / "meta.json", folder / "meta.json")
    export.export(folder / "model.keras", "onnx", folder / "model.onnx")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "name": "edited after the export"}))
    assert bundle.resolve(folder) == (folder / "model.keras", folder / "meta.json")
    assert bundle.load(folder).meta["name"] == "edited after the export"
    assert bundle.resolve(folder / "model.onnx") == (folder / "model.onnx", folder / "model.json")


def test_export_errors(trained_run, exported, tmp_path):
    _, res = trained_run
    with pytest.raises(UsageError, match="suffix does not match"):
        export.export(res.run_dir, "onnx", tmp_path / "x.tflite")
    with pytest.raises(UsageError, match="unknown --format"):
        export.export(res.run_dir, "coreml")
    with pytest.raises(UsageError, match="needs a Keras model"):
        export.export(exported["onnx"], "tflite")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    (tmp_path / "bad.json").write_text(exported["onnx"].with_suffix(".json").read_text())
    with pytest.raises(HappysadError, match="bad.onnx: cannot load ONNX model"):
        bundle.load(bad)


def test_cli_export_and_predict_onnx(trained_run, tmp_path, capsys):
    data, res = trained_run
    out = tmp_path / "cli.onnx"
    assert cli.main(["export", "--model", str(res.run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    img = next((data / "circle").iterdir())
    assert cli.main(["predict", str(img), "--model", str(out), "--json", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["label"] in ("circle", "square") and set(r["probabilities"]) == {"circle", "square"}


def test_gradcam_heatmaps(trained_run, tmp_path):
    data, res = trained_run
    files = sorted((data / "circle").iterdir())[:2] + sorted((data / "square").iterdir())[:1]
    out = explain.explain(files, res.run_dir, out=tmp_path / "cam")
    assert len(out) == 3
    for ex in out:
        assert ex.heatmap.shape == (32, 32) and ex.heatmap.dtype == np.float32
        assert 0.0 <= ex.heatmap.min() and ex.heatmap.max() <= 1.0
        assert ex.label in ("circle", "square") and ex.explained == ex.label
        img = Image.open(ex.saved)
        assert img.format == "PNG" and min(img.size) >= explain.OVERLAY_SIDE
    assert len({e.saved for e in out}) == 3


def test_gradcam_box_class_and_errors(trained_run, exported):
    data, res = trained_run
    f = next((data / "square").iterdir())
    [ex] = explain.explain([f], res.run_dir, class_name="circle", boxes=[(0, 0, 30, 30)])
    assert ex.explained == "circle" and ex.box == (0, 0, 30, 30) and ex.saved is None
    with pytest.raises(UsageError, match="outside"):
        explain.explain([f], res.run_dir, boxes=[(0, 0, 400, 400)])
    with pytest.raises(UsageError, match="not one of the model's classes"):
        explain.explain([f], res.run_dir, class_name="dog")
    with pytest.raises(UsageError, match="Keras model"):
        explain.explain([f], exported["onnx"])


def test_cli_explain(trained_run, tmp_path, capsys):
    data, res = trained_run
    f = next((data / "circle").iterdir())
    assert cli.main(["explain", str(f), "--model", str(res.run_dir), "--out", str(tmp_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["overlay"].endswith(".gradcam.png") and (tmp_path / (f.stem + ".gradcam.png")).is_file()
    # an unusable file is reported on its own line; the others are still explained; exit 1
    bad = tmp_path / "notes.jpg"
    bad.write_text("<html>not an image</html>")
    assert cli.main(["explain", str(bad), str(f), "--model", str(res.run_dir), "--out", str(tmp_path / "o")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{bad}: error: ") and "heatmap for" in out[1]


def test_device_flags_without_gpu(capsys):
    import tensorflow as tf

    from happysad import device

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is present; this checks the no-GPU paths")
    assert device.configure("auto") == "cpu"
    assert device.configure("cpu") == "cpu"
    with pytest.raises(HappysadError, match="no GPU"):
        device.configure("gpu")
    with pytest.raises(UsageError):
        device.configure("tpu")
    assert cli.main(["predict", "x.png", "--device", "gpu"]) == 1
    assert "happysad predict: error: --device gpu: TensorFlow sees no GPU" in capsys.readouterr().err


def test_environment_yml_mirrors_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"] + \
        project["optional-dependencies"]["export"] + project["optional-dependencies"]["video"]
    env = (root / "environment.yml").read_text()
    missing = [d for d in wanted if f"- {d}\n" not in env]
    assert not missing, f"environment.yml lacks: {missing}"
