"""Augmentation beyond data.augmenter's Keras layers, for the training recipes (recipes/*.toml).

Shifts by whole pixels, at training time (random pad-and-crop) and at test time (ten crops); random
erasing and mixup (Keras's own layers, set up for 0..255 pixels and happysad's targets); and
data.augmenter's transforms as one batched warp, for GPU runs on PyTorch (bench/train_fer_gpu.py).

Random crop pads each image by ``pad`` reflected pixels and crops a random window of the original size
back out: a shift of up to ``pad`` pixels each way, per image. Ten-crop test-time averaging looks at the
four extreme shifts and the centre, each also mirrored, and averages the ten answers, so a model meets
at test time exactly the shifts it was trained on. Both pad the same way (reflection).

The crop layer is written with ``keras.ops``, so it runs in a tf.data pipeline (TensorFlow) and in
front of a model on any Keras backend (``bench/train_fer_gpu.py`` on PyTorch). Keras's own
``RandomCrop`` crops a whole batch at one place and to a smaller size, which is not this.
"""

from __future__ import annotations

import functools
import math

import numpy as np

TRANSLATION = 0.08  # data.augmenter's shift, as a fraction of the side


def default_pad(side: int) -> int:
    """The ten-crop shift for a model trained without random crop: the shift data.augmenter applies."""
    return max(1, round(TRANSLATION * side))


def ten_crops(x: np.ndarray, pad: int) -> np.ndarray:
    """(N, H, W, C) -> (10, N, H, W, C): centre, four corners of the image padded by ``pad`` reflected
    pixels, then the same five mirrored left to right. The first view is ``x`` itself."""
    x = np.asarray(x)
    h, w = x.shape[1:3]
    if pad < 1 or pad >= min(h, w):
        raise ValueError(f"ten-crop pad {pad} must be 1 to {min(h, w) - 1} for {h}x{w} images")
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    offsets = [(pad, pad), (0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)]
    views = [padded[:, dy:dy + h, dx:dx + w] for dy, dx in offsets]
    return np.stack(views + [v[:, :, ::-1] for v in views])


@functools.cache
def _pad_crop_class():
    import keras
    from keras import ops

    class RandomPadCrop(keras.layers.Layer):
        """Pad by ``pad`` reflected pixels, then crop each image of the batch back to its size at its
        own random offset (0 to 2 * pad each way). Identity outside training."""

        def __init__(self, pad: int, seed: int | None = None, **kw):
            super().__init__(**kw)
            self.pad, self.seed = int(pad), seed
            self.gen = keras.random.SeedGenerator(seed)

        def compute_output_shape(self, shape):
            return shape

        def call(self, x, training=True):
            if not training or self.pad == 0:
                return x
            p = self.pad
            n, h, w, c = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
            padded = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
            dy = keras.random.randint((n,), 0, 2 * p + 1, seed=self.gen)
            dx = keras.random.randint((n,), 0, 2 * p + 1, seed=self.gen)
            rows = ops.expand_dims(dy, 1) + ops.expand_dims(ops.arange(h, dtype=dy.dtype), 0)  # (n, h)
            cols = ops.expand_dims(dx, 1) + ops.expand_dims(ops.arange(w, dtype=dx.dtype), 0)  # (n, w)
            rows = ops.broadcast_to(rows[:, :, None, None], (n, h, w + 2 * p, c))
            x = ops.take_along_axis(padded, rows, axis=1)
            cols = ops.broadcast_to(cols[:, None, :, None], (n, h, w, c))
            return ops.take_along_axis(x, cols, axis=2)

        def get_config(self):
            return {**super().get_config(), "pad": self.pad, "seed": self.seed}

    return RandomPadCrop


def random_pad_crop(pad: int, seed: int | None = None, name: str = "pad_crop"):
    """A Keras layer: per image, a random shift of up to ``pad`` pixels each way (see the module text)."""
    return _pad_crop_class()(pad, seed=seed, name=name)


def random_erasing(probability: float, seed: int | None = None):
    """Keras's RandomErasing (Zhong et al. 2017): with this probability per image, a random rectangle
    (2 to 33 % of each side squared) is filled with noise. Pixels 0..255."""
    import keras

    return keras.layers.RandomErasing(factor=(probability, probability), value_range=(0, 255), seed=seed,
                                      name="erasing")


def mixup(alpha: float, seed: int | None = None):
    """(images, targets) -> the same batch mixed pairwise with a Beta(alpha, alpha) weight per image,
    targets mixed with the same weights (Keras's MixUp, Zhang et al. 2018). Targets are one-hot rows,
    or one 0/1 column entry per image for a two-class sigmoid head."""
    import keras

    layer = keras.layers.MixUp(alpha=alpha, seed=seed, name="mixup")

    def mix(x, y):
        flat = len(y.shape) == 1  # two classes: (N,) targets; MixUp mixes rows of (N, K)
        out = layer({"images": x, "labels": keras.ops.expand_dims(y, 1) if flat else y})
        labels = out["labels"]
        return out["images"], (keras.ops.squeeze(labels, 1) if flat else labels)

    return mix


def batched_augmenter(seed: int = 0):
    """happysad's augmentation (data.augmenter: flip, shift 8 %, rotate 14 deg, zoom 10 %, brightness
    15 %, contrast 20 %) as one affine warp per batch: with torch's grid_sample on the torch backend,
    with keras.ops.image.affine_transform elsewhere (JAX compiles it into the train step). Keras's own
    image layers warp the images of a batch one at a time on the torch backend, which held an H100 to
    ~300 images/s."""
    import keras
    from keras import ops

    torch_backend = keras.backend.backend() == "torch"

    class BatchedAugment(keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.gen = None if torch_backend else keras.random.SeedGenerator(seed)

        def compute_output_shape(self, shape):
            return shape

        def call(self, x, training=False):
            if not training:
                return x
            return self._torch(x) if torch_backend else self._ops(x)

        @staticmethod
        def _jitter(img, u, axes):
            """Brightness then contrast, per image; ``axes`` are the spatial ones."""
            n = ops.shape(img)[0]
            img = img + ops.reshape(u(-0.15, 0.15) * 255, (n, 1, 1, 1))
            mean = ops.mean(img, axis=axes, keepdims=True)
            img = (img - mean) * ops.reshape(u(0.8, 1.2), (n, 1, 1, 1)) + mean
            return ops.clip(img, 0, 255)

        def _torch(self, x):
            import torch
            import torch.nn.functional as F

            n = x.shape[0]

            def u(lo, hi):
                return torch.empty(n, device=x.device).uniform_(lo, hi)

            img = x.permute(0, 3, 1, 2).float()
            angle, zoom = u(-0.04, 0.04) * 2 * math.pi, 1 + u(-0.1, 0.1)
            flip = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0)
            cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
            theta = torch.stack([torch.stack([cos * flip, -sin, u(-0.16, 0.16)], 1),  # grid spans -1..1
                                 torch.stack([sin * flip, cos, u(-0.16, 0.16)], 1)], 1)
            grid = F.affine_grid(theta, list(img.shape), align_corners=False)
            img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
            return self._jitter(img, u, (2, 3)).permute(0, 2, 3, 1)

        def _ops(self, x):
            n = ops.shape(x)[0]
            h, w = x.shape[1], x.shape[2]

            def u(lo, hi):
                return keras.random.uniform((n,), lo, hi, seed=self.gen)

            angle, zoom = u(-0.04, 0.04) * 2 * math.pi, 1 + u(-0.1, 0.1)
            flip = ops.where(u(0, 1) < 0.5, -1.0, 1.0)
            cos, sin = ops.cos(angle) * zoom, ops.sin(angle) * zoom
            # Output pixel (col, row) samples the input at A @ (col - cx, row - cy) + (cx + tx, cy + ty):
            # the same map as the torch branch, written as the projective transform Keras expects.
            cx, cy = (w - 1) / 2, (h - 1) / 2
            tx, ty = u(-0.08, 0.08) * w, u(-0.08, 0.08) * h
            a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
            zero = ops.zeros_like(a0)
            t = ops.stack([a0, a1, cx + tx - a0 * cx - a1 * cy,
                           b0, b1, cy + ty - b0 * cx - b1 * cy, zero, zero], axis=1)
            img = ops.image.affine_transform(ops.cast(x, "float32"), t, interpolation="bilinear",
                                             fill_mode="nearest", data_format="channels_last")
            return self._jitter(img, u, (1, 2))

    return BatchedAugment(name="augment")
