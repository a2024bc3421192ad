"""bench/train_fer_gpu.py pieces that run without a GPU: the batched augmentation's geometry (its
keras.ops branch, which JAX and TensorFlow use) and the retraining command rebuilt from a run's log."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
train_fer_gpu = pytest.importorskip("train_fer_gpu")


def _augment_with_draws(monkeypatch, x, fractions):
    """Run the augmenter with its uniform draws fixed: draw k is lo + fractions[k] * (hi - lo), in the
    order angle, zoom, flip, shift x, shift y, brightness, contrast."""
    import keras

    it = iter(fractions)
    monkeypatch.setattr(keras.random, "uniform",
                        lambda shape, lo, hi, seed=None: keras.ops.full(shape, lo + next(it) * (hi - lo)))
    aug = train_fer_gpu.batched_augmenter(0)
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
    aug = train_fer_gpu.batched_augmenter(0)
    np.testing.assert_array_equal(np.asarray(aug(pixels, training=False)), pixels)


def test_retraining_command_names_backend_and_non_default_options():
    opts = {k: str(v) for k, v in vars(train_fer_gpu.parser().parse_args([])).items()}
    opts.update(width="96", steps_per_execution="4")
    setup = {"backend": "jax", "options": opts, "epochs_run": {"emotion7": 120, "happy-sad": 40}}
    assert train_fer_gpu.command(setup, "emotion7") == (
        "KERAS_BACKEND=jax python bench/train_fer_gpu.py --width 96 --epochs 120 --steps-per-execution 4")
    old = dict(setup, backend="torch", options={k: v for k, v in opts.items() if k != "steps_per_execution"})
    assert train_fer_gpu.command(old, "happy-sad") == (
        "KERAS_BACKEND=torch python bench/train_fer_gpu.py --width 96 --epochs 120 --finetune-epochs 40")
