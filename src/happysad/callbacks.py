"""Keras callbacks of a training run, each taking its state in ``__init__`` so that a resumed run goes on
from where the killed one stood (Keras's ``EarlyStopping(baseline=, start_from_epoch=)`` is the model).

This module imports Keras when it is imported: ``train`` imports it inside the function that trains.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
from tqdm import tqdm

from .bundle import save_keras


@dataclass(frozen=True)
class Progress:
    """Where a run stood before a resume: its best val_loss, that epoch, and the last epoch finished
    (epochs count from 0; -1 when there are none)."""

    best: float = math.inf
    best_epoch: int = -1
    last_epoch: int = -1

    @classmethod
    def from_rows(cls, rows: Sequence[dict]) -> "Progress":
        """From results.csv rows (``epoch``, ``val_loss``, ...)."""
        scored = [(r["val_loss"], int(r["epoch"])) for r in rows if "val_loss" in r]
        if not scored:
            return cls()
        best, best_epoch = min(scored)
        return cls(best, best_epoch, int(rows[-1]["epoch"]))

    @property
    def started(self) -> bool:
        return self.best_epoch >= 0

    @property
    def waited(self) -> int:
        """Epochs finished since the best one."""
        return self.last_epoch - self.best_epoch


class AtomicBest(keras.callbacks.Callback):
    """Save the model to ``path`` atomically whenever val_loss beats the best so far."""

    def __init__(self, path: str | Path, progress: Progress = Progress()):
        super().__init__()
        self.path = Path(path)
        self.best, self.best_epoch = progress.best, progress.best_epoch

    def on_epoch_end(self, epoch, logs=None):
        v = (logs or {}).get("val_loss")
        if v is not None and v < self.best:
            self.best, self.best_epoch = v, epoch
            save_keras(self.model, self.path)


class EpochLine(keras.callbacks.Callback):
    """One readable line per epoch on stderr (``verbose``), marked when ``best`` saved that epoch, and a
    batch progress bar (``bar``, for a terminal)."""

    def __init__(self, epochs: int, batches: int, best: AtomicBest, verbose: bool = True, bar: bool = False):
        super().__init__()
        self.epochs, self.batches, self.best = epochs, batches, best
        self.verbose, self.show_bar = verbose, bar
        self.bar = None
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()
        if self.show_bar:
            self.bar = tqdm(total=self.batches, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False,
                            file=sys.stderr, unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.verbose:
            return
        logs = logs or {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        parts = [f"{k} {logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs]
        mark = "  *best" if self.best.best_epoch == epoch else ""
        print(f"epoch {epoch + 1:>3}/{self.epochs}  " + "  ".join(parts) +
              f"  lr {lr:.2g}  {time.perf_counter() - self.t0:.1f}s{mark}", file=sys.stderr, flush=True)


class LearningRate(keras.callbacks.Callback):
    """Put the learning rate each epoch ran with into its logs (results.csv, the report)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.lr


class AugmentWarmup(keras.callbacks.Callback):
    """Switch train-time augmentation (the boolean ``variable`` the input pipeline reads) on once
    ``warmup`` epochs are done; also right after a resume."""

    def __init__(self, variable, warmup: int):
        super().__init__()
        self.variable, self.warmup = variable, warmup

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch >= self.warmup)


class Plateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that, after a resume, starts from the killed run's best val_loss and the epochs
    it had waited since its last learning-rate cut."""

    def __init__(self, progress: Progress = Progress(), **kwargs):
        super().__init__(**kwargs)
        self.progress = progress

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets best and wait
        if self.progress.started:
            # the rate was cut, and the count restarted, after every `patience` epochs without a better loss
            self.best, self.wait = self.progress.best, self.progress.waited % self.patience


class Stop(keras.callbacks.EarlyStopping):
    """EarlyStopping that, after a resume, starts from the killed run's best val_loss and the epochs
    it had waited since."""

    def __init__(self, progress: Progress = Progress(), **kwargs):
        super().__init__(**kwargs)
        self.progress = progress

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets best, best_epoch and wait
        if self.progress.started:
            self.best, self.best_epoch = self.progress.best, self.progress.best_epoch
            self.wait = self.progress.waited
