"""Classify images with a saved model: ``Predictor(model).predict(paths_or_arrays)``.

Preprocessing comes from the model's meta.json only (``images.load_for_model``), exactly as in training.
Images are decoded in a thread pool and run through ``predict_on_batch`` in batches (about 10x faster
than calling the model eagerly on single images).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from . import faces as face_tools
from . import augment, files, images, photo, video
from .bundle import Bundle, load, resolve, read_meta
from .errors import HappysadError
from .faces import face_settings

BATCH_SIZE = 64
MAX_FACES = 64  # per image, largest first: beyond this a crowd adds cost, not information
TTA_MODES = ("none", "flip", "tencrop")


@dataclass
class Prepared:
    """One image made ready for the model: ``x`` (k, H, W, C) holds one crop per face found, or the
    whole image; ``faces`` is None when face detection is off, [] when it found nothing."""

    x: np.ndarray
    size: tuple[int, int] | None = None  # (width, height) as shown, when the image was fully decoded
    faces: list | None = None
    branches: dict = field(default_factory=dict)  # photo models: each branch's probabilities


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


def tta_mode(tta: bool | str | None, meta: dict) -> str:
    """The test-time averaging to run: ``tta`` as asked (True: "flip", False: "none"), or with None
    the one the model's meta.json asks for (``tta.mode``; none when absent)."""
    if tta is None:
        tta = (meta.get("tta") or {}).get("mode", "none")
    mode = {True: "flip", False: "none"}.get(tta, tta)
    if mode not in TTA_MODES:
        raise HappysadError(f"test-time averaging {tta!r}: choose one of {', '.join(TTA_MODES)}")
    return mode


def _is_photo(model) -> bool:
    if isinstance(model, Bundle):
        return photo.is_photo_meta(model.meta)
    return photo.is_photo_meta(read_meta(resolve(model)[1]))


class Predictor:
    """Wraps a loaded model with its preprocessing. ``tta``: "flip" (or True) averages with a horizontal
    flip, "tencrop" over ten shifted and mirrored views (augment.ten_crops), "none" (or False) neither;
    None does what the model's meta.json says. A photo model (meta.json kind "photo") gives a
    :class:`PhotoPredictor`."""

    def __new__(cls, model=None, *args, **kw):
        if cls is Predictor and model is not None and _is_photo(model):
            return super().__new__(PhotoPredictor)
        return super().__new__(cls)

    def __init__(self, model: Bundle | str | os.PathLike, batch_size: int = BATCH_SIZE,
                 tta: bool | str | None = None, workers: int | None = None, faces: bool | None = None):
        self.bundle = model if isinstance(model, Bundle) else load(model, fast=True)
        self.batch_size = int(batch_size)
        self.tta = tta_mode(tta, self.bundle.meta)
        # ten-crop shift: as meta.json says, else the shift the standard augmentation trains with
        tta_meta = self.bundle.meta.get("tta") or {}
        self.tta_pad = int(tta_meta.get("pad") or augment.default_pad(min(self.bundle.image_size)))
        self.workers = workers or files.thread_count()
        # Face detection: on by default for models trained on face crops (meta.json "faces").
        cfg = face_settings(self.bundle.meta)
        self.face_cfg = cfg or {}
        self.faces = cfg is not None if faces is None else bool(faces)
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            self._detector = face_tools.detector(self.face_cfg.get("detector", face_tools.DETECTOR))
        return self._detector

    def example_rows(self, n: int) -> np.ndarray:
        """``n`` rows of what :meth:`predict_arrays` takes (zeros), to warm a server up."""
        h, w = self.bundle.image_size
        return np.zeros((n, h, w, 1 if self.bundle.color_mode == "grayscale" else 3), np.float32)

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
        img, _ = images.decode(src, "RGB")
        h, w = self.bundle.image_size
        found = self.detector.detect(img)[:MAX_FACES]
        if found:
            x = face_tools.face_inputs(img, found, (w, h), self.bundle.pil_mode, self.face_cfg)
        else:  # no face: the whole image, as without detection
            whole = img.convert(self.bundle.pil_mode).resize((w, h), Image.BILINEAR)
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
            if self.tta == "tencrop":
                p = np.mean([self._run(v, pad) for v in augment.ten_crops(xb, self.tta_pad)], axis=0)
            else:
                p = self._run(xb, pad)
            if self.tta == "flip":
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

    def predict_video(self, source, fps: float | None = None, **kw) -> Iterator[dict]:
        """A video file (path or bytes): one result per sampled frame (``kind`` "frame": faces with
        track IDs and smoothed labels), then one per track ("track"), then the clip's ("clip"). See
        :mod:`happysad.video` (keywords: ``annotate_to``, ``max_seconds``, ``progress``)."""
        return video.analyze(self, source, video.FPS if fps is None else fps, **kw)


def predict(inputs: Sequence, model: Bundle | str | os.PathLike, **kw) -> list[dict]:
    """Convenience: expand folders, then predict every file."""
    srcs = expand_paths(inputs) if all(isinstance(s, (str, os.PathLike)) for s in inputs) else list(inputs)
    return Predictor(model, **kw).predict(srcs)


class PhotoPredictor(Predictor):
    """A photo model (see :mod:`happysad.photo`): the face branch on every face found, the scene branch
    on the whole photo, and the fusion of both. Each result also says which branch decided
    (``decided_by``) and what each branch said (``branches``). ``faces=False`` leaves the face branch
    out, as if no face had been found."""

    def __init__(self, model: Bundle | str | os.PathLike, batch_size: int = BATCH_SIZE,
                 tta: bool | str | None = None, workers: int | None = None, faces: bool | None = None):
        self.bundle = model if isinstance(model, Bundle) else load(model, fast=True)
        if not photo.is_photo_meta(self.bundle.meta):
            raise HappysadError(f"{self.bundle.path}: not a photo model")
        self.batch_size, self.tta = int(batch_size), tta  # each branch averages as it was trained (below)
        self.workers = workers or files.thread_count()
        face_b, scene_b = self.bundle.members["face"], self.bundle.members["scene"]
        # both branches average each input with its mirror image, as the photo model was trained
        self.face = Predictor(face_b, batch_size=batch_size, tta=True, faces=False)
        self.scene = Predictor(scene_b, batch_size=batch_size, tta=True, faces=False)
        emo_b = self.bundle.members.get("emotions")
        self.emotions = None if emo_b is None else Predictor(emo_b, batch_size=batch_size, tta=True, faces=False)
        self.fusion = self.bundle.extra["fusion"]
        self.face_cfg = face_settings(face_b.meta) or {}
        self.emotion_cfg = (face_settings(emo_b.meta) or self.face_cfg) if emo_b is not None else {}
        self.faces = True if faces is None else bool(faces)
        self._detector = None
        self._lock = threading.Lock()  # one branch call at a time: the cores are shared anyway

    def example_rows(self, n: int) -> np.ndarray:
        # warm both branches, then hand back fusion rows
        self.scene.predict_arrays(self.scene.example_rows(1))
        self.face.predict_arrays(self.face.example_rows(1))
        if self.emotions is not None:
            self.emotions.predict_arrays(self.emotions.example_rows(1))
        return np.zeros((n, len(self.fusion.names)))

    @staticmethod
    def _crops(member: Predictor, img: Image.Image, found: list, cfg: dict, cut: dict) -> np.ndarray:
        """The faces as ``member`` sees them; crops already cut for the same size, mode and settings
        (``cut``) are reused."""
        h, w = member.bundle.image_size
        return face_tools.face_inputs_once(img, found, (w, h), member.bundle.pil_mode, cfg, cut)

    def branch_outputs(self, img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list, np.ndarray | None, bool]:
        """-> (scene probabilities, the faces' image-level probabilities or None, per-face probabilities,
        faces found, the emotions member's image-level probabilities or None, whether the photo is a face
        crop) for one decoded photo. A face crop (one face filling the frame, or an image too small for
        the detector to find its face) is judged whole by the face member."""
        found = photo.find_faces(self.detector, img, MAX_FACES) if self.faces else []
        face_crop = self.faces and face_tools.is_face_crop(img, found, self.face_cfg.get("margin", face_tools.MARGIN))
        pixels = photo.scene_pixels(img, self.scene.bundle.image_size)[None].astype(np.float32)
        per_face, per_face_emotions, cut = np.zeros((0, len(self.classes))), None, {}
        face = None
        with self._lock:
            scene = self.scene.predict_arrays(pixels)[0]
            if found:
                per_face = self.face.predict_arrays(self._crops(self.face, img, found, self.face_cfg, cut))
                if self.emotions is not None:
                    per_face_emotions = self.emotions.predict_arrays(
                        self._crops(self.emotions, img, found, self.emotion_cfg, cut))
            elif face_crop:  # no face found in an image too small for the detector: judged whole
                face = self.face.predict_arrays(self._crops(self.face, img, found, self.face_cfg, cut))[0]
        weights = [f.area * f.score for f in found]
        if found:
            face = image_probabilities(per_face, weights)
        emotions = image_probabilities(per_face_emotions, weights) if per_face_emotions is not None else None
        return scene, face, per_face, found, emotions, face_crop

    def prepare(self, src) -> Prepared:
        img = photo.whole_image(src)
        scene, face, per_face, found, emotions, face_crop = self.branch_outputs(img)
        n_emotions = len(self.emotions.classes) if self.emotions is not None else 0
        x = photo.fusion_features(scene, face, len(found), max(found[0].box[2:]) if found else 0,
                                  min(img.size), max((f.score for f in found), default=0.0), emotions, n_emotions)
        prep = Prepared(x[None], img.size, found, {"scene": scene, "face": face, "emotions": emotions})
        prep.branches["per_face"] = per_face
        prep.branches["face_crop"] = face_crop
        return prep

    def predict_arrays(self, x: np.ndarray, pad: bool = True) -> np.ndarray:
        """Fusion rows (N, F) -> (N, n_classes) probabilities."""
        x = np.asarray(x, np.float64).reshape(-1, len(self.fusion.names))
        return self.fusion.probs(x)

    def finish(self, name: str, prep: Prepared, probs: np.ndarray) -> dict:
        face_crop = prep.branches.get("face_crop", False)
        # A photo that is a face crop has no scene to speak of: its face decides alone.
        r = self._result(name, prep.branches["face"] if face_crop else probs[0])
        per_face = []
        for f, p in zip(prep.faces or [], prep.branches.get("per_face", [])):
            fr = self._result(name, p)
            per_face.append({"box": list(f.box), "score": round(float(f.score), 4), "label": fr["label"],
                             "probabilities": fr["probabilities"]})
        rounded = lambda p: None if p is None else {c: round(float(v), 6) for c, v in zip(self.classes, p)}  # noqa: E731
        label = self.classes.index(r["label"])
        r.update(face_found=bool(prep.faces), faces=per_face,
                 decided_by="face" if face_crop else photo.decided_by(self.fusion, prep.x[0], label),
                 branches={"scene": rounded(prep.branches["scene"]), "face": rounded(prep.branches["face"])})
        if self.emotions is not None:
            emo = prep.branches.get("emotions")
            r["branches"]["emotions"] = None if emo is None else {
                c: round(float(v), 6) for c, v in zip(self.emotions.classes, emo)}
        return r
