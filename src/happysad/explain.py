"""Grad-CAM: which pixels made the model say what it said.

``explain(images, model)`` returns one ``Explanation`` per image (label, probabilities, a heatmap in
0..1 at the model's input size, and an RGB overlay) and optionally saves the overlays as PNGs.
``box=(left, top, right, bottom)`` explains a crop of the image (for face models: the face box), so
a face detector can pass its crops in without a second code path.

Grad-CAM (Selvaraju et al. 2017): gradients of the class score with respect to the last spatial feature
map, averaged per channel, weight that map; ReLU keeps what speaks *for* the class.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from . import faces as face_tools, images, photo, places
from .bundle import Bundle, load
from .files import atomic_write_bytes, free_name
from .errors import HappysadError, UsageError
from .faces import face_settings
from .predict import Predictor, probabilities

ALPHA = 0.45  # heatmap opacity in the overlay
COLORMAP = "jet"
OVERLAY_SIDE = 256  # overlays are drawn at least this big so that small model inputs stay readable


@dataclass
class Explanation:
    path: str
    label: str
    probabilities: dict
    heatmap: np.ndarray | None = field(default=None, repr=False)  # (H, W) float32 0..1, model input size
    overlay: Image.Image | None = field(default=None, repr=False)
    explained: str = ""  # the class the heatmap is for (the predicted one unless asked)
    saved: str | None = None
    box: tuple | None = None
    error: str | None = None  # set instead of the rest when errors="keep" and the image is unusable
    branch: str | None = None  # photo models: the member explained ("face" or "scene"), the one that decided


def last_conv_layer(model) -> str:
    """Name of the last layer with a spatial (4-D) output: the usual Grad-CAM target."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4:
            return layer.name
    raise HappysadError(f"{model.name}: no convolutional layer to explain")


def gradcam(model, x: np.ndarray, class_index: int | None = None, layer: str | None = None):
    """Heatmaps for a batch ``x`` (N, H, W, C) of 0..255 pixels.

    Returns (heatmaps (N, H, W) in 0..1, probabilities (N, n_classes)). ``class_index`` None explains
    the predicted class of each image. A one-unit sigmoid head scores class 1 as p and class 0 as 1 - p.
    """
    import keras
    import tensorflow as tf

    if not isinstance(model, keras.Model):
        raise UsageError("Grad-CAM needs the Keras model (.keras or run folder), not an exported file")
    layer = layer or last_conv_layer(model)
    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    x = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        fmap, out = grad_model(x, training=False)
        out = tf.cast(out, tf.float32)
        if out.shape[-1] == 1:
            out = tf.concat([1.0 - out, out], axis=-1)
        idx = tf.argmax(out, axis=-1) if class_index is None else tf.fill([tf.shape(out)[0]], class_index)
        score = tf.gather(out, tf.cast(idx, tf.int32), axis=1, batch_dims=1)
    grads = tape.gradient(score, fmap)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(fmap, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., None], x.shape[1:3], method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    cam = np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
    return cam, out.numpy()


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = ALPHA) -> Image.Image:
    """Blend a 0..1 heatmap (any size) over ``image`` (RGB) with a colormap."""
    from matplotlib import colormaps

    image = image.convert("RGB")
    if min(image.size) < OVERLAY_SIDE:
        k = OVERLAY_SIDE / min(image.size)
        image = image.resize((round(image.width * k), round(image.height * k)), Image.BILINEAR)
    heat = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize(image.size, Image.BILINEAR)
    colored = colormaps[COLORMAP](np.asarray(heat) / 255.0)[..., :3]
    blend = (1 - alpha) * np.asarray(image, np.float32) / 255 + alpha * colored
    return Image.fromarray(np.uint8(np.clip(blend, 0, 1) * 255))


def _source_image(src, box) -> Image.Image:
    img, _ = images.decode(src, "RGB")
    if box is not None:
        left, top, right, bottom = (int(v) for v in box)
        if not (0 <= left < right <= img.width and 0 <= top < bottom <= img.height):
            raise UsageError(f"box {box} is outside the {img.width}x{img.height} image")
        img = img.crop((left, top, right, bottom))
    return img


def _largest_face(img: Image.Image, b: Bundle, cfg: dict):
    """(aligned crop of the largest face at 4x the model's input, its box as left, top, right, bottom),
    or None: what ``predict`` classifies for a face model (``cfg``: its meta.json ``faces``), framed
    the same way."""
    found = face_tools.detector(cfg.get("detector", face_tools.DETECTOR)).detect(img)
    if not found or face_tools.is_face_crop(img, found, cfg.get("margin", face_tools.MARGIN)):
        return None  # no face, or the image already is a face crop: explain it whole
    f = found[0]
    h, w = b.image_size
    crop = face_tools.crop(img, f, (4 * w, 4 * h), "RGB", **face_tools.crop_options(cfg))
    x, y, bw, bh = f.box
    return crop, (x, y, x + bw, y + bh)


def explain(sources: Sequence, model: Bundle | str | os.PathLike, out: str | os.PathLike | None = None,
            class_name: str | None = None, boxes: Sequence | None = None,
            layer: str | None = None, errors: str = "raise", faces: bool | None = None) -> list[Explanation]:
    """Grad-CAM for each source (path, bytes, PIL image or array). ``boxes`` (one per source, or None)
    crops first; otherwise, for face models (or ``faces=True``), the largest face found is explained,
    aligned and cropped as ``predict`` sees it. ``out`` saves ``NAME.gradcam.png`` overlays there. An
    unreadable image raises ``ImageError``, or with ``errors="keep"`` gives an Explanation with only
    ``path`` and ``error``."""
    b = model if isinstance(model, Bundle) else load(model)
    if photo.is_photo_meta(b.meta):
        return _explain_photo(sources, b, out, class_name, boxes, layer, errors, faces)
    face_cfg = face_settings(b.meta)
    use_faces = (face_cfg is not None) if faces is None else faces
    class_index = None
    if class_name is not None:
        if class_name not in b.classes:
            raise UsageError(f"--class {class_name!r} is not one of the model's classes: {', '.join(b.classes)}")
        class_index = b.classes.index(class_name)
    boxes = list(boxes) if boxes is not None else [None] * len(sources)
    if len(boxes) != len(sources):
        raise UsageError("give one box (or None) per image")
    outdir = places.output_folder(out, "--out") if out is not None else None
    results, used = [], set()
    for i, (src, box) in enumerate(zip(sources, boxes)):
        name = os.fsdecode(src) if isinstance(src, (str, os.PathLike)) else f"<array {i}>"
        try:
            img = _source_image(src, box)
            if box is None and use_faces and (face := _largest_face(img, b, face_cfg or {})) is not None:
                img, box = face
        except images.ImageError as e:
            if errors != "keep":
                raise
            results.append(Explanation(path=name, label="", probabilities={}, error=e.detail))
            continue
        x = images.load_for_model(img, b.image_size, b.color_mode)[None]
        cam, out_p = gradcam(b.model, x, class_index, layer)
        probs = probabilities(out_p, len(b.classes))[0]
        k = int(np.argmax(probs)) if class_index is None else class_index
        ex = Explanation(path=name, label=b.classes[int(np.argmax(probs))],
                         probabilities={c: round(float(v), 6) for c, v in zip(b.classes, probs)},
                         heatmap=cam[0], overlay=overlay(img, cam[0]), explained=b.classes[k],
                         box=tuple(box) if box else None)
        if outdir is not None:
            stem = Path(name).stem if isinstance(src, (str, os.PathLike)) else f"image{i}"
            # same stem from two folders: NAME-2.gradcam.png; a long stem is shortened to fit
            fname = free_name(stem, ".gradcam.png", taken=used.__contains__, fit=places.fit_name)
            used.add(fname)
            buf = io.BytesIO()
            ex.overlay.save(buf, format="PNG")
            ex.saved = str(atomic_write_bytes(outdir / fname, buf.getvalue()))
        results.append(ex)
    return results


def _explain_photo(sources, b: Bundle, out, class_name, boxes, layer, errors, faces) -> list[Explanation]:
    """A photo model is explained through the branch that decided each photo: the face member on the
    largest face, or the scene member on the whole photo. ``Explanation.branch`` says which."""
    predictor = Predictor(b, faces=faces)
    results = []
    for i, src in enumerate(sources):
        res = predictor.predict([src])[0]
        if "error" in res:
            if errors != "keep":
                raise images.ImageError(res["path"], "corrupt", res["error"])
            results.append(Explanation(path=res["path"], label="", probabilities={}, error=res["error"]))
            continue
        branch = res["decided_by"]
        box = boxes[i] if boxes is not None else None
        ex = explain([src], b.members[branch], out, class_name, [box], layer, errors,
                     faces=(branch == "face"))[0]
        ex.branch = branch
        ex.label, ex.probabilities = res["label"], res["probabilities"]  # the photo model's own answer
        results.append(ex)
    return results
