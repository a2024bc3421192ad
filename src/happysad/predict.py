"""Classify images with a saved model: ``Predictor(model).predict(paths_or_arrays)``.

Preprocessing comes from the model's meta.json only (``images.load_for_model``), exactly as in training.
Images are decoded in a thread pool and run through ``predict_on_batch`` in batches (about 10x faster
than calling the model eagerly on single images).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from . import images
from .bundle import Bundle, load
from .errors import HappysadError

BATCH_SIZE = 64
MAX_FACES = 64  # per image, largest first: beyond this a crowd adds cost, not information


@dataclass
class Prepared:
    """One image made ready for the model: ``x`` (k, H, W, C) holds one crop per face found, or the
    whole image; ``faces`` is None when face detection is off, [] when it found nothing."""

    x: np.ndarray
    size: tuple[int, int] | None = None  # (width, height) as shown, when the image was fully decoded
    faces: list | None = None


def face_settings(meta: dict) -> dict | None:
    """meta.json's ``faces`` entry: true or a dict of crop settings for models trained on face crops."""
    cfg = meta.get("faces")
    if not cfg:
        return None
    return cfg if isinstance(cfg, dict) else {}


def image_probabilities(face_probs: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The image-level rule: the faces' probabilities averaged with weights (face area x detection
    score), so the people a photo is about (large, in front, clearly faces) outweigh small or doubtful
    faces in the background, and one face decides alone when it is the only one."""
    w = np.asarray(weights, dtype=np.float64)
    return (face_probs * (w / w.sum())[:, None]).sum(axis=0)


def expand_paths(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given, folders expanded recursively (sorted, hidden files skipped). Missing paths are
    kept so that they come back as an error result instead of stopping the run."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += [str(f) for f in images.iter_files(p)]
        else:
            out.append(str(item))
    return out


def probabilities(raw: np.ndarray, n_classes: int) -> np.ndarray:
    """Model output -> (N, n_classes) probabilities (a sigmoid output p becomes [1 - p, p])."""
    raw = np.asarray(raw, dtype=np.float64)
    if n_classes == 2 and raw.ndim == 2 and raw.shape[1] == 1:
        return np.concatenate([1.0 - raw, raw], axis=1)
    return raw.reshape(len(raw), n_classes)


class Predictor:
    """Wraps a loaded model with its preprocessing. ``tta=True`` averages with a horizontal flip."""

    def __init__(self, model: Bundle | str | os.PathLike, batch_size: int = BATCH_SIZE, tta: bool = False,
                 workers: int | None = None, faces: bool | None = None):
        self.bundle = model if isinstance(model, Bundle) else load(model)
        self.batch_size = int(batch_size)
        self.tta = tta
        self.workers = workers or min(8, (os.cpu_count() or 2) * 2)
        # Face detection: on by default for models trained on face crops (meta.json "faces").
        cfg = face_settings(self.bundle.meta)
        self.face_cfg = cfg or {}
        self.faces = cfg is not None if faces is None else bool(faces)
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            from . import faces

            self._detector = faces.detector(self.face_cfg.get("detector", faces.DETECTOR))
        return self._detector

    @property
    def classes(self) -> list[str]:
        return self.bundle.classes

    def load(self, src) -> np.ndarray:
        """One source (path, bytes, PIL image or array) -> model input pixels."""
        return images.load_for_model(src, self.bundle.image_size, self.bundle.color_mode)

    def prepare(self, src) -> Prepared:
        """Decode one source and cut the model inputs out of it: the faces found (``faces`` on), or the
        whole image. Raises ``images.ImageError`` for a source that is not a usable image."""
        if not self.faces:
            return Prepared(self.load(src)[None])
        from . import faces

        img, _ = images.decode(src, "RGB", allowed_formats=None)
        h, w = self.bundle.image_size
        mode = "L" if self.bundle.color_mode == "grayscale" else "RGB"
        found = self.detector.detect(img)[:MAX_FACES]
        if found:
            x = faces.crops(img, found, (w, h), mode, **faces.crop_options(self.face_cfg))
        else:  # no face: the whole image, as without detection
            whole = img.convert(mode).resize((w, h), Image.BILINEAR)
            x = np.asarray(whole, np.uint8).reshape(1, h, w, -1)
        return Prepared(x, img.size, found)

    def finish(self, name: str, prep: Prepared, probs: np.ndarray) -> dict:
        """The result for one prepared image from its rows of probabilities."""
        if prep.faces is None:
            return self._result(name, probs[0])
        if not prep.faces:
            r = self._result(name, probs[0])
            r.update(face_found=False, faces=[])
            return r
        per_face = []
        for f, p in zip(prep.faces, probs):
            fr = self._result(name, p)
            per_face.append({"box": list(f.box), "score": round(float(f.score), 4), "label": fr["label"],
                             "probabilities": fr["probabilities"]})
        r = self._result(name, image_probabilities(probs, [f.area * f.score for f in prep.faces]))
        r.update(face_found=True, faces=per_face)
        return r

    def predict_arrays(self, x: np.ndarray, pad: bool = True) -> np.ndarray:
        """(N, H, W, C) pixels 0..255 -> (N, n_classes) probabilities. ``pad=False`` runs batches at their
        exact size: for a long-lived caller (the server) that has already run a few sizes, after which
        Keras traces the batch dimension as unknown and any size runs without padding's wasted work."""
        x = np.asarray(x, dtype=np.float32)
        out = []
        for i in range(0, len(x), self.batch_size):
            xb = x[i:i + self.batch_size]
            p = self._run(xb, pad)
            if self.tta:
                p = (p + self._run(xb[:, :, ::-1], pad)) / 2
            out.append(p)
        if not out:
            return np.zeros((0, len(self.classes)))
        return np.concatenate(out)

    def _run(self, xb: np.ndarray, pad: bool = True) -> np.ndarray:
        # Pad to a power of two so that only a handful of batch shapes are ever traced.
        n = len(xb)
        size = 1 << max(n - 1, 0).bit_length()
        if pad and size != n:
            xb = np.concatenate([xb, np.zeros((size - n, *xb.shape[1:]), xb.dtype)])
        return probabilities(self.bundle.model.predict_on_batch(xb), len(self.classes))[:n]

    def _result(self, name: str, p: np.ndarray) -> dict:
        """One row of probabilities -> ``{"path", "label", "probabilities"}``."""
        k = int(np.argmax(p))
        return {"path": name, "label": self.classes[k],
                "probabilities": {c: round(float(v), 6) for c, v in zip(self.classes, p)}}

    def predict_iter(self, sources: Sequence) -> Iterator[dict]:
        """Yield one result per source, in order: ``{"path", "label", "probabilities"}`` (plus
        ``face_found`` and ``faces`` when face detection is on) or ``{"path", "error"}`` for a source
        that cannot be read as an image."""
        names = [os.fsdecode(s) if isinstance(s, (str, os.PathLike)) else f"<array {i}>"
                 for i, s in enumerate(sources)]

        def safe_prepare(src):
            t0 = time.perf_counter()
            try:
                return self.prepare(src), None, time.perf_counter() - t0
            except images.ImageError as e:
                return None, e.detail, 0.0
            except HappysadError as e:
                return None, str(e), 0.0

        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(sources), self.batch_size):
                chunk = list(pool.map(safe_prepare, sources[start:start + self.batch_size]))
                ok = [prep for prep, _, _ in chunk if prep is not None]
                t0 = time.perf_counter()
                probs = self.predict_arrays(np.concatenate([p.x for p in ok])) if ok else []
                ms = (time.perf_counter() - t0) * 1000 / max(sum(len(p.x) for p in ok), 1)
                j = 0
                for i, (prep, err, prep_s) in enumerate(chunk):
                    name = names[start + i]
                    if err is not None:
                        yield {"path": name, "error": err}
                        continue
                    r = self.finish(name, prep, probs[j:j + len(prep.x)])
                    # model time for its rows, plus face detection and cropping when that ran
                    r["ms"] = round(ms * len(prep.x) + (prep_s * 1000 if prep.faces is not None else 0), 2)
                    yield r
                    j += len(prep.x)

    def predict(self, sources: Sequence) -> list[dict]:
        return list(self.predict_iter(sources))


def predict(inputs: Sequence, model: Bundle | str | os.PathLike, **kw) -> list[dict]:
    """Convenience: expand folders, then predict every file."""
    srcs = expand_paths(inputs) if all(isinstance(s, (str, os.PathLike)) for s in inputs) else list(inputs)
    return Predictor(model, **kw).predict(srcs)
