"""Pretrained ImageNet backbones for small folders of photos: ``happysad train DATA --arch mobilenet_v3_small``.

A backbone model is the network's convolutional body (its own preprocessing inside, so a saved model takes
pixels 0..255 like every happysad model), global average pooling, dropout and a new head. It trains in two
phases in one ``fit`` (so ``--resume`` and the callbacks see one run):

1. ``head_epochs`` epochs with the whole backbone frozen: only the head learns.
2. the top blocks (from :attr:`Backbone.tune_from` on) are unfrozen and trained with the head at a tenth of
   the learning rate. Batch norm layers stay frozen, so they run in inference mode and keep their ImageNet
   statistics: a batch of 32 photos would give worse ones.

Weights (``--weights``): ``imagenet`` reads the file Keras keeps in its cache (``$KERAS_HOME/models``,
default ``~/.keras/models``); happysad never downloads it unless asked (``--download-weights``).
``efficientnet_lite0`` needs no download: its ImageNet weights ship with happysad (``builtin/backbones/``).
``none`` starts from random weights. A ``PATH`` is a ``.weights.h5`` or ``.h5`` file of that backbone; every
layer is matched by name and shape.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .errors import HappysadError, UsageError
from .files import BUILTIN_DIR

HEAD_DROPOUT = 0.2
# Layers that are not the backbone's: they always train.
HEAD_LAYERS = ("features", "head_dropout", "prob", "probs")


@dataclass(frozen=True)
class Backbone:
    name: str            # --arch
    app: str | None      # keras.applications constructor (None: happysad's own EfficientNet-Lite0)
    native: int          # the ImageNet input side: the default --img-size
    tune_from: str       # first layer of the top blocks fine-tuned in phase 2 (a name prefix)
    imagenet_file: str | None = None  # the no-top weights Keras keeps in KERAS_HOME/models
    imagenet_md5: str | None = None   # from keras.applications (file_hash)
    origin: str | None = None         # where Keras downloads it from


KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    # EfficientNet-Lite0 (happysad's own Keras port, the scene backbone of the photo model)
    Backbone("efficientnet_lite0", None, 224, "block14"),
    Backbone("mobilenet_v3_small", "MobileNetV3Small", 224, "expanded_conv_8",
             "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", "d3e8ec802a04aa4fc771ee12a9a9b836",
             KERAS_WEIGHTS + "mobilenet_v3/"),
    Backbone("mobilenet_v3_large", "MobileNetV3Large", 224, "expanded_conv_12",
             "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", "07fb09a5933dd0c8eaafa16978110389",
             KERAS_WEIGHTS + "mobilenet_v3/"),
    Backbone("efficientnet_v2_b0", "EfficientNetV2B0", 224, "block6e",
             "efficientnetv2-b0_notop.h5", "893217f2bb855e2983157299931e43ff", KERAS_WEIGHTS + "efficientnet_v2/"),
)}

# The recipe for a few hundred photos (train.RECIPES takes it over the default recipe). Augmentation from
# the first epoch: the features are there already, nothing has to be found in clean images first.
RECIPE = dict(learning_rate=1e-3, early_stopping=True, augment=True, class_weight=True, label_smoothing=0.1,
              reduce_lr=True, patience=6, augment_warmup=0, weights="imagenet", head_epochs=5,
              fine_tune_lr_factor=0.1)

# EfficientNet-Lite0's ImageNet weights, shipped (its last two blocks fine-tuned on the web photos as the
# scene member of an earlier built-in happy-sad; see README "Your own images").
LITE0_SOURCE = ("backbones", "efficientnet_lite0.weights.h5")


def is_backbone(arch: str) -> bool:
    return arch in BACKBONES


def _keras():
    import keras

    return keras


# EfficientNet-Lite (Tan & Le; the "lite" variants: no squeeze-excite, ReLU6, fixed stem and head), the
# ImageNet-pretrained backbones: Lite0 for --arch, Lite2 the scene member of the photo models. Stages:
# (kernel, stride, expansion, filters, repeats); Lite2 is Lite0 wider and deeper, with the same stem and head.
LITE_STAGES = {
    "efficientnet_lite0": ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                           (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)),
    "efficientnet_lite2": ((3, 1, 1, 16, 1), (3, 2, 6, 24, 3), (5, 2, 6, 48, 3), (3, 2, 6, 88, 4),
                           (5, 1, 6, 120, 4), (5, 2, 6, 208, 5), (3, 1, 6, 352, 1)),
}
LITE_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite2": 260}  # the ImageNet input side of each
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE0_FEATURES = 1280


def lite_blocks(variant: str = "efficientnet_lite0"):
    """(index, kernel, stride, expansion, filters in, filters out) of each block of ``variant``."""
    if variant not in LITE_STAGES:
        raise UsageError(f"{variant}: not an EfficientNet-Lite ({', '.join(LITE_STAGES)})")
    out, filters_in, i = [], 32, 0
    for kernel, stride, expand, filters, repeats in LITE_STAGES[variant]:
        for r in range(repeats):
            out.append((i, kernel, stride if r == 0 else 1, expand, filters_in, filters))
            filters_in, i = filters, i + 1
    return out


def _lite_from(x, first_block: int, variant: str):
    """The blocks of ``variant`` from ``first_block`` on, then its head, applied to ``x``; -> pooled features."""
    L = _keras().layers
    bn = dict(momentum=0.99, epsilon=1e-3)
    for i, kernel, s, expand, filters_in, filters in lite_blocks(variant)[first_block:]:
        skip = x
        if expand != 1:
            x = L.Conv2D(filters_in * expand, 1, use_bias=False, name=f"block{i}_expand")(x)
            x = L.BatchNormalization(name=f"block{i}_expand_bn", **bn)(x)
            x = L.ReLU(6.0, name=f"block{i}_expand_relu")(x)
        x = L.DepthwiseConv2D(kernel, strides=s, padding="same", use_bias=False, name=f"block{i}_dw")(x)
        x = L.BatchNormalization(name=f"block{i}_dw_bn", **bn)(x)
        x = L.ReLU(6.0, name=f"block{i}_dw_relu")(x)
        x = L.Conv2D(filters, 1, use_bias=False, name=f"block{i}_project")(x)
        x = L.BatchNormalization(name=f"block{i}_project_bn", **bn)(x)
        if s == 1 and filters_in == filters:
            x = L.Add(name=f"block{i}_add")([x, skip])
    x = L.Conv2D(LITE0_FEATURES, 1, use_bias=False, name="head_conv")(x)
    x = L.BatchNormalization(name="head_bn", **bn)(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    return L.GlobalAveragePooling2D(name="features")(x)


def efficientnet_lite(variant: str = "efficientnet_lite0", input_shape: tuple[int, int, int] | None = None,
                      name: str | None = None):
    """EfficientNet-Lite ``variant`` up to its global-average-pooled 1280 features, taking pixels 0..255
    (the ImageNet normalization it was trained with is inside; default input: its ImageNet side). Layer
    names follow the PyTorch checkpoints (``stem``, ``block{i}_expand`` ...), so ``bench/convert_lite.py``
    can fill them. The model is named ``variant`` unless ``name`` is given."""
    keras = _keras()
    L = keras.layers
    lite_blocks(variant)  # an unknown variant fails here, before any layer is made
    if input_shape is None:
        input_shape = (LITE_SIZE[variant], LITE_SIZE[variant], 3)
    inputs = keras.Input(shape=input_shape, name="pixels")
    # (x / 255 - mean) / std as one per-channel Rescaling: constants, so exported graphs take pixels only
    x = L.Rescaling([1.0 / (255 * sd) for sd in IMAGENET_STD], offset=[-m / sd for m, sd in zip(IMAGENET_MEAN, IMAGENET_STD)],
                    name="imagenet_scale")(inputs)
    x = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(name="stem_bn", momentum=0.99, epsilon=1e-3)(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    return keras.Model(inputs, _lite_from(x, 0, variant), name=name or variant)


def efficientnet_lite_top(variant: str, first_block: int, input_shape: tuple[int, int, int], name: str = "lite_top"):
    """``variant`` from block ``first_block`` on (same layer names as :func:`efficientnet_lite`), taking
    that block's input activations: fine-tuning the top blocks on activations computed once."""
    keras = _keras()
    inputs = keras.Input(shape=input_shape, name="activations")
    return keras.Model(inputs, _lite_from(inputs, first_block, variant), name=name)


# ----------------------------------------------------------------------------- building

def classifier_head(x, n_classes: int):
    """The last layer of every happysad network: a sigmoid unit for two classes, else a softmax."""
    # float32 even under a mixed_float16 policy (GPU training, see device.py): probabilities and the
    # loss must not be computed in float16.
    layers = _keras().layers
    if n_classes == 2:
        return layers.Dense(1, activation="sigmoid", name="prob", dtype="float32")(x)
    return layers.Dense(n_classes, activation="softmax", name="probs", dtype="float32")(x)


def build(arch: str, input_shape: tuple[int, int, int], n_classes: int):
    """Backbone ``arch`` with random weights (see :func:`load_weights`), pooling, dropout and a new head;
    one flat Keras model (the backbone's layers are the model's own, so Grad-CAM and freezing reach them)."""
    keras = _keras()
    spec = BACKBONES[arch]
    if input_shape[2] != 3:
        raise UsageError(f"--arch {arch} takes colour (3-channel) input: leave out --grayscale "
                         "(gray photos are read as RGB)")
    if min(input_shape[:2]) < 32:
        raise UsageError(f"--arch {arch} needs --img-size >= 32 (it is {min(input_shape[:2])})")
    if spec.app is None:
        body = efficientnet_lite(arch, input_shape)
        inputs, x = body.inputs, body.output  # pooled already (layer "features")
    else:
        inputs = keras.Input(shape=input_shape, name="pixels")
        # include_preprocessing: the network's own scaling is layers of the model
        body = getattr(keras.applications, spec.app)(input_tensor=inputs, include_top=False, weights=None,
                                                     include_preprocessing=True)
        x = keras.layers.GlobalAveragePooling2D(name="features")(body.output)
    x = keras.layers.Dropout(HEAD_DROPOUT, name="head_dropout")(x)
    return keras.Model(inputs, classifier_head(x, n_classes), name=arch)


def backbone_layers(net) -> list:
    """The backbone's layers of a model from :func:`build`, in order (without the input and the head)."""
    return [layer for layer in net.layers[1:] if layer.name not in HEAD_LAYERS]


def preprocessing(net) -> dict:
    """What the model does to pixels before its first convolution, read from its own layers (for meta.json):
    ``{"inside_model": true, "steps": [{"layer", "op", ...}], "text": "x / 127.5 - 1"}``."""
    keras = _keras()
    steps, text = [], []
    for layer in backbone_layers(net):
        if isinstance(layer, keras.layers.Rescaling):
            scale = np.atleast_1d(np.asarray(layer.scale, float)).round(8).tolist()
            offset = np.atleast_1d(np.asarray(layer.offset, float)).round(8).tolist()
            steps.append({"layer": layer.name, "op": "rescale", "scale": scale, "offset": offset})
            text.append(f"x * {_fmt(scale)} + {_fmt(offset)}")
        elif isinstance(layer, keras.layers.Normalization):
            mean = np.asarray(layer.mean, float).reshape(-1).round(8).tolist()
            var = np.asarray(layer.variance, float).reshape(-1).round(8).tolist()
            steps.append({"layer": layer.name, "op": "normalize", "mean": mean, "variance": var})
            text.append(f"(x - {_fmt(mean)}) / sqrt({_fmt(var)})")
        elif layer.weights:  # the first layer with weights is the first convolution
            break
    return {"inside_model": True, "steps": steps, "text": ", then ".join(text) or "none"}


def _fmt(v: Sequence[float]) -> str:
    return f"{v[0]:.6g}" if len(set(v)) == 1 else "[" + ", ".join(f"{x:.4g}" for x in v) + "]"


# ----------------------------------------------------------------------------- the two phases

PHASES = ("head", "fine_tune", "all")


def set_phase(net, arch: str, phase: str) -> int:
    """Freeze for ``phase``: ``head`` (the backbone frozen) or ``fine_tune`` (the top blocks from
    ``tune_from`` on train too; batch norm layers stay frozen, so in inference mode), or ``all`` (everything
    trains, batch norm too: ``--weights none``, where there are no statistics to keep). The head always
    trains. Returns how many backbone layers with weights train."""
    keras = _keras()
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r}")
    start = BACKBONES[arch].tune_from
    tuning, n = phase == "all", 0
    for layer in backbone_layers(net):
        tuning = tuning or (phase == "fine_tune" and layer.name.startswith(start))
        layer.trainable = tuning and (phase == "all" or not isinstance(layer, keras.layers.BatchNormalization))
        n += bool(layer.trainable and layer.weights)
    for name in HEAD_LAYERS:
        if name in {layer.name for layer in net.layers}:
            net.get_layer(name).trainable = True
    return n


def pretrained(weights: str | None) -> bool:
    """Whether a backbone starts from trained weights (two phases) or from random ones (all trains at once)."""
    return weights != "none"


def prepare_optimizer(net, arch: str, weights: str | None) -> None:
    """Build the optimizer for every variable phase 2 trains, then freeze for phase 1: the optimizer then
    accepts the head's variables alone and, later, the top blocks' too (its state is saved whole by
    BackupAndRestore, so a resume finds the same variables). Random weights: everything trains."""
    if not pretrained(weights):
        set_phase(net, arch, "all")
        return
    set_phase(net, arch, "fine_tune")
    net.optimizer.build(net.trainable_variables)
    set_phase(net, arch, "head")


def phase_callback(arch: str, head_epochs: int, fine_tune_lr: float, log=None):
    """A Keras callback that freezes for the epoch's phase (also after a resume) and, when phase 2 begins,
    lowers the learning rate to ``fine_tune_lr`` and retraces the training step (the set of trained
    variables changed)."""
    keras = _keras()

    class Phases(keras.callbacks.Callback):
        phase = "head"

        def on_epoch_begin(self, epoch, logs=None):
            want = "fine_tune" if epoch >= head_epochs else "head"
            if want == self.phase:
                return
            n = set_phase(self.model, arch, want)
            if epoch == head_epochs:  # after a resume further on, the restored (maybe reduced) rate stays
                self.model.optimizer.learning_rate = fine_tune_lr
            self.model.make_train_function(force=True)
            self.phase = want
            if log:
                log(f"epoch {epoch + 1}: fine-tuning the top blocks ({n} layers from {BACKBONES[arch].tune_from} "
                    "on; batch norm frozen)")

    return Phases()


# ----------------------------------------------------------------------------- weights

def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, default ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_path(arch: str) -> Path:
    return keras_cache_dir() / BACKBONES[arch].imagenet_file


def check_weights(arch: str, weights: str | None, download: bool = False) -> None:
    """Fail before any run folder exists when the weights cannot be had: no ImageNet file in the Keras
    cache (and no permission to download it), or a PATH that is not a file."""
    if weights is None:
        return
    if not is_backbone(arch):
        raise UsageError(f"--weights applies to the pretrained backbones (--arch {', '.join(BACKBONES)}), "
                         f"not --arch {arch}")
    spec = BACKBONES[arch]
    if weights == "none":
        return
    if weights == "imagenet":
        if spec.app is None:
            _lite0_source_path()  # shipped: only check it is installed
            return
        path = imagenet_path(arch)
        if not path.is_file() and not download:
            raise UsageError(
                f"--weights imagenet: {path} is not there and happysad downloads nothing by itself; "
                f"fetch {spec.origin}{spec.imagenet_file} into {path.parent}/ (or add --download-weights, "
                f"or give --weights PATH to a local file, or --weights none)")
        return
    p = Path(weights)
    if not p.is_file():
        raise UsageError(f"--weights {weights}: no such file (imagenet, none, or a .weights.h5/.h5 file of {arch})")
    if not p.name.endswith(".h5"):
        raise UsageError(f"--weights {weights}: expected a .weights.h5 or .h5 file of {arch}")


def verify_file(arch: str, path: str | os.PathLike) -> None:
    """Check that ``path`` holds every layer of ``arch`` with the right shapes (a throwaway model: a second
    or two), so that a wrong file fails before a run folder is made."""
    load_h5_by_name(backbone_layers(build(arch, (96, 96, 3), 2)), path, arch)


def load_weights(net, arch: str, weights: str, download: bool = False, log=None) -> str:
    """Fill the backbone of ``net`` (from :func:`build`) from ``weights`` (imagenet, none or a path).
    Returns a description for meta.json."""
    check_weights(arch, weights, download)
    spec = BACKBONES[arch]
    if weights == "none":
        return "none (random initialisation)"
    if weights == "imagenet" and spec.app is None:
        n = load_h5_by_name(backbone_layers(net), _lite0_source_path(), arch)
        if log:
            log(f"{arch}: {n} layers from the ImageNet EfficientNet-Lite0 shipped with happysad")
        return "imagenet (EfficientNet-Lite0 shipped with happysad)"
    if weights == "imagenet":
        path = imagenet_path(arch)
        if not path.is_file():
            path = _download(arch)
        if _md5(path) != spec.imagenet_md5:
            raise HappysadError(f"{path}: not the file Keras publishes (its MD5 differs: a partial or other "
                                f"download); delete it and fetch {spec.origin}{spec.imagenet_file} again")
        n = load_h5_by_name(backbone_layers(net), path, arch)
        if log:
            log(f"{arch}: {n} layers from {path}")
        return f"imagenet ({path.name})"
    n = load_h5_by_name(backbone_layers(net), weights, arch)
    if log:
        log(f"{arch}: {n} layers from {weights}")
    return str(Path(weights).resolve())


def _download(arch: str) -> Path:
    """Keras's own download into its cache (only with --download-weights); one line when it fails."""
    keras = _keras()
    spec = BACKBONES[arch]
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        return Path(keras.utils.get_file(spec.imagenet_file, spec.origin + spec.imagenet_file,
                                         cache_subdir="models", cache_dir=str(keras_cache_dir().parent),
                                         file_hash=spec.imagenet_md5))
    except Exception as e:  # noqa: BLE001 - offline, DNS, proxy...: all the same to the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(f"--weights imagenet: could not download {spec.origin}{spec.imagenet_file} into "
                         f"{keras_cache_dir()}/ ({msg[:200]}); fetch it by hand or give --weights PATH") from None
    finally:
        socket.setdefaulttimeout(old)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _h5_layers(f) -> dict:
    """{layer name: [arrays in the layer's own order]} of an HDF5 weights file: Keras 3's ``.weights.h5``
    (``.../layers/conv2d_3/vars/0..``, the layer's name an attribute of ``vars``) or the older ``.h5`` (per layer group, ordered by ``weight_names``;
    Keras's own ImageNet files)."""
    import h5py

    out: dict = {}
    if "layers" in f or "vars" in f:
        def visit(name, obj):
            parts = name.split("/")
            if isinstance(obj, h5py.Group) and len(parts) >= 3 and parts[-1] == "vars" and parts[-3] == "layers":
                if len(obj):  # the group is named by type and position (conv2d_3); its attribute by the layer
                    name = obj.attrs.get("name", parts[-2])
                    out.setdefault(name.decode() if isinstance(name, bytes) else str(name),
                                   [obj[str(i)][()] for i in range(len(obj))])

        f.visititems(visit)
        return out
    g = f["model_weights"] if "model_weights" in f else f
    for lname in g.attrs.get("layer_names", []):
        lname = lname.decode() if isinstance(lname, bytes) else lname
        names = [n.decode() if isinstance(n, bytes) else n for n in g[lname].attrs.get("weight_names", [])]
        if names:
            out[lname] = [g[lname][n][()] for n in names]
    return out


def load_h5_by_name(layers, path: str | os.PathLike, arch: str) -> int:
    """Set every layer with weights from the layer of the same name in ``path``; every one must be there,
    with the same shapes (else one line naming the first that is not). Returns the number of layers set."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            found = _h5_layers(f)
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"--weights {path}: not a Keras weights file ({str(e)[:160]})") from None
    wanted = [layer for layer in layers if layer.weights]
    missing = [layer.name for layer in wanted if layer.name not in found]
    if missing:
        hint = "" if len(missing) < len(wanted) else " (no layer matches: another architecture?)"
        raise UsageError(f"--weights {path}: no weights for {len(missing)} of {arch}'s {len(wanted)} layers "
                         f"(first: {missing[0]}){hint}")
    for layer in wanted:
        have = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in found[layer.name]]
        if have != got:
            raise UsageError(f"--weights {path}: layer {layer.name} has shapes {got} in the file but {have} in "
                             f"{arch}; the file is of another architecture or width")
    for layer in wanted:
        layer.set_weights(found[layer.name])
    return len(wanted)


# ----------------------------------------------------------------------------- the default for a folder

PHOTO_SIDE = 128  # px: images whose typical short side is at least this are photos worth a backbone


def auto_arch(paths: Sequence[str | os.PathLike], sample: int = 60) -> tuple[str, str]:
    """The architecture ``--arch auto`` (the default) picks for a folder, and why: colour photos (median
    short side >= PHOTO_SIDE) get EfficientNet-Lite0 from the ImageNet weights shipped with happysad; small
    or gray images (generated data, 48 px faces) get the small CNN trained from scratch."""
    if not paths:
        return "default", "no images"
    rng = np.random.default_rng(0)
    pick = rng.choice(len(paths), min(sample, len(paths)), replace=False)
    sides, colour = [], 0
    for i in pick:
        try:
            with Image.open(paths[i]) as im:
                sides.append(min(im.size))
                colour += _is_colour(im)
        except Exception:  # noqa: BLE001 - an unreadable file says nothing about the others
            continue
    if not sides:
        return "default", "no readable images"
    side = int(np.median(sides))
    if colour * 2 >= len(sides) and side >= PHOTO_SIDE:
        try:
            _lite0_source_path()
        except UsageError:
            return "default", f"colour photos (median side {side} px) but the shipped backbone is not installed"
        return "efficientnet_lite0", f"colour photos (median short side {side} px)"
    why = "mostly gray" if colour * 2 < len(sides) else f"small images (median short side {side} px < {PHOTO_SIDE})"
    return "default", why


def _lite0_source_path() -> Path:
    p = BUILTIN_DIR.joinpath(*LITE0_SOURCE)
    if not p.is_file():
        raise UsageError(f"--arch efficientnet_lite0 --weights imagenet: the shipped weights {p} are not "
                         "installed; give --weights PATH (an EfficientNet-Lite0 .weights.h5) or --weights none")
    return p


def _is_colour(im) -> bool:
    """Whether an image has colour in it (an RGB file of gray pixels does not)."""
    if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return False
    small = np.asarray(im.convert("RGB").resize((32, 32)), np.int16)
    return bool(np.abs(small - small.mean(axis=2, keepdims=True)).mean() > 2.0)
