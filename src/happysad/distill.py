"""Knowledge distillation: train a small, fast student to copy a bigger teacher model.

The teacher labels every training image once (the average of its probabilities on the image and its
mirror image, so that flipping during training keeps the target right), or, with ``consistent``, each
augmented view as the student sees it (a teacher pass per batch; Beyer et al. 2022). The student, the ``tiny``
architecture of ``model.py``, is trained on

    loss = soft_weight * T^2 * KL(teacher at T || student at T) + (1 - soft_weight) * cross-entropy(label)

(Hinton, Vinyals & Dean 2015) with the usual augmentation, AdamW and a cosine learning rate with
warm-up, and saved as an ordinary model folder (``model.keras`` + ``meta.json``). Beside it goes an
int8 LiteRT file (``model.tflite``) that ``bundle.load(..., fast=True)`` (predict, evaluate, serve)
runs instead of Keras when LiteRT is installed.

Images in ``extra`` folders have no label: they add teacher targets only (e.g. face crops cut from
photos). A two-class sigmoid model is handled as the softmax over logits (0, z).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import bundle as bundles
from . import data as datamod
from . import export, images, model as models, photo
from .files import atomic_write_bytes, write_json
from .runtime import LiteRTModel
from .errors import HappysadError, UsageError

FAST_NAME = "model.tflite"
LOG_NAME = "log.jsonl"
CALIBRATION_IMAGES = 256  # representative faces for the int8 ranges
PROB_FLOOR = 1e-6         # teacher probabilities are clipped before taking logs (float32 saturates)


@dataclass
class DistillConfig:
    width: int = 24
    epochs: int = 30
    batch_size: int = 128
    temperature: float = 3.0
    soft_weight: float = 0.7
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    seed: int = 0
    fast_runtime: bool = True
    init_from: str | None = None  # a student to continue from (same width and classes)
    consistent: bool = False  # the teacher labels each augmented view the student sees, not the clean image


@dataclass
class DistillResult:
    model_dir: Path
    seconds: float
    n_train: int
    n_extra: int
    params: int
    history: list = field(default_factory=list)
    val: dict | None = None
    int8_agreement: float | None = None


def _log(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


def labelled_files(data: Path, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    """The images of ``data/CLASS/`` for each of the teacher's classes (other folders are ignored, so
    FER2013's seven emotion folders serve a happy/sad teacher)."""
    missing = [c for c in classes if not (data / c).is_dir()]
    if missing:
        raise UsageError(f"{data}: no class folder {', '.join(map(repr, missing))} (the teacher's classes "
                         f"are {', '.join(classes)}; DATA needs one folder per class)")
    files, labels = [], []
    for i, c in enumerate(classes):
        found = images.iter_files(data / c, images_only=True)
        files += found
        labels += [i] * len(found)
    return files, labels


def load_pixels(files: Sequence[Path], size: tuple[int, int], color_mode: str,
                log: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` as model inputs (uint8); a file that does not decode is named on one line and left
    out. Returns (pixels, indices of the files kept)."""
    c = 1 if color_mode == "grayscale" else 3
    out = np.empty((len(files), size[0], size[1], c), np.uint8)
    kept = []
    for i, f in enumerate(files):
        try:
            out[len(kept)] = images.load_for_model(f, size, color_mode)
            kept.append(i)
        except HappysadError as e:
            _log(log, f"skipped {e}")
    return out[:len(kept)], np.asarray(kept, dtype=np.int64)


def teacher_logits(model, x: np.ndarray, sigmoid: bool, batch_size: int = 256) -> np.ndarray:
    """The teacher's log-probabilities, averaged with its mirror image, as logits over all classes
    (n, K): for a sigmoid teacher (0, logit p), for a softmax teacher log p (softmax of either gives the
    teacher's probabilities back)."""
    probs = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].astype(np.float32)
        p = (np.asarray(model.predict_on_batch(xb)) + np.asarray(model.predict_on_batch(xb[:, :, ::-1]))) / 2
        probs.append(p.reshape(len(xb), -1))
    return np.asarray(as_logits(np.concatenate(probs), sigmoid), np.float32)


def as_logits(p, sigmoid: bool):
    """Teacher probabilities (n, 1) sigmoid or (n, K) softmax as logits over all classes (see
    :func:`teacher_logits`), with Keras ops: for NumPy arrays and for tensors inside a tf.data map."""
    from keras import ops

    p = ops.clip(ops.cast(p, "float32"), PROB_FLOOR, 1 - PROB_FLOOR)
    if sigmoid:
        return ops.concatenate([ops.zeros_like(p[:, :1]), ops.log(p[:, :1] / (1 - p[:, :1]))], axis=1)
    return ops.log(p)


def consistent_targets(augment, teacher, sigmoid: bool, n_classes: int):
    """A tf.data map for "consistent teaching" (Beyer et al. 2022, "Knowledge distillation: a good
    teacher is patient and consistent"): each batch is augmented once and the teacher labels that very
    view, so the student copies the teacher's function on what it sees rather than on the clean image.
    ``(pixels, packed targets) -> (view, targets with the teacher part replaced)``."""
    import tensorflow as tf

    def view_and_teach(x, y):
        view = augment(tf.cast(x, tf.float32), training=True)
        zt = as_logits(teacher(view, training=False), sigmoid)
        return view, tf.concat([y[:, :n_classes + 1], tf.cast(zt, y.dtype)], axis=1)

    return view_and_teach


def distillation_loss(n_classes: int, temperature: float, soft_weight: float):
    """A Keras loss over packed targets ``[one-hot label (K) | has label (1) | teacher logits (K)]`` and the
    student's logits (1 unit for a sigmoid model, K otherwise)."""
    from keras import ops

    k, t = n_classes, float(temperature)

    def loss(y, z):
        hard, has_label, zt = y[:, :k], y[:, k], y[:, k + 1:]
        if z.shape[-1] == 1:  # sigmoid student: softmax over (0, z) is (1 - sigmoid z, sigmoid z)
            z = ops.concatenate([ops.zeros_like(z), z], axis=-1)
        pt = ops.softmax(zt / t, axis=-1)
        kl = ops.sum(pt * (ops.log_softmax(zt / t, axis=-1) - ops.log_softmax(z / t, axis=-1)), axis=-1)
        ce = -ops.sum(hard * ops.log_softmax(z, axis=-1), axis=-1) * has_label
        return soft_weight * t * t * kl + (1 - soft_weight) * ce

    return loss


def _accuracy(model, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    pred = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch_size].astype(np.float32)))
                           for i in range(0, len(x), batch_size)])
    labels = (pred[:, 0] > 0.5).astype(int) if pred.shape[1] == 1 else pred.argmax(1)
    return float((labels == y).mean())


def distill(data: str | os.PathLike, out: str | os.PathLike, teacher: str | os.PathLike = "fer-happy-sad", *,
            config: DistillConfig | None = None, extra: Sequence[str | os.PathLike] = (),
            val_data: str | os.PathLike | None = None, log: Callable[[str], None] | None = None) -> DistillResult:
    """Train a ``tiny`` student on ``data`` (class folders named like the teacher's classes) and the
    unlabelled images of ``extra``, from ``teacher``'s soft labels; save it in ``out`` (a new folder).
    ``val_data`` (class folders) is only scored after each epoch, for the log: nothing is selected on it."""
    import keras
    import tensorflow as tf

    cfg = config or DistillConfig()
    if not 0 <= cfg.soft_weight <= 1 or cfg.temperature <= 0:
        raise UsageError("soft weight must be 0 to 1 and temperature above 0")
    models.check_arch("tiny", cfg.width)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty folder")
    for folder in extra:
        if not Path(folder).is_dir():
            raise UsageError(f"--extra {folder}: not a folder")
    t0 = time.perf_counter()
    tb = bundles.load(teacher)
    if photo.is_photo_meta(tb.meta):
        raise UsageError(f"{teacher}: a photo model cannot teach a face model directly; use its face member "
                         f"({Path(tb.path) / tb.meta['members']['face']})")
    classes, size, cm = tb.classes, tb.image_size, tb.color_mode
    k, sigmoid = len(classes), tb.meta.get("output", "sigmoid" if len(classes) == 2 else "softmax") == "sigmoid"

    files, labels = labelled_files(Path(data), classes)
    x, kept = load_pixels(files, size, cm, log)
    y = np.asarray(labels, np.int64)[kept]
    xe = np.zeros((0, *x.shape[1:]), np.uint8)
    for folder in extra:
        more, _ = load_pixels(images.iter_files(folder, images_only=True), size, cm, log)
        xe = np.concatenate([xe, more])
    if len(x) == 0:
        raise HappysadError(f"{data}: no decodable images in the class folders {', '.join(classes)}")
    _log(log, f"{len(x)} labelled images ({', '.join(f'{c} {int((y == i).sum())}' for i, c in enumerate(classes))})"
              f" + {len(xe)} unlabelled; teacher {teacher} labels them")
    xa = np.concatenate([x, xe])
    zt = teacher_logits(tb.model, xa, sigmoid)
    hard = np.zeros((len(xa), k + 1), np.float32)
    hard[np.arange(len(x)), y] = 1
    hard[:len(x), k] = 1
    target = np.concatenate([hard, zt], 1)
    teacher_acc = float((zt[:len(x)].argmax(1) == y).mean())
    _log(log, f"teacher agrees with the labels on {teacher_acc:.4f} of the training images "
              f"({time.perf_counter() - t0:.0f} s so far)")

    val = None
    if val_data is not None:
        vf, vl = labelled_files(Path(val_data), classes)
        xv, vk = load_pixels(vf, size, cm, log)
        val = (xv, np.asarray(vl, np.int64)[vk])

    keras.utils.set_random_seed(cfg.seed)
    student = models.build("tiny", x.shape[1:], k, width=cfg.width)
    if cfg.init_from:
        copied, left = models.copy_matching_weights(student, bundles.load(cfg.init_from).model)
        if left or not copied:
            raise UsageError(f"--init-from {cfg.init_from}: not a tiny model of width {cfg.width} for "
                             f"{', '.join(classes)} ({left} layer(s) do not match)")
    logits = keras.Model(student.inputs, student.get_layer("logits").output)
    steps = max(1, -(-len(xa) // cfg.batch_size))
    warm = min(cfg.warmup_epochs, cfg.epochs - 1)
    lr = keras.optimizers.schedules.CosineDecay(  # from lr / 10 up to lr in the warm-up, then down to 0
        cfg.learning_rate / 10 if warm else cfg.learning_rate, decay_steps=steps * (cfg.epochs - warm),
        warmup_target=cfg.learning_rate if warm else None, warmup_steps=steps * warm)
    logits.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay),
                   loss=distillation_loss(k, cfg.temperature, cfg.soft_weight))
    augment = datamod.augmenter(cfg.seed)
    augment(tf.zeros((1, *x.shape[1:])), training=True)
    view = (consistent_targets(augment, tb.model, sigmoid, k) if cfg.consistent
            else (lambda a, b: (augment(tf.cast(a, tf.float32), training=True), b)))
    ds = (tf.data.Dataset.from_tensor_slices((xa, target)).shuffle(len(xa), seed=cfg.seed)
          .batch(cfg.batch_size)
          .map(view, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))

    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.t, 1),
                   "loss": round(float(logs["loss"]), 4)}
            if val is not None:
                row["val_accuracy"] = round(_accuracy(student, *val), 4)
            history.append(row)
            with open(out / LOG_NAME, "a") as f:
                f.write(json.dumps(row) + "\n")
            _log(log, json.dumps(row))

    logits.fit(ds, epochs=cfg.epochs, verbose=0, shuffle=False, callbacks=[EpochLog()])  # ds shuffles
    seconds = time.perf_counter() - t0

    meta = bundles.make_meta(
        classes=classes, img_size=size, color_mode=cm, arch="tiny", arch_options={"width": cfg.width},
        train={"recipe": "happysad distill", **{k_: v for k_, v in asdict(cfg).items() if k_ != "fast_runtime"},
               "teacher": str(teacher), "teacher_params": int(tb.model.count_params()) if hasattr(tb.model, "count_params") else None,
               "n_labelled": int(len(x)), "n_unlabelled": int(len(xe)), "teacher_train_agreement": round(teacher_acc, 4),
               "seconds": round(seconds, 1), "optimizer": "AdamW, cosine with warm-up",
               "loss": "soft_weight * T^2 * KL(teacher || student at T) + (1 - soft_weight) * cross-entropy",
               "params": int(student.count_params())})
    if tb.meta.get("faces") is not None:
        meta["faces"] = tb.meta["faces"]
    bundles.save_keras(student, out / "model.keras")
    agreement = None
    if cfg.fast_runtime:
        rng = np.random.default_rng(cfg.seed)
        calib = x[rng.choice(len(x), min(CALIBRATION_IMAGES, len(x)), replace=False)]
        atomic_write_bytes(out / FAST_NAME, export.tflite_int8(student, calib))
        check = val[0] if val is not None else x[:1000]
        agreement = int8_agreement(student, out / FAST_NAME, check)
        meta["fast_runtime"] = {"file": FAST_NAME, "format": "tflite int8 (float input and output)",
                                "label_agreement_with_keras": round(agreement, 4), "checked_on": int(len(check))}
        _log(log, f"int8 LiteRT model agrees with the Keras model on {agreement:.4f} of {len(check)} images")
    write_json(out / bundles.META_NAME, meta)  # last: only a complete folder is a model
    res = DistillResult(out, seconds, len(x), len(xe), int(student.count_params()), history, None, agreement)
    if val is not None:
        res.val = {"accuracy": _accuracy(student, *val), "n": int(len(val[1]))}
    return res


def int8_agreement(student, tflite_path: Path, x: np.ndarray) -> float:
    """Share of images on which the int8 file gives the Keras model's label."""
    fast = LiteRTModel(tflite_path)
    a = np.concatenate([np.asarray(student.predict_on_batch(x[i:i + 256].astype(np.float32))) for i in range(0, len(x), 256)])
    b = np.concatenate([fast.predict_on_batch(x[i:i + 256].astype(np.float32)) for i in range(0, len(x), 256)])
    lab = (lambda p: (p[:, 0] > 0.5).astype(int) if p.shape[1] == 1 else p.argmax(1))  # noqa: E731
    return float((lab(a) == lab(b)).mean())
