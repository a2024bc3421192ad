"""Shared fixtures: small generated datasets, so the suite needs no downloaded data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HAPPYSAD_NO_PROGRESS", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def shape_image(rng: np.random.Generator, kind: str, size: int = 40) -> Image.Image:
    """An easy 3-class toy: a filled circle, square or triangle on a random background."""
    bg = tuple(int(v) for v in rng.integers(0, 120, 3))
    fg = tuple(int(v) for v in rng.integers(140, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.25, 0.4) * size
    cx, cy = rng.uniform(r, size - r, 2)
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    # Some texture, so that distinct pictures also have distinct perceptual hashes (as photos do).
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_shapes(root: Path, n_per_class: int = 30, kinds=("circle", "square", "triangle"), seed: int = 0,
                size: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    for k in kinds:
        (root / k).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            shape_image(rng, k, size).save(root / k / f"{k}_{i:03d}.png")
    return root


@pytest.fixture
def shapes3(tmp_path) -> Path:
    return make_shapes(tmp_path / "shapes")


@pytest.fixture
def shapes2(tmp_path) -> Path:
    return make_shapes(tmp_path / "shapes2", kinds=("circle", "square"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny trained 2-class run, shared by the bundle/predict/evaluate/CLI tests."""
    from happysad import train

    root = tmp_path_factory.mktemp("trained")
    data = make_shapes(root / "data", n_per_class=30, kinds=("circle", "square"))
    res = train.train(data, arch="default", img_size=32, epochs=2, batch_size=16,
                      project=str(root / "runs"), name="tiny", verbose=False)
    return data, res


def needs_shared(sub: str) -> Path:
    p = SHARED / sub
    if not p.is_dir():
        pytest.skip(f"shared dataset {p} not present")
    return p


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder that takes a second to make: 8x8 gray -> one sigmoid unit, classes happy and sad.
    For tests about inputs, places and servers, where what the model answers does not matter."""
    import keras

    from happysad import bundle

    root = tmp_path_factory.mktemp("tiny_model")
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    bundle.save_keras(model, root / "model.keras")
    bundle.write_json(root / "meta.json", bundle.make_meta(classes=["happy", "sad"], img_size=(8, 8),
                                                           color_mode="grayscale", arch="tiny"))
    return root
