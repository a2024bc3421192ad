"""Pretrained backbones (--arch mobilenet_v3_small ... --weights imagenet|none|PATH): weights from a local file,
the two training phases, batch norm in inference mode, the preprocessing in meta.json, every consumer of the
run folder, the offline story, and --arch auto. Nothing here touches the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_shapes
from happysad import backbones, bundle, cli, train
from happysad.errors import UsageError

EXE = str(Path(sys.executable).with_name("happysad"))
ARCH = "mobilenet_v3_small"


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """What a user may have copied from another machine: a randomly initialised Keras MobileNetV3Small
    (with its ImageNet top, at 224 px) saved with save_weights."""
    import keras

    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small.weights.h5"
    keras.applications.MobileNetV3Small(weights=None).save_weights(path)
    return path


@pytest.fixture(scope="module")
def backbone_run(weights_file, tmp_path_factory):
    """One tiny run through the CLI: 64 px, one epoch of the head alone, one of fine-tuning."""
    root = tmp_path_factory.mktemp("backbone")
    data = make_shapes(root / "data", n_per_class=20, kinds=("circle", "square"), size=64)
    code = cli.main(["train", str(data), "--arch", ARCH, "--weights", str(weights_file), "--img-size", "64",
                     "--epochs", "2", "--head-epochs", "1", "--batch-size", "16", "--project", str(root / "runs"),
                     "--name", "bb", "--json"])
    assert code == 0
    return data, root / "runs" / "bb"


def _layer_weights(path: Path, arch: str) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return backbones._h5_layers(f)


def test_a_local_weights_file_trains_and_every_consumer_takes_the_run(backbone_run, weights_file, capsys, tmp_path):
    data, run = backbone_run
    meta = json.loads((run / "meta.json").read_text())
    assert meta["arch"] == ARCH and meta["input"]["height"] == 64 and meta["metrics"]["n"] > 0
    assert meta["arch_options"]["weights"] == str(weights_file.resolve())
    # the file's weights are in the model: its first blocks were frozen in both phases, so still equal
    model = bundle.load(run).model
    saved = _layer_weights(weights_file, ARCH)
    for name in ("conv", "expanded_conv_depthwise", "expanded_conv_2_expand"):
        for have, want in zip(model.get_layer(name).get_weights(), saved[name]):
            np.testing.assert_array_equal(have, want)

    code, out, _ = _main(capsys, "evaluate", data, "--model", run, "--json")
    assert code == 0 and json.loads(out)["n"] == 40

    images = sorted(str(p) for p in data.rglob("*.png"))[::4]
    code, out_keras, _ = _main(capsys, "predict", *images, "--model", run, "--json")
    assert code == 0
    keras_rows = [json.loads(line) for line in out_keras.splitlines()]
    for fmt, name in (("onnx", "m.onnx"), ("tflite", "m.tflite")):  # ONNX and LiteRT give Keras's answers
        code, out, _ = _main(capsys, "export", "--model", run, "--format", fmt, "--out", tmp_path / name)
        assert code == 0
        code, out_exported, _ = _main(capsys, "predict", *images, "--model", tmp_path / name, "--json")
        assert code == 0
        rows = [json.loads(line) for line in out_exported.splitlines()]
        assert len(keras_rows) == len(images) == len(rows)
        assert [r["label"] for r in keras_rows] == [r["label"] for r in rows]
        for a, b in zip(keras_rows, rows):
            assert max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"]) < 1e-4, fmt

    code, out, _ = _main(capsys, "explain", images[0], "--model", run, "--out", tmp_path / "cam", "--json")
    row = json.loads(out.splitlines()[0])
    assert code == 0 and Path(row["overlay"]).is_file()


def test_meta_json_carries_the_backbones_own_preprocessing(backbone_run):
    _, run = backbone_run
    meta = json.loads((run / "meta.json").read_text())
    steps = meta["preprocessing"]["steps"]
    # MobileNetV3's own scaling, x / 127.5 - 1, a layer of the model (so predict, serve and exports feed pixels)
    assert meta["preprocessing"]["inside_model"] is True
    assert [s["op"] for s in steps] == ["rescale"]
    assert steps[0]["scale"] == [pytest.approx(1 / 127.5)] and steps[0]["offset"] == [-1.0]
    assert "mobilenet_v3_small's own" in meta["input"]["scaling"]
    model = bundle.load(run).model
    assert type(model.get_layer(steps[0]["layer"])).__name__ == "Rescaling"


def test_which_layers_train_in_each_phase():
    net = backbones.build(ARCH, (64, 64, 3), 3)
    weighted = [layer for layer in net.layers if layer.weights]
    names = [layer.name for layer in weighted]
    first_top = names.index("expanded_conv_8_expand")

    def training():
        return [layer.name for layer in weighted if layer.trainable]

    backbones.set_phase(net, ARCH, "head")
    assert training() == ["probs"]
    n = backbones.set_phase(net, ARCH, "fine_tune")
    top = [layer for layer in weighted[first_top:] if layer.name != "probs"]
    assert training() == [layer.name for layer in top if "BatchNormalization" not in type(layer).__name__] + ["probs"]
    assert n == len(training()) - 1 and all(name.startswith(("expanded_conv_8", "expanded_conv_9", "expanded_conv_10",
                                                             "conv_1", "probs")) for name in training())
    assert not any(layer.trainable for layer in weighted if type(layer).__name__ == "BatchNormalization")
    backbones.set_phase(net, ARCH, "all")  # --weights none: from scratch, batch norm learns too
    assert training() == names


def test_batch_norm_keeps_its_statistics_while_the_top_blocks_fine_tune(backbone_run, weights_file):
    import keras

    _, run = backbone_run
    results = (run / "results.csv").read_text().splitlines()
    assert len(results) == 3  # header + the head epoch + the fine-tuning epoch
    last = keras.models.load_model(run / "weights" / "last.keras", compile=False)  # saved after fine-tuning
    saved = _layer_weights(weights_file, ARCH)
    assert last.get_layer("conv_1").trainable and last.get_layer("expanded_conv_9_project").trainable
    assert not last.get_layer("conv").trainable  # below the top blocks
    for layer in last.layers:
        if type(layer).__name__ == "BatchNormalization":
            assert not layer.trainable
            for have, want in zip(layer.get_weights(), saved[layer.name]):  # gamma, beta, moving mean, variance
                np.testing.assert_array_equal(have, want)
    bn = last.get_layer("conv_1_bn")
    x = np.random.default_rng(0).normal(3, 2, (8, 2, 2, 576)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(bn(x, training=True)), np.asarray(bn(x, training=False)))


def test_phase_two_lowers_the_rate_once_and_a_resume_keeps_the_restored_rate():
    import keras

    def compiled():
        net = backbones.build(ARCH, (32, 32, 3), 2)
        net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        backbones.prepare_optimizer(net, ARCH, "imagenet")
        assert [v.name for v in net.trainable_variables] == ["kernel", "bias"]  # the head only, phase 1
        return net

    net, cb = compiled(), backbones.phase_callback(ARCH, head_epochs=2, fine_tune_lr=1e-4)
    cb.set_model(net)
    cb.on_epoch_begin(1)
    assert float(net.optimizer.learning_rate) == pytest.approx(1e-3)
    cb.on_epoch_begin(2)  # phase 2 starts
    assert float(net.optimizer.learning_rate) == pytest.approx(1e-4) and len(net.trainable_variables) > 2
    net.train_on_batch(np.zeros((2, 32, 32, 3), np.float32), np.array([0.0, 1.0], np.float32))  # optimizer takes them

    net, cb = compiled(), backbones.phase_callback(ARCH, head_epochs=2, fine_tune_lr=1e-4)
    cb.set_model(net)
    net.optimizer.learning_rate = 3e-5  # as BackupAndRestore restores it after a plateau cut
    cb.on_epoch_begin(4)  # a resume in the middle of phase 2
    assert float(net.optimizer.learning_rate) == pytest.approx(3e-5) and len(net.trainable_variables) > 2


def test_imagenet_weights_not_cached_fail_in_one_line_naming_the_cache(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=4, kinds=("circle", "square"), size=32)
    home = tmp_path / "keras-home"
    env = {**os.environ, "KERAS_HOME": str(home), "HAPPYSAD_NO_PROGRESS": "1"}
    r = subprocess.run([EXE, "train", str(data), "--arch", ARCH, "--weights", "imagenet",
                        "--project", str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    want = home / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    assert str(want) in lines[0] and "--weights PATH" in lines[0]
    assert not (tmp_path / "runs").exists()  # refused before any run folder
    # ImageNet is also what a backbone starts from when --weights is not given
    os.environ["KERAS_HOME"], old = str(home), os.environ.get("KERAS_HOME")
    try:
        with pytest.raises(UsageError, match="efficientnetv2-b0_notop.h5"):
            train.train(data, arch="efficientnet_v2_b0", project=str(tmp_path / "runs"), verbose=False)
    finally:
        os.environ.pop("KERAS_HOME") if old is None else os.environ.__setitem__("KERAS_HOME", old)


def test_a_weights_file_of_another_network_fails_in_one_line(tmp_path, capsys):
    import keras

    data = make_shapes(tmp_path / "d", n_per_class=4, kinds=("circle", "square"), size=32)
    narrow = tmp_path / "narrow.weights.h5"
    keras.applications.MobileNetV3Small(weights=None, alpha=0.75, include_top=False).save_weights(narrow)
    code, _, err = _main(capsys, "train", data, "--arch", ARCH, "--weights", narrow, "--project", tmp_path / "runs")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "has shapes" in err
    code, _, err = _main(capsys, "train", data, "--arch", "mobilenet_v3_large", "--weights", narrow,
                         "--project", tmp_path / "runs")
    assert code == 2 and "no weights for" in err
    (tmp_path / "text.h5").write_text("not hdf5")
    code, _, err = _main(capsys, "train", data, "--arch", ARCH, "--weights", tmp_path / "text.h5")
    assert code == 2 and "not a Keras weights file" in err
    assert not (tmp_path / "runs").exists()


def test_the_older_h5_format_of_keras_imagenet_files_loads_by_name(tmp_path):
    import h5py
    import keras

    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    src = keras.applications.MobileNetV3Small(weights=None, include_top=False, input_shape=(96, 96, 3))
    path = tmp_path / "no_top.h5"  # the layout of Keras's own weights_mobilenet_v3_small_..._no_top_v2.h5
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, src)
    net = backbones.build(ARCH, (64, 64, 3), 2)
    n = backbones.load_h5_by_name(backbones.backbone_layers(net), path, ARCH)
    assert n == sum(1 for layer in src.layers if layer.weights)
    for name in ("conv", "expanded_conv_5_project_bn", "conv_1"):
        for have, want in zip(net.get_layer(name).get_weights(), src.get_layer(name).get_weights()):
            np.testing.assert_array_equal(have, want)


def test_auto_picks_the_shipped_backbone_for_colour_photos_only(tmp_path):
    rng = np.random.default_rng(0)
    for name, size, mode in (("photos", 160, "RGB"), ("gray", 160, "L"), ("small", 40, "RGB")):
        for c in ("a", "b"):
            (tmp_path / name / c).mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).convert(mode).save(tmp_path / name / c / f"{i}.png")
    def pick(name):
        return backbones.auto_arch(sorted((tmp_path / name).rglob("*.png")))[0]

    assert pick("photos") == "efficientnet_lite0"
    assert pick("gray") == "default"
    assert pick("small") == "default"
    assert backbones.auto_arch([]) == ("default", "no images")


def test_lite0_from_the_shipped_weights_trains_distributed_and_resumes_in_phase_two(tmp_path, monkeypatch):
    """efficientnet_lite0 --weights imagenet reads the ImageNet backbone shipped with happysad (no
    download); the two phases run under tf.distribute; a run stopped during fine-tuning resumes there."""
    import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # after the backup of the second epoch (phase 2)
            if epoch == 1:
                raise RuntimeError("killed")

    data = make_shapes(tmp_path / "d", n_per_class=12, kinds=("circle", "square"), size=32)
    real = train._callbacks
    monkeypatch.setattr(train, "_callbacks", lambda *a, **k: [*real(*a, **k), Crash()])
    with pytest.raises(RuntimeError, match="killed"):
        train.train(data, arch="efficientnet_lite0", img_size=32, epochs=3, head_epochs=1, batch_size=8,
                    distributed=True, project=str(tmp_path / "runs"), name="lite", verbose=False)
    monkeypatch.setattr(train, "_callbacks", real)
    run = tmp_path / "runs" / "lite"
    res = train.resume(run, verbose=False)
    rows = (run / "results.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]
    last = keras.models.load_model(run / "weights" / "last.keras", compile=False)
    assert last.get_layer("block14_project").trainable and not last.get_layer("block13_project").trainable
    meta = json.loads((run / "meta.json").read_text())
    assert meta["arch_options"]["weights"].startswith("imagenet") and meta["train"]["distributed"]
    assert meta["preprocessing"]["steps"][0]["layer"] == "imagenet_scale"
    import h5py

    with h5py.File(backbones._lite0_source_path(), "r") as f:
        shipped = backbones._h5_layers(f)
    model = bundle.load(run).model
    for have, want in zip(model.get_layer("block3_dw").get_weights(), shipped["block3_dw"]):
        np.testing.assert_array_equal(have, want)  # frozen in both phases
    assert res.metrics["n"] > 0
