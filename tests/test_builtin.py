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


@pytest.mark.parametrize("name", [n for n in ("fer-happy-sad", "fer-emotion7") if n in BUILTIN])
def test_builtin_scores_what_its_model_card_says(name):
    """Re-evaluating the shipped weights on FER2013 PublicTest gives the model card's accuracy."""
    from conftest import needs_shared

    from happysad import evaluate

    fer = needs_shared("fer2013/validation")
    meta = json.loads(bundle.resolve(name)[1].read_text())
    m = evaluate.evaluate(fer, name, meta["classes"])
    assert m["n"] == meta["model_card"]["n"]
    assert m["accuracy"] == pytest.approx(meta["model_card"]["val_accuracy"], abs=0.002)
    assert m["confusion"] == meta["model_card"]["confusion"]
