"""The optimizer, learning-rate schedule and loss that a training config asks for, from Keras's own.

Used by ``train`` and by ``bench/train_fer_gpu.py`` (Keras on PyTorch), so a recipe means the same on
every backend. ``cfg`` is a resolved ``train.TrainConfig`` (any object with its fields will do).
"""

from __future__ import annotations

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def schedule(cfg, steps_per_epoch: int):
    """``cfg.learning_rate`` as is ("constant"), or for "cosine" a linear warm-up from 0 over
    ``cfg.warmup_epochs`` (at most half the run: a short run of a long recipe still decays) and then a
    cosine down to 0 at the end of ``cfg.epochs`` (keras CosineDecay, stepped every batch)."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    import keras

    steps = max(1, int(steps_per_epoch))
    warm = round(min(cfg.warmup_epochs, cfg.epochs / 2) * steps)
    decay = max(1, cfg.epochs * steps - warm)
    if warm == 0:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay)
    return keras.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=cfg.learning_rate, warmup_steps=warm)


def optimizer(cfg, learning_rate):
    """Adam, AdamW or SGD (with ``cfg.momentum`` and ``cfg.nesterov``), with decoupled weight decay
    ``cfg.weight_decay`` (None: the optimizer's own default: none, or AdamW's 0.004)."""
    import keras

    decay = {} if cfg.weight_decay is None else {"weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov, **decay)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, **decay)
    return keras.optimizers.Adam(learning_rate, **decay)


def loss(n_classes: int, label_smoothing: float):
    """Binary cross-entropy for one sigmoid output (two classes), else categorical on one-hot rows
    (data.make_dataset gives those, which is what label smoothing and mixup need)."""
    import keras

    if n_classes == 2:
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
