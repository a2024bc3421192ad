"""Export a trained model to ONNX or LiteRT (TFLite) for deployment without Keras.

The exported file gets a copy of the model's meta.json beside it (``MODEL.json``, or ``meta.json`` when
exporting into a folder), so ``happysad predict --model exported.onnx`` preprocesses exactly as training
did. Converters: Keras' own ``model.export(format="onnx"|"litert")`` (Keras >= 3.10, uses tf2onnx /
the TFLite converter underneath); if that fails, tf2onnx or ``tf.lite.TFLiteConverter`` directly.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from . import bundle as bundles
from . import files, photo, places
from .errors import HappysadError, UsageError
from .runtime import quiet_stderr

FORMATS = {"onnx": ".onnx", "tflite": ".tflite"}
ONNX_OPSET = 17


def default_out(b: bundles.Bundle, fmt: str) -> Path:
    """``RUN/model.onnx`` beside the run's meta.json (a .keras file outside a run: ``NAME.onnx``)."""
    model_path = Path(b.path)
    run = model_path.parent.parent if model_path.parent.name == "weights" else model_path.parent
    if (run / bundles.META_NAME).is_file():
        return run / f"model{FORMATS[fmt]}"
    return model_path.with_suffix(FORMATS[fmt])


def _out_path(out: str | os.PathLike | None, b: bundles.Bundle, fmt: str) -> tuple[Path, Path]:
    """(model file, meta file) to write."""
    if out is None:
        p = default_out(b, fmt)
    else:
        p = Path(out)
        if p.suffix.lower() not in FORMATS.values():  # a folder: FOLDER/model.EXT + FOLDER/meta.json
            return p / f"model{FORMATS[fmt]}", p / bundles.META_NAME
        if p.suffix.lower() != FORMATS[fmt]:
            raise UsageError(f"--out {p}: suffix does not match --format {fmt} (expected {FORMATS[fmt]})")
    return p, p.with_suffix(".json")


def _build(model, b: bundles.Bundle) -> None:
    # Keras' exporter refuses a model that has never been called.
    h, w = b.image_size
    c = 1 if b.color_mode == "grayscale" else 3
    model.predict_on_batch(np.zeros((1, h, w, c), np.float32))


def _export_onnx(model, tmp: Path) -> None:
    # tf2onnx logs a traceback when one of its graph optimizers gives up on a pattern (MobileNetV3's
    # hard-swish); the graph is still right (tests/test_backbones.py checks parity), so keep that quiet.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        model.export(str(tmp), format="onnx", verbose=False)
        return
    except Exception as first:  # noqa: BLE001 - fall back to tf2onnx, report both if that fails too
        err = first
    try:
        import tensorflow as tf
        import tf2onnx

        spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="pixels")]
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET, output_path=str(tmp))
    except Exception as e:
        raise HappysadError(f"ONNX export failed: keras: {err}; tf2onnx: {type(e).__name__}: {e}") from None


def _export_tflite(model, tmp: Path) -> None:
    try:
        model.export(str(tmp), format="litert", verbose=False)
        return
    except Exception as first:  # noqa: BLE001
        err = first
    try:
        import tensorflow as tf

        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        tmp.write_bytes(data)
    except Exception as e:
        raise HappysadError(f"LiteRT export failed: keras: {err}; TFLiteConverter: {type(e).__name__}: {e}") from None


def export(model: bundles.Bundle | str | os.PathLike, fmt: str = "onnx",
           out: str | os.PathLike | None = None) -> Path:
    """Convert a Keras model (run folder, .keras file or built-in name) to ``fmt`` ("onnx" or "tflite").
    Returns the written model path; its meta.json copy (with an ``export`` entry) is beside it."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    b = model if isinstance(model, bundles.Bundle) else bundles.load(model)
    if photo.is_photo_meta(b.meta):
        return _export_photo(b, fmt, out)
    if Path(b.path).suffix.lower() != ".keras":
        raise UsageError(f"{b.path}: export needs a Keras model, not an already exported file")
    dest, meta_dest = _out_path(out, b, fmt)
    places.output_file(dest, "--out")
    _build(b.model, b)
    with files.atomic_path(dest, suffix=FORMATS[fmt]) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # converter deprecation chatter
        (_export_onnx if fmt == "onnx" else _export_tflite)(b.model, Path(tmp))
    meta = dict(b.meta)
    meta["export"] = {"format": fmt, "from": str(b.path)}
    # The run's own meta.json already describes the model when exporting beside it.
    if meta_dest.resolve() != (dest.parent / bundles.META_NAME).resolve() or not meta_dest.is_file():
        files.write_json(meta_dest, meta)
    return dest


def attach_fast_runtime(model_dir: str | os.PathLike, fmt: str = "onnx",
                        members: Sequence[str] | None = None) -> list[Path]:
    """Put an exported copy (``model.onnx`` / ``model.tflite``) beside the ``model.keras`` of a model
    folder, or of each member of a photo model (or of ``members`` only), and name it in that
    ``meta.json``'s ``fast_runtime``: ``predict``, ``evaluate`` and ``serve`` then run it where its
    runtime is installed (Keras elsewhere; explain, export and fine-tuning keep the Keras model).
    -> the files written."""
    root = Path(model_dir)
    meta = bundles.read_meta(root / bundles.META_NAME)
    folders = ([photo.member_dir(root, meta, m) for m in photo.member_names(meta) if members is None or m in members]
               if photo.is_photo_meta(meta) else [root])
    written = []
    for folder in folders:
        dest = folder / f"model{FORMATS[fmt]}"
        export(bundles.load(folder), fmt, dest)
        dest.with_suffix(".json").unlink(missing_ok=True)  # meta.json describes both files
        mmeta = bundles.read_meta(folder / bundles.META_NAME)
        mmeta["fast_runtime"] = {"file": dest.name, "format": f"{fmt} float32"}
        files.write_json(folder / bundles.META_NAME, mmeta)
        written.append(dest)
    return written


def _export_photo(b: bundles.Bundle, fmt: str, out: str | os.PathLike | None) -> Path:
    """A photo model exports member by member into a folder (OUT/face/model.EXT, OUT/scene/model.EXT,
    fusion.json, meta.json) that loads as a photo model running on onnxruntime or LiteRT."""
    dest = Path(out) if out is not None else Path(f"{Path(b.path).name}-{fmt}")
    if dest.suffix.lower() in FORMATS.values():
        raise UsageError(f"--out {dest}: a photo model exports to a folder (one file per member), not one file")
    places.output_folder(dest, "--out", make=False)
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"--out {dest}: folder exists and is not empty")
    for member in photo.member_names(b.meta):
        export(b.members[member], fmt, dest / b.meta["members"][member])
    files.atomic_write_bytes(dest / photo.FUSION_NAME, (Path(b.path) / b.meta.get("fusion", photo.FUSION_NAME)).read_bytes())
    meta = dict(b.meta)
    meta["export"] = {"format": fmt, "from": str(b.path)}
    files.write_json(dest / bundles.META_NAME, meta)  # last: only a complete folder is a model
    return dest


def tflite_int8(model, samples: np.ndarray) -> bytes:
    """A LiteRT flatbuffer of ``model`` with int8 weights and activations (float input and output, so it
    takes the same pixels as the Keras model). ``samples`` (a few hundred typical inputs) set the
    activation ranges."""
    import tensorflow as tf

    def representative():
        for s in samples:
            yield [np.asarray(s, np.float32)[None]]

    try:
        # the converter prints its saved-model signature to stdout and its progress to stderr
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), quiet_stderr():
            warnings.simplefilter("ignore")
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            return conv.convert()
    except Exception as e:
        raise HappysadError(f"int8 LiteRT conversion failed ({type(e).__name__}: {e})") from None
