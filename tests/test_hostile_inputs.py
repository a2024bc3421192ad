"""Hostile and careless inputs: a meta.json that lies about its model, images of any shape, numeric options
out of range. Each must end in one line naming the file or option and what is wrong (exit code 1 or 2),
never a traceback, a hang or gigabytes of memory."""

import json
import os
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from happysad import bundle, cli, faces, photo, train
from happysad.errors import HappysadError

# ----------------------------------------------------------------------------- numeric options


@pytest.mark.parametrize("argv, option, why", [
    (["clean", "d", "--near-dup-distance", "100"], "--near-dup-distance", "must be from 0 to 16, not 100"),
    (["clean", "d", "--near-dup-distance", "-1"], "--near-dup-distance", "must be from 0 to 16, not -1"),
    (["split", "d", "--out", "s.csv", "--near-dup-distance", "65"], "--near-dup-distance", "from 0 to 16"),
    (["clean", "d", "--max-pixels", "0"], "--max-pixels", "must be from 1 to 50000000, not 0"),
    (["clean", "d", "--min-side", "-5"], "--min-side", "not -5"),
    (["clean", "d", "--min-bytes", "-1"], "--min-bytes", "not -1"),
    (["train", "d", "--epochs", "0"], "--epochs", "must be from 1 to"),
    (["train", "d", "--batch-size", "0"], "--batch-size", "must be from 1 to"),
    (["train", "d", "--img-size", "100000"], "--img-size", f"to {bundle.MAX_SIDE}, not 100000"),
    (["train", "d", "--lr", "0"], "--lr", "more than 0"),
    (["train", "d", "--lr", "nan"], "--lr", "more than 0"),
    (["train", "d", "--patience", "-1"], "--patience", "not -1"),
    (["train", "d", "--seed", "-1"], "--seed", "must be from 0 to 4294967295, not -1"),
    (["train", "d", "--epochs", "2.5"], "--epochs", "expected a whole number, not '2.5'"),
    (["split", "d", "--out", "s.csv", "--ratios", "nan", "0.5"], "--ratios", "from 0 to 1, not nan"),
    (["demo", "--epochs", "0"], "--epochs", "must be from 1 to"),
    (["serve", "--port", "80000"], "--port", "must be from 1 to 65535, not 80000"),
    (["serve", "--port", "-1"], "--port", "must be from 1 to 65535, not -1"),
    (["serve", "--max-upload-mb", "0"], "--max-upload-mb", "more than 0"),
    (["serve", "--max-upload-mb", "inf"], "--max-upload-mb", "more than 0"),
    (["serve", "--max-files", "0"], "--max-files", "must be from 1 to"),
    (["train-photo", "d", "--out", "m", "--folds", "1"], "--folds", "must be from 2 to"),
])
def test_out_of_range_options_are_one_line_usage_errors(argv, option, why, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"happysad {argv[0]}: error: argument {option}: ") and why in last


def test_defaults_and_bounds_are_accepted():
    p = cli.build_parser()
    a = p.parse_args(["clean", "d"])
    assert (a.min_side, a.min_bytes, a.max_pixels, a.near_dup_distance) == (32, 0, 50_000_000, 4)
    a = p.parse_args(["train", "d"])
    # train's options stay unset so a --recipe can fill them; what is unset comes from TrainConfig
    assert (a.epochs, a.batch_size, a.seed, a.ratios) == (None, None, None, None)
    cfg = train.TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.seed, tuple(cfg.ratios)) == (20, 32, 0, (0.7, 0.2, 0.1))
    a = p.parse_args(["serve"])
    assert (a.port, a.max_upload_mb, a.max_files) == (8000, 10.0, 16)
    assert p.parse_args(["train-photo", "d", "--out", "m"]).folds == 5
    # the ends of each range are fine
    a = p.parse_args(["clean", "d", "--near-dup-distance", "0", "--min-side", "0", "--max-pixels", "1"])
    assert (a.near_dup_distance, a.min_side, a.max_pixels) == (0, 0, 1)
    assert p.parse_args(["split", "d", "--out", "s", "--near-dup-distance", "16"]).near_dup_distance == 16
    a = p.parse_args(["serve", "--port", "65535", "--max-upload-mb", "0.5", "--max-files", "1"])
    assert (a.port, a.max_upload_mb, a.max_files) == (65535, 0.5, 1)
    assert p.parse_args(["train", "d", "--epochs", "1", "--batch-size", "1", "--lr", "1e-4"]).lr == 1e-4


def test_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["clean", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default 32" in out and "default 4, at most 16" in out and "default 50000000" in out


# ----------------------------------------------------------------------------- images of any shape

@pytest.fixture(scope="module")
def detector():
    return faces.detector()


@pytest.fixture(scope="module")
def face_patch(detector):
    data = pytest.importorskip("skimage.data")
    astronaut = Image.fromarray(data.astronaut())
    x, y, w, h = detector.detect(astronaut)[0].box
    return astronaut.crop((x - 40, y - 40, x + w + 40, y + h + 40))


def test_a_wide_panorama_is_searched_and_faces_keep_their_place(face_patch, detector):
    pano = Image.new("RGB", (14000, 2500), (90, 120, 90))
    pano.paste(face_patch.resize((600, 600)), (12000, 1500))
    t = time.perf_counter()
    found = detector.detect(pano)
    assert time.perf_counter() - t < 5
    assert len(found) == 1
    x, y, w, h = found[0].box  # in the panorama's own pixels
    assert 12000 < x + w / 2 < 12600 and 1500 < y + h / 2 < 2100 and 250 < w < 600


@pytest.mark.parametrize("size", [(13000, 1), (1, 13000), (1, 1), (2500, 14000), (40000, 200)])
def test_degenerate_and_extreme_shapes_find_nothing_quickly(size, detector):
    t = time.perf_counter()
    assert detector.detect(Image.new("RGB", size, (200, 180, 160))) == []
    assert time.perf_counter() - t < 5


def test_an_extreme_panorama_gets_a_bounded_number_of_tiles(detector):
    full = next(n for n in detector.nets if n.kind == "full")
    regions = detector._regions(full, 100_000, 400)
    tiles = regions[1:]
    assert 1 < len(tiles) <= faces.MAX_TILES
    assert min(x for x, _, _ in tiles) == 0 and max(x + s for x, _, s in tiles) == 100_000  # both ends searched
    # an ordinary large photo keeps its full grid: tiles of 1000 px every 750 px, 8 across and 5 down
    assert len(detector._regions(full, 6000, 4000)) - 1 == 8 * 5


def test_memory_stays_bounded_on_panoramas_and_strips():
    """In a fresh process (the peak RSS of this one says nothing): searching a 14000 x 2500 panorama and a
    13000 x 1 strip may add tens of MB, not the gigabytes a letterboxed square of the long side takes."""
    code = """
import resource
from PIL import Image
from happysad import faces
det = faces.detector()
det.detect(Image.new("RGB", (640, 480)))
images = [Image.new("RGB", (14000, 2500), (90, 120, 90)), Image.new("RGB", (13000, 1)), Image.new("L", (1, 13000))]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
found = [det.detect(im) for im in images]
print(sum(map(len, found)), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.returncode == 0, p.stderr
    n_faces, grown_mb = map(int, p.stdout.split())
    assert n_faces == 0 and grown_mb < 100


# ----------------------------------------------------------------------------- meta.json that lies

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two small saved Keras models: 8x8 gray -> one sigmoid unit; any size RGB -> 3 softmax units."""
    import keras

    root = tmp_path_factory.mktemp("tiny")
    L = keras.layers
    gray = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Dense(1, activation="sigmoid")])
    rgb = keras.Sequential([keras.Input((None, None, 3)), L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")])
    bundle.save_keras(gray, root / "gray.keras")
    bundle.save_keras(rgb, root / "rgb.keras")
    return root


def model_dir(root, tiny_models, kind="gray", **changes):
    """A model folder: a copy of a tiny model and its meta.json, with ``changes`` applied (dotted keys
    reach into ``input``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.keras").write_bytes((tiny_models / f"{kind}.keras").read_bytes())
    if kind == "gray":
        meta = bundle.make_meta(classes=["happy", "sad"], img_size=(8, 8), color_mode="grayscale", arch="tiny")
    else:
        meta = bundle.make_meta(classes=["a", "b", "c"], img_size=(32, 32), color_mode="rgb", arch="tiny")
    for k, v in changes.items():
        if k.startswith("input_"):
            meta["input"][k[len("input_"):]] = v
        else:
            meta[k] = v
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def load_error(path) -> str:
    with pytest.raises(HappysadError) as e:
        bundle.load(path)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


def test_a_good_meta_loads_and_dynamic_model_sides_take_any_size(tmp_path, tiny_models):
    b = bundle.load(model_dir(tmp_path / "g", tiny_models))
    assert b.classes == ["happy", "sad"] and b.image_size == (8, 8)
    b = bundle.load(model_dir(tmp_path / "r", tiny_models, "rgb", input_height=300, input_width=20))
    assert b.image_size == (300, 20) and len(b.classes) == 3


@pytest.mark.parametrize("kind, changes, field, why", [
    ("gray", {"input_height": 100000, "input_width": 100000}, "input.height", "from 1 to 4096, not 100000"),
    ("gray", {"input_height": -1}, "input.height", "not -1"),
    ("gray", {"input_width": 0}, "input.width", "not 0"),
    ("gray", {"input_height": 8.0}, "input.height", "whole number"),
    ("gray", {"input_height": 16}, "input.height", "the model's input height is 8"),
    ("gray", {"input_color_mode": "rgb", "input_channels": 3}, "input.channels", "the model's input channels is 1"),
    ("gray", {"input_color_mode": "rgb"}, "input.channels", "3 for color_mode rgb"),
    ("gray", {"input_color_mode": "cmyk"}, "input.color_mode", "rgb or grayscale"),
    ("gray", {"classes": ["a", "b", "c"]}, "classes", "3 classes but the model has 1 output"),
    ("rgb", {"classes": ["a", "b", "c", "d"]}, "classes", "4 classes but the model has 3 output"),
    ("rgb", {"classes": ["a", "b"]}, "classes", "2 classes but the model has 3 output"),
    ("gray", {"classes": [1, 2]}, "classes", "non-empty strings"),
    ("gray", {"classes": ["happy", ""]}, "classes", "non-empty strings"),
    ("gray", {"classes": ["happy", "happy"]}, "classes", "'happy' more than once"),
    ("gray", {"classes": ["happy"]}, "classes", "at least 2"),
    ("gray", {"classes": "happy,sad"}, "classes", "a list"),
    ("gray", {"format_version": "1"}, "format_version", "not '1'"),
    ("gray", {"format_version": 2}, "format_version", "newer than this happysad"),
    ("gray", {"input": [8, 8]}, "input", "an object"),
    ("gray", {"output": "relu"}, "output", "sigmoid or softmax"),
    ("gray", {"faces": {"detector": "haar"}}, "faces.detector", "short"),
    ("gray", {"faces": {"margin": 1e9}}, "faces.margin", "from 0 to 1"),
    ("gray", {"arch_options": [16]}, "arch_options", "an object"),
])
def test_a_meta_json_that_does_not_fit_is_one_line_naming_file_and_field(tmp_path, tiny_models, kind, changes,
                                                                         field, why):
    d = model_dir(tmp_path / "m", tiny_models, kind, **changes)
    msg = load_error(d)
    assert msg.startswith(f"{d / 'meta.json'}: meta.json ") and field in msg and why in msg


def test_unreadable_meta_files_are_one_line_and_never_block(tmp_path, tiny_models):
    d = model_dir(tmp_path / "m", tiny_models)
    (d / "meta.json").write_text("[" * 100_000)  # nested too deeply for the JSON parser
    assert "cannot read meta.json" in load_error(d)
    (d / "meta.json").write_text("[]")
    assert "not a happysad meta.json" in load_error(d)
    with open(d / "meta.json", "wb") as f:  # far larger than any meta.json: not read whole
        f.truncate(bundle.MAX_META_BYTES + 1)
    assert "larger than" in load_error(d)
    (d / "meta.json").unlink()
    os.mkfifo(d / "meta.json")  # opening a pipe for reading would wait for a writer forever
    box = []
    t = threading.Thread(target=lambda: box.append(pytest.raises(HappysadError, bundle.load, d)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive() and "meta.json" in str(box[0].value)


def test_a_broken_keras_file_is_one_line(tmp_path, tiny_models):
    d = model_dir(tmp_path / "m", tiny_models)
    with zipfile.ZipFile(d / "model.keras", "w") as z:  # Keras explains this one in 9 lines, config included
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", json.dumps({"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                                              "config": {"name": "d", "units": "many", "bogus_option": 1}}))
        z.writestr("model.weights.h5", b"")
    msg = load_error(d)  # one line, under 400 characters
    assert msg.startswith(f"{d / 'model.keras'}: cannot load Keras model (TypeError: ") and "Dense" in msg
    assert "bogus_option" not in msg  # the config dump of the later lines is left out


def test_predict_with_a_lying_meta_json_is_one_line_exit_1(tmp_path, tiny_models, capsys):
    d = model_dir(tmp_path / "m", tiny_models, input_height=100000, input_width=100000)
    img = tmp_path / "x.png"
    Image.new("RGB", (20, 20)).save(img)
    assert cli.main(["predict", str(img), "--model", str(d), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"happysad predict: error: {d / 'meta.json'}: meta.json input.height must be a whole number " \
                  "from 1 to 4096, not 100000"


def photo_model(root, tiny_models, **member_changes):
    """A photo model folder: the gray tiny model as both members (``member_changes`` go to the face
    member's meta.json), a zero fusion and the top meta.json."""
    model_dir(root / "face", tiny_models, **member_changes)
    model_dir(root / "scene", tiny_models)
    classes = ["happy", "sad"]
    names = photo.feature_names(classes)
    fusion = photo.Linear(names, np.zeros(len(names)), np.ones(len(names)), np.zeros((len(names), 2)), np.zeros(2))
    bundle.write_json(root / photo.FUSION_NAME, fusion.to_json())
    meta = bundle.make_meta(classes=classes, img_size=(8, 8), color_mode="rgb", arch="photo", kind=photo.KIND,
                            members={"face": "face", "scene": "scene"}, fusion=photo.FUSION_NAME)
    bundle.write_json(root / "meta.json", meta)
    return root


def test_photo_models_check_their_own_meta_and_each_member(tmp_path, tiny_models):
    good = bundle.load(photo_model(tmp_path / "good", tiny_models))
    assert good.model is None and set(good.members) == {"face", "scene"} and good.classes == ["happy", "sad"]
    bad = photo_model(tmp_path / "bad", tiny_models, input_height=100000)
    msg = load_error(bad)
    assert msg.startswith(f"{bad / 'face' / 'meta.json'}: meta.json input.height")
    top = photo_model(tmp_path / "top", tiny_models)
    meta = json.loads((top / "meta.json").read_text())
    meta["format_version"] = "1"
    (top / "meta.json").write_text(json.dumps(meta))
    assert load_error(top).startswith(f"{top / 'meta.json'}: meta.json format_version")
