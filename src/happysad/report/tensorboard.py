"""TensorBoard logs of a training run (``train --tensorboard``): Keras's own callback writes the loss,
accuracy and learning rate per epoch (and the graph); one more writes the validation confusion matrix
as an image per epoch. Open with ``tensorboard --logdir RUN/tensorboard``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UsageError
from ..predict import probabilities


def require_tensorboard() -> None:
    """TensorFlow writes summaries only when the tensorboard package is installed; say so up front."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard needs the tensorboard package: pip install 'happysad[tensorboard]' "
                         "(or pip install tensorboard)")


def tensorboard_callbacks(log_dir: str | Path, val_ds, classes: Sequence[str]) -> list:
    """Keras's TensorBoard callback (scalars and learning rate per epoch) and the confusion image."""
    import keras
    import tensorflow as tf

    from .figures import confusion_image

    class ConfusionImage(keras.callbacks.Callback):
        """The validation split's confusion matrix (counts and row-normalised) as an image per epoch."""

        def __init__(self):
            super().__init__()
            self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "validation"))

        def on_epoch_end(self, epoch, logs=None):
            y_true, y_pred = [], []
            for x, y in val_ds:
                p = probabilities(self.model.predict_on_batch(x), len(classes))
                y = np.asarray(y)
                y_true.append(y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1).round())
                y_pred.append(p.argmax(axis=1))
            k = len(classes)
            cm = np.zeros((k, k), dtype=int)
            if y_true:
                np.add.at(cm, (np.concatenate(y_true).astype(int), np.concatenate(y_pred)), 1)
            image = confusion_image(cm.tolist(), classes, title=f"epoch {epoch + 1}")
            with self.writer.as_default():
                tf.summary.image("confusion_matrix", image[None], step=epoch)
            self.writer.flush()

        def on_train_end(self, logs=None):
            self.writer.close()

    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False), ConfusionImage()]
