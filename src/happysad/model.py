"""Architectures: each is a function ``(input_shape, n_classes) -> keras.Model``.

Every model takes raw pixels (0..255, uint8 or float) and scales them itself with a ``Rescaling``
layer, so a saved model is self-contained: whoever loads it feeds it pixels, nothing else.
Two classes get one sigmoid output (as the seed had); more classes get a softmax.
"""

from __future__ import annotations

from typing import Callable

from . import backbones
from .backbones import classifier_head
from .errors import UsageError

# Preferred input side per architecture when --img-size is not given.
DEFAULT_IMG_SIZE = {"seed": 256, "default": 96}


def _keras():
    import keras

    return keras


def seed(input_shape: tuple[int, int, int], n_classes: int):
    """The seed tutorial's CNN, layer for layer (its separate ``x / 255`` step is the Rescaling layer)."""
    keras = _keras()
    L = keras.layers
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = L.Conv2D(16, (3, 3), 1, activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(32, (3, 3), 1, activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(16, (3, 3), 1, activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dense(256, activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, n_classes), name="seed")


def default(input_shape: tuple[int, int, int], n_classes: int, width: int = 32, dropout: float = 0.3,
            block_dropout: float | None = None):
    """A compact VGG-style CNN: blocks of two 3x3 conv + batch norm + ReLU, max-pool, dropout, until
    the feature map is about 6 px; then global average pooling, dropout and the head.

    Batch norm makes it train fast at a high learning rate (momentum 0.9 so that its running statistics
    settle within the few hundred steps a small dataset gives); global pooling keeps it small (about
    0.3-1.2 M parameters) and tolerant to where the object sits in the frame.
    """
    keras = _keras()
    L = keras.layers
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)
    side = min(input_shape[0], input_shape[1])
    if side > 96:
        # Large inputs: a strided stem brings them down cheaply before the main blocks.
        x = L.Conv2D(width, 5, strides=2, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.Activation("relu")(x)
        side //= 2
    filters, blocks = width, 0
    while side >= 12 and blocks < 5:
        for _ in range(2):
            x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = L.BatchNormalization(momentum=0.9)(x)
            x = L.Activation("relu")(x)
        x = L.MaxPooling2D()(x)
        if (dropout * 0.5 if block_dropout is None else block_dropout) > 0:
            x = L.Dropout(dropout * 0.5 if block_dropout is None else block_dropout)(x)
        side //= 2
        filters = min(filters * 2, 256)
        blocks += 1
    x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization(momentum=0.9)(x)
    x = L.Activation("relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(dropout)(x)
    return keras.Model(inputs, classifier_head(x, n_classes), name="default")


ARCHS: dict[str, Callable] = {"seed": seed, "default": default}

# Pretrained ImageNet backbones (happysad.backbones) are architectures too; their weights are loaded apart.
ARCHS.update({name: (lambda shape, n, name=name: backbones.build(name, shape, n)) for name in backbones.BACKBONES})
DEFAULT_IMG_SIZE.update({name: b.native for name, b in backbones.BACKBONES.items()})


def copy_matching_weights(dst, src) -> tuple[int, int]:
    """Copy ``src``'s weights into ``dst`` layer by layer wherever type and shapes agree (fine-tuning:
    everything but a head with another number of classes). Returns (layers copied, layers left)."""
    copied = skipped = 0
    for d, s in zip(dst.layers, src.layers):
        dw, sw = d.get_weights(), s.get_weights()
        if not dw:
            continue
        if type(d) is type(s) and [w.shape for w in dw] == [w.shape for w in sw]:
            d.set_weights(sw)
            copied += 1
        else:
            skipped += 1
    return copied, skipped


def check_arch(arch: str, width: int | None = None) -> None:
    """Fail early, with what to do, on an unknown architecture or a width it cannot take."""
    if arch not in ARCHS:
        raise UsageError(f"unknown --arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    if width is not None and arch not in ("default", "tiny"):
        raise UsageError(f"--width applies to --arch default or tiny, not {arch}")
    if width is not None and not 8 <= width <= 256:
        raise UsageError(f"--width {width}: choose 8 to 256")


def build(arch: str, input_shape: tuple[int, int, int], n_classes: int, width: int | None = None,
          dropout: float | None = None):
    """Build a registered architecture, checking the arguments first. ``width`` (default arch only):
    filters of the first block, doubling per block up to 256; ``dropout`` (default arch only): before
    the head. None keeps the architecture's default."""
    check_arch(arch, width)
    if n_classes < 2:
        raise UsageError(f"need at least 2 classes, got {n_classes}")
    h, w, c = input_shape
    if min(h, w) < 16 or c not in (1, 3):
        raise UsageError(f"input shape {input_shape} not supported (side >= 16, 1 or 3 channels)")
    if arch == "seed" and min(h, w) < 22:
        raise UsageError("--arch seed needs --img-size >= 22 (three 3x3 conv + pool stages)")
    options = {k: v for k, v in (("width", width), ("dropout", dropout)) if v is not None}
    return ARCHS[arch](input_shape, n_classes, **options)


def tiny(input_shape: tuple[int, int, int], n_classes: int, width: int = 24, dropout: float = 0.2):
    """A small, fast CNN for face crops (the student of ``happysad distill``): one 3x3 conv at full
    resolution, then two 3x3 convs per halving, widths w, 2w, 4w and a last 6w conv at about 6 px,
    global average pooling and the head. At 48x48 and width 24 it has 0.28 M parameters and costs
    about 36 M multiply-adds; a second conv at full resolution is left out because it would cost as
    much as everything after it. Widths that are multiples of 8 suit the CPU kernels (onnxruntime
    ran width 20 twice as slow as width 16).

    The head is a ``logits`` Dense layer followed by its activation (``prob``/``probs``), so that
    distillation can train on the logits while the saved model gives probabilities like every other."""
    keras = _keras()
    L = keras.layers
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = L.Rescaling(1.0 / 255, name="rescale")(inputs)

    def conv(x, filters):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        return L.Activation("relu")(x)

    x = L.MaxPooling2D()(conv(x, width))
    side = min(input_shape[0], input_shape[1]) // 2
    filters = width * 2
    while side >= 12:
        x = L.MaxPooling2D()(conv(conv(x, filters), filters))
        side //= 2
        filters *= 2
    x = L.GlobalAveragePooling2D()(conv(x, filters * 3 // 4))
    x = L.Dropout(dropout)(x)
    units = 1 if n_classes == 2 else n_classes
    logits = L.Dense(units, name="logits", dtype="float32")(x)
    out = L.Activation("sigmoid" if n_classes == 2 else "softmax", name="prob" if n_classes == 2 else "probs",
                       dtype="float32")(logits)
    return keras.Model(inputs, out, name="tiny")


ARCHS["tiny"] = tiny
DEFAULT_IMG_SIZE["tiny"] = 48  # face crops, as FER2013 frames them
