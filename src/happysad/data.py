"""tf.data input pipelines built from a split manifest.

decode (Pillow, via ``images.load_for_model``, in parallel) -> cache (in memory, only when it fits)
-> shuffle (train) -> batch -> augment (train only) -> prefetch.

Files that fail to decode are dropped with a warning instead of stopping training; run
``happysad clean`` first to deal with them properly.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

from . import augment as augment_ops, images

CACHE_LIMIT_MB = float(os.environ.get("HAPPYSAD_CACHE_MB", "2048"))
SHUFFLE_BUFFER = 10_000


class DecodeLog:
    """Collects the files that failed to decode inside the pipeline (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.failed: dict[str, str] = {}

    def add(self, path: str, msg: str):
        with self._lock:
            self.failed[path] = msg


def cache_fits(n: int, img_size: tuple[int, int], channels: int) -> bool:
    """Whether ``n`` decoded images fit the in-memory cache budget (HAPPYSAD_CACHE_MB, default 2048)."""
    return n * img_size[0] * img_size[1] * channels / 2**20 <= CACHE_LIMIT_MB


def augmenter(seed: int = 0, flip: bool = True, strength: float = 1.0, crop_pad: int = 0, erasing: float = 0.0):
    """Train-time augmentation: flips, small shifts, rotations, zoom, brightness and contrast; with
    ``crop_pad``, a random crop first (augment.random_pad_crop); with ``erasing``, random erasing last."""
    import keras

    L = keras.layers
    s = strength
    layers = [augment_ops.random_pad_crop(crop_pad, seed=seed + 6)] if crop_pad else []
    layers += [L.RandomFlip("horizontal", seed=seed)] if flip else []
    layers += [
        L.RandomTranslation(0.08 * s, 0.08 * s, fill_mode="nearest", seed=seed + 1),
        L.RandomRotation(0.04 * s, fill_mode="nearest", seed=seed + 2),  # ~ +-15 degrees
        L.RandomZoom(0.1 * s, fill_mode="nearest", seed=seed + 3),
        L.RandomBrightness(0.15 * s, value_range=(0, 255), seed=seed + 4),
        L.RandomContrast(0.2 * s, seed=seed + 5),
    ]
    layers += [augment_ops.random_erasing(erasing, seed=seed + 7)] if erasing else []
    return keras.Sequential(layers, name="augment")


def make_dataset(
    paths: Sequence[str],
    labels: Sequence[int],
    img_size: tuple[int, int],
    color_mode: str,
    batch_size: int,
    n_classes: int,
    *,
    shuffle: bool = False,
    augment=None,
    seed: int = 0,
    cache: bool | None = None,
    log: DecodeLog | None = None,
    augment_on=None,
    mixup: float = 0.0,
):
    """A batched ``tf.data.Dataset`` of (pixels 0..255 as float32, target). ``mixup`` > 0 mixes each
    batch after augmentation (augment.mixup, Beta(mixup, mixup) weights); like ``augment``, it waits
    for ``augment_on`` when that switch is given."""
    import tensorflow as tf

    h, w = int(img_size[0]), int(img_size[1])
    c = 1 if color_mode == "grayscale" else 3
    log = log or DecodeLog()

    def _load(path_bytes):
        path = path_bytes.decode("utf-8", "surrogateescape")
        try:
            return images.load_for_model(path, (h, w), color_mode)
        except Exception as e:  # recorded, then the element is dropped by ignore_errors
            log.add(path, str(e))
            raise

    def decode(path, label):
        x = tf.numpy_function(_load, [path], tf.uint8, stateful=False)
        x.set_shape((h, w, c))
        return tf.cast(x, tf.float32), label

    # Two classes: one 0/1 target for the sigmoid head. More: one-hot rows (allows label smoothing).
    y = np.asarray(labels, dtype=np.int64)
    y = y.astype(np.float32) if n_classes == 2 else np.eye(n_classes, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant([os.fsencode(p) for p in paths], dtype=tf.string), y))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    if cache is None:
        cache = cache_fits(len(paths), (h, w), c)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(len(paths), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        augment(tf.zeros((1, h, w, c)), training=True)  # build the layers outside the graph below
        if augment_on is None:
            ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        else:  # a switch the training loop flips (augmentation warm-up)
            ds = ds.map(lambda x, y: (tf.cond(augment_on, lambda: augment(x, training=True), lambda: x), y),
                        num_parallel_calls=tf.data.AUTOTUNE)
    if mixup:
        # plain tensor code: AutoGraph has nothing to convert (and warns when it tries)
        mix = tf.autograph.experimental.do_not_convert(augment_ops.mixup(mixup, seed=seed + 8))
        if augment_on is None:
            ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda x, y: tf.cond(augment_on, lambda: mix(x, y), lambda: (x, y)),
                        num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
