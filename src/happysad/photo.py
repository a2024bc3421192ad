"""Photo models: judge a whole photo from its faces and its scene, fused by a learned combiner.

    photo model/
      meta.json     kind "photo": classes, members, face settings, how it was trained and measured
      face/         a face model (48x48 crops, meta.json "faces"), e.g. fer-happy-sad adapted to web faces
      scene/        a whole-image model (an ImageNet EfficientNet-Lite, its top blocks and head fine-tuned)
      emotions/     optional: a face model of more expressions (e.g. fer-emotion7), used as it is: how
                    sad, neutral, afraid... the faces look tells the combiner more than happy-or-sad alone
      fusion.json   the combiner: a multinomial logistic regression over per-photo facts

Per photo: decode once -> find faces -> face branch on each crop (the faces' vote, weighted by area x
detection score, as for face models) -> scene branch on the whole image -> fusion features (both
branches' log-probabilities, whether a face was found, how many, how large, how sure the detector is)
-> the emotions member on the same crops (when there is one) -> fusion -> label. Each branch stays an ordinary model that can be evaluated, exported and explained
alone. Everything is deterministic: the combiner is plain NumPy arithmetic on stored numbers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from . import images
from .errors import HappysadError

KIND = "photo"
MEMBERS = ("face", "scene")   # every photo model has these, with the photo model's classes
OPTIONAL_MEMBERS = ("emotions",)  # a face model with classes of its own, judging the same faces
FUSION_NAME = "fusion.json"
EPS = 1e-4  # probabilities are clipped to [EPS, 1 - EPS] before their logarithm
RETRY_SIDE = 512  # pixels: the longest side of the copy searched again when no face was found


# ----------------------------------------------------------------------------- the linear models

def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1.0, iters: int = 600,
                sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, L2-penalised (``l2`` / n per weight, none on the bias), by
    full-batch gradient descent with Nesterov momentum and a step from the loss's curvature bound.
    Deterministic: the same data give the same weights. ``x`` should be standardised. -> (W (F, K), b (K,))."""
    x = np.asarray(x, np.float64)
    n, f = x.shape
    yk = np.zeros((n, n_classes))
    yk[np.arange(n), np.asarray(y, int)] = 1.0
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    sw = sw / sw.mean()
    lam = l2 / n
    # The softmax loss's Hessian is bounded by 0.5 * X'X/n (per class block); plus the penalty.
    xb = np.hstack([x, np.ones((n, 1))])
    lip = 0.5 * np.linalg.norm(xb * np.sqrt(sw)[:, None], 2) ** 2 / n + lam
    step = 1.0 / lip
    w = np.zeros((f + 1, n_classes))
    v = w.copy()
    for t in range(1, iters + 1):
        p = softmax(xb @ v)
        grad = xb.T @ ((p - yk) * sw[:, None]) / n
        grad[:f] += lam * v[:f]
        w_next = v - step * grad
        v = w_next + (t - 1) / (t + 2) * (w_next - w)
        w = w_next
    return w[:f], w[f]


@dataclass
class Linear:
    """A standardised multinomial logistic regression: ``probs(x) = softmax(((x - mean) / scale) @ coef + bias)``."""

    names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, names: Sequence[str] | None = None,
            l2: float = 1.0, iters: int = 600, sample_weight: np.ndarray | None = None) -> "Linear":
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or not len(x):
            raise HappysadError("nothing to fit: no examples")
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        coef, bias = fit_softmax((x - mean) / scale, y, n_classes, l2, iters, sample_weight)
        names = list(names) if names is not None else [f"x{i}" for i in range(x.shape[1])]
        return cls(names, mean, scale, coef, bias)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.coef + self.bias

    def probs(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(N, F, K): each feature's share of each class's logit."""
        return ((np.asarray(x, np.float64) - self.mean) / self.scale)[:, :, None] * self.coef[None]

    def to_json(self) -> dict:
        return {"type": "multinomial_logistic_regression", "features": self.names,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "bias": self.bias.tolist()}

    @classmethod
    def from_json(cls, d: dict, where: str = "fusion") -> "Linear":
        try:
            names = [str(n) for n in d["features"]]
            arrs = [np.asarray(d[k], np.float64) for k in ("mean", "scale", "coef", "bias")]
        except (KeyError, TypeError, ValueError) as e:
            raise HappysadError(f"{where}: not a happysad fusion (missing or bad {e})") from None
        mean, scale, coef, bias = arrs
        f = len(names)
        if mean.shape != (f,) or scale.shape != (f,) or coef.ndim != 2 or coef.shape[0] != f \
                or bias.shape != (coef.shape[1],) or not all(np.isfinite(a).all() for a in arrs) \
                or (scale == 0).any():
            raise HappysadError(f"{where}: fusion weights have inconsistent shapes or non-finite values")
        return cls(names, mean, scale, coef, bias)


# ----------------------------------------------------------------------------- fusion features

def _logp(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, np.float64), EPS, 1 - EPS))


def feature_names(classes: Sequence[str], emotions: Sequence[str] = ()) -> list[str]:
    """What the combiner sees, in order. ``face_*`` and ``emotion_*`` features are 0 when no face was
    found; ``emotions`` are the classes of the emotions member (none without one)."""
    return ([f"scene_logp_{c}" for c in classes] + [f"face_logp_{c}" for c in classes]
            + [f"face_logp_x_size_{c}" for c in classes]
            + ["face_found", "face_count_log", "face_size", "face_score"]
            + [f"emotion_logp_{e}" for e in emotions])


def fusion_features(scene: np.ndarray, face: np.ndarray | None, n_faces: int, face_side: float,
                    image_side: float, score: float, emotions: np.ndarray | None = None,
                    n_emotions: int = 0) -> np.ndarray:
    """One photo's fusion features. ``scene``, ``face``: (K,) probabilities of each branch (``face`` None
    when no face was found); ``face_side``: the largest face's box side, ``image_side``: the photo's
    shorter side (pixels); ``score``: the best detection score; ``emotions``: the emotions member's
    (``n_emotions``,) probabilities for the same faces (None when no face was found)."""
    k = len(scene)
    out = [_logp(scene)]
    if face is None or n_faces == 0:
        out += [np.zeros(k), np.zeros(k), np.zeros(4), np.zeros(n_emotions)]
    else:
        size = min(face_side / max(image_side, 1.0), 1.0)
        lf = _logp(face)
        out += [lf, lf * size, np.array([1.0, math.log1p(n_faces), size, float(score)])]
        if n_emotions:
            out.append(_logp(emotions))
    return np.concatenate(out)


def branch_of(name: str) -> str:
    return "scene" if name.startswith("scene_") else "face"


def decided_by(fusion: Linear, x: np.ndarray, label: int) -> str:
    """The branch whose features pushed the winning class furthest ahead of the runner-up."""
    contrib = fusion.contributions(x[None])[0]  # (F, K)
    logits = fusion.logits(x[None])[0]
    order = np.argsort(-logits)
    runner = int(order[1]) if order[0] == label else int(order[0])
    margin = contrib[:, label] - contrib[:, runner]
    totals = {"scene": 0.0, "face": 0.0}
    for name, m in zip(fusion.names, margin):
        totals[branch_of(name)] += float(m)
    return max(totals, key=totals.get)


# ----------------------------------------------------------------------------- the bundle on disk

def is_photo_meta(meta: dict) -> bool:
    return isinstance(meta, dict) and meta.get("kind") == KIND


def member_names(meta: dict) -> list[str]:
    """The members this photo model has: the two every one has, then the optional ones it names."""
    named = meta.get("members") if isinstance(meta.get("members"), dict) else {}
    return list(MEMBERS) + [m for m in OPTIONAL_MEMBERS if m in named]


def member_dir(root: Path, meta: dict, member: str) -> Path:
    """Where a member lives: a sub-folder of the photo model, never outside it."""
    rel = (meta.get("members") or {}).get(member)
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or ".." in Path(rel).parts:
        raise HappysadError(f"{root / 'meta.json'}: members.{member} must name a sub-folder of the photo model")
    return root / rel


def read_fusion(root: Path, meta: dict, emotions: Sequence[str] = ()) -> Linear:
    path = root / str(meta.get("fusion", FUSION_NAME))
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HappysadError(f"{path}: cannot read the photo model's fusion ({e})") from None
    fusion = Linear.from_json(d, str(path))
    expected = feature_names(meta["classes"], emotions)
    if fusion.names != expected or fusion.coef.shape[1] != len(meta["classes"]):
        with_emotions = f" and {len(emotions)} emotions" if emotions else ""
        raise HappysadError(f"{path}: fusion features do not match this happysad's photo model "
                            f"(expected {len(expected)} features for {len(meta['classes'])} classes{with_emotions})")
    return fusion


def scene_pixels(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The whole photo as the scene branch sees it: RGB, squashed to (height, width), uint8."""
    h, w = size
    return np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), np.uint8)


def find_faces(detector, img: Image.Image, limit: int) -> list:
    """The faces in a photo, largest first. When none is found, the photo is searched once more inside
    a black margin of half its side all round: a face that fills the whole frame (a face crop, a
    close-up) is then framed as BlazeFace expects. 93 % of 200 FER2013 crops are found that way,
    73 % without."""
    found = detector.detect(img)[:limit]
    if found:
        return found
    w, h = img.size
    # A face that fills the frame needs no detail to be found: search a copy at most RETRY_SIDE long.
    k = min(1.0, RETRY_SIDE / max(w, h))
    small = img.convert("RGB").resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR) if k < 1 else img.convert("RGB")
    pad = max(small.size) // 2
    canvas = Image.new("RGB", (small.width + 2 * pad, small.height + 2 * pad))
    canvas.paste(small, (pad, pad))
    out = []
    for f in detector.detect(canvas)[:limit]:
        x, y, bw, bh = ((v - pad) / k if i < 2 else v / k for i, v in enumerate(f.box))
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + bw, w), min(y + bh, h)
        if x1 - x0 >= detector.min_face and y1 - y0 >= detector.min_face:
            box = (int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0)))
            out.append(type(f)(box, f.score, (f.keypoints - pad) / k))
    return out


def whole_image(src, max_pixels: int = images.MAX_PIXELS) -> Image.Image:
    img, _ = images.decode(src, "RGB", max_pixels=max_pixels)
    return img
