"""The GPU recipe without a GPU: the batched augmentation that bench/train_fer_gpu.py runs in front of
the model (its keras.ops branch, which JAX and TensorFlow use), and the script itself, run as a program
on tiny generated faces with the packaged recipes (TensorFlow backend, CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from happysad import augment

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _augment_with_draws(monkeypatch, x, fractions):
    """Run the augmenter with its uniform draws fixed: draw k is lo + fractions[k] * (hi - lo), in the
    order angle, zoom, flip, shift x, shift y, brightness, contrast."""
    import keras

    it = iter(fractions)
    monkeypatch.setattr(keras.random, "uniform",
                        lambda shape, lo, hi, seed=None: keras.ops.full(shape, lo + next(it) * (hi - lo)))
    aug = augment.batched_augmenter(0)
    return np.asarray(aug(keras.ops.convert_to_tensor(x), training=True))


@pytest.fixture
def pixels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 48, 48, 1)).astype("float32")


def test_neutral_draws_leave_the_image_alone(monkeypatch, pixels):
    out = _augment_with_draws(monkeypatch, pixels, [0.5, 0.5, 0.8, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(out, pixels, atol=1e-3)


def test_flip_draw_mirrors_left_to_right(monkeypatch, pixels):
    out = _augment_with_draws(monkeypatch, pixels, [0.5, 0.5, 0.2, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(out, pixels[:, :, ::-1], atol=1e-3)


def test_shift_draw_moves_content_by_whole_pixels(monkeypatch, pixels):
    # shift x = u(-0.08, 0.08) * 48: fraction 0.5 + 2 / 7.68 samples 2 px to the right of each output pixel
    out = _augment_with_draws(monkeypatch, pixels, [0.5, 0.5, 0.8, 0.5 + 2 / 7.68, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(out[:, :, :-2], pixels[:, :, 2:], atol=1e-2)
    np.testing.assert_allclose(out[:, :, -2:], np.repeat(pixels[:, :, -1:], 2, axis=2), atol=1e-2)


def test_brightness_and_contrast_stay_in_pixel_range(monkeypatch, pixels):
    out = _augment_with_draws(monkeypatch, pixels, [0.5, 0.5, 0.8, 0.5, 0.5, 1.0, 1.0])
    assert out.min() >= 0 and out.max() <= 255
    assert out.mean() > pixels.mean()  # brighter by up to 15 % of 255, then clipped


def test_augmenter_is_identity_at_inference(pixels):
    aug = augment.batched_augmenter(0)
    np.testing.assert_array_equal(np.asarray(aug(pixels, training=False)), pixels)


def _tiny_fer(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for part, n in (("train", per_class), ("validation", 2)):
        for c in EMOTIONS:
            (root / part / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(root / part / c / f"{i}.png")
    return root


def test_gpu_script_trains_both_phases_from_the_packaged_recipes(tmp_path):
    """The whole script on the CPU with tiny settings: 7 emotions, then happy vs sad from it, with every
    option of the recipes (mixup, crop, erasing, SGD + Nesterov, cosine warm-up), and a model per phase
    that Keras loads in float32."""
    fer, out = _tiny_fer(tmp_path / "fer", per_class=4), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "KERAS_BACKEND": "tensorflow"}
    cmd = [sys.executable, str(ROOT / "bench" / "train_fer_gpu.py"), "--fer", str(fer), "--cache",
           str(tmp_path / "fer48.npz"), "--out", str(out), "--epochs", "2", "--finetune-epochs", "2", "--width", "8",
           "--policy", "float32", "--set", "warmup_epochs=1", "--set", "batch_size=8"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    setup = log[0]
    assert setup["event"] == "setup" and setup["recipes"]["emotion7"]["mixup"] == 0.2
    assert setup["recipes"]["happy-sad"]["width"] == 8 and setup["recipes"]["happy-sad"]["learning_rate"] == 0.01
    epochs = [r for r in log if "epoch" in r]
    assert [r["phase"] for r in epochs] == ["emotion7"] * 2 + ["happy-sad"] * 2
    assert 0 < epochs[0]["lr"] and epochs[1]["lr"] < epochs[0]["lr"]  # the end of the warm-up, then the cosine
    finished = {r["phase"]: r for r in log if r.get("event") == "done"}
    assert finished["happy-sad"]["layers_copied"] > 0

    import keras

    for phase, n in (("emotion7", 7), ("happy-sad", 1)):
        net = keras.models.load_model(out / f"{phase}.keras")
        assert net.output_shape == (None, n)

