"""The built-in FER models: found by name, used by default, and fed any photo (color, any size)."""

import json

import numpy as np
import pytest
from PIL import Image

from happysad import bundle
from happysad.cli import main

BUILTIN = bundle.builtin_names()
needs_happy_sad = pytest.mark.skipif("fer-happy-sad" not in BUILTIN, reason="fer-happy-sad not installed")


@needs_happy_sad
def test_builtin_meta_and_size():
    model_path, meta_path = bundle.resolve("fer-happy-sad")
    meta = json.loads(meta_path.read_text())
    assert meta["classes"] == ["happy", "sad"] and meta["input"]["color_mode"] == "grayscale"
    assert (meta["input"]["height"], meta["input"]["width"]) == (48, 48)
    assert meta["model_card"]["val_accuracy"] > 0.9
    assert model_path.stat().st_size < 8 * 2**20  # a few MB


@needs_happy_sad
def test_predict_color_photo_without_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    photo = tmp_path / "color_photo.jpg"
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(photo)
    assert main(["predict", str(photo), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] in ("happy", "sad") and set(out["probabilities"]) == {"happy", "sad"}


@pytest.mark.parametrize("name", [n for n in ("fer-happy-sad", "fer-emotion7", "fer-happy-sad-tiny") if n in BUILTIN])
def test_builtin_scores_what_its_model_card_says(name):
    """Re-evaluating the shipped weights on FER2013 PublicTest gives the model card's accuracy."""
    from conftest import needs_shared

    from happysad import evaluate

    fer = needs_shared("fer2013/validation")
    meta = json.loads(bundle.resolve(name)[1].read_text())
    m = evaluate.evaluate(fer, name, meta["classes"], faces=False)  # the card scores the crops whole
    assert m["n"] == meta["model_card"]["n"]
    assert m["accuracy"] == pytest.approx(meta["model_card"]["val_accuracy"], abs=0.002)
    assert m["confusion"] == meta["model_card"]["confusion"]


needs_photo_model = pytest.mark.skipif("happy-sad" not in BUILTIN, reason="happy-sad not installed")


@needs_photo_model
def test_the_photo_model_is_the_default_and_says_which_branch_decided(tmp_path, capsys):
    skdata = pytest.importorskip("skimage.data")
    meta = json.loads(bundle.resolve("happy-sad")[1].read_text())
    assert meta["kind"] == "photo" and meta["classes"] == ["happy", "sad"]
    cv = meta["cross_validation"]  # measured when it was trained, grouped by source
    assert cv["n"] >= 4000 and cv["photo_model"]["accuracy"] > cv["scene_branch"]["accuracy"]
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(photo)
    text = tmp_path / "no_face.png"
    Image.new("RGB", (300, 200), (20, 30, 120)).save(text)
    assert main(["predict", str(photo), str(text), "--json"]) == 0
    with_face, without = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert with_face["face_found"] and with_face["label"] == "happy"  # she smiles
    assert with_face["decided_by"] in ("face", "scene") and with_face["branches"]["face"] is not None
    assert not without["face_found"] and without["decided_by"] == "scene" and without["branches"]["face"] is None
