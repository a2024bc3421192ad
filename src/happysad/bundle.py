"""A model on disk is a ``.keras`` file plus a ``meta.json`` beside it.

``meta.json`` is the single source of truth for how an image becomes a model input (size, color mode,
resizing, class names), so training, evaluation, prediction and serving cannot drift apart.
Saving is atomic (write a temporary file, then rename); loading uses Keras' safe_mode.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, faces, photo
from .errors import HappysadError
from .files import BUILTIN_DIR, atomic_path, write_json  # noqa: F401 (bundle.write_json: bench/ scripts write meta.json with it)
from .runtime import RUNTIME_SUFFIXES, load_runtime

FORMAT_VERSION = 1
META_NAME = "meta.json"


def save_keras(model, path: str | os.PathLike) -> Path:
    """``model.save`` to a temporary ``.keras`` file in the same folder, then rename over ``path``."""
    with atomic_path(path, suffix=".tmp.keras") as tmp:
        model.save(tmp)
    return Path(path)


def make_meta(*, classes, img_size, color_mode, arch, **extra) -> dict:
    """The meta.json contract (format_version 1). ``extra`` adds training facts (seed, split, ...)."""
    import keras
    import tensorflow as tf

    h, w = img_size
    meta = {
        "format_version": FORMAT_VERSION,
        "classes": list(classes),
        "input": {
            "height": int(h),
            "width": int(w),
            "channels": 1 if color_mode == "grayscale" else 3,
            "color_mode": color_mode,
            "resize": "bilinear, squash to size (aspect ratio not kept)",
            "dtype": "uint8 pixels 0..255",
            "scaling": "inside the model (Rescaling 1/255)",
        },
        "output": "sigmoid" if len(classes) == 2 else "softmax",
        "arch": arch,
        "versions": {"happysad": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
    }
    meta.update(extra)
    return meta


MAX_SIDE = 4096             # px: the largest model input side meta.json may ask for (height and width)
MAX_META_BYTES = 4 * 2**20  # a meta.json is a few KB; a bigger file is not one (and is not read whole)
COLOR_CHANNELS = {"rgb": 3, "grayscale": 1}
OUTPUTS = ("sigmoid", "softmax")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _bad(where: str, field_: str, what: str, value) -> HappysadError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return HappysadError(f"{where}: meta.json {field_} must be {what}, not {shown}")


def _check_faces(cfg, where: str) -> None:
    """The optional ``faces`` entry of a face model: true, or the crop settings (faces.settings())."""
    if cfg is None or isinstance(cfg, bool):
        return
    if not isinstance(cfg, dict):
        raise _bad(where, "faces", "true or an object of crop settings", cfg)
    det = cfg.get("detector", faces.DETECTOR)
    if not isinstance(det, str) or not det or any(k not in faces.MODELS for k in det.split("+")):
        raise _bad(where, "faces.detector", f"one of {', '.join([*faces.MODELS, 'short+full'])}", det)
    for key, lo, hi in (("margin", 0.0, 1.0), ("raise", -1.0, 1.0)):
        if key in cfg and not (_is_number(cfg[key]) and lo <= cfg[key] <= hi):
            raise _bad(where, f"faces.{key}", f"a number from {lo:g} to {hi:g}", cfg[key])
    if "align" in cfg and not isinstance(cfg["align"], bool):
        raise _bad(where, "faces.align", "true or false", cfg["align"])


def check_meta(meta: dict, where: str) -> dict:
    """Validate a meta.json at the boundary: every field a model load or a prediction relies on, by type
    and range, with a one-line message that names the file and the field. (The model itself is checked
    against it by :func:`check_model` once loaded.)"""
    if not isinstance(meta, dict):
        raise HappysadError(f"{where}: not a happysad meta.json (a JSON object expected, "
                            f"found {type(meta).__name__})")
    for key in ("format_version", "classes", "input"):
        if key not in meta:
            raise HappysadError(f"{where}: not a happysad meta.json (missing {key!r})")
    v = meta["format_version"]
    if not _is_int(v) or v < 1:
        raise _bad(where, "format_version", "a whole number (1)", v)
    if v > FORMAT_VERSION:
        raise HappysadError(f"{where}: meta.json format_version {v} is newer than this happysad "
                            f"understands ({FORMAT_VERSION}); upgrade happysad")
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) < 2:
        raise _bad(where, "classes", "a list of at least 2 class names", classes)
    for c in classes:
        if not isinstance(c, str) or not c.strip():
            raise HappysadError(f"{where}: meta.json classes must be non-empty strings; found {c!r:.60}")
    dup = sorted(c for c, n in Counter(classes).items() if n > 1)
    if dup:
        raise HappysadError(f"{where}: meta.json classes lists {', '.join(map(repr, dup))} more than once")
    inp = meta["input"]
    if not isinstance(inp, dict):
        raise _bad(where, "input", "an object (height, width, channels, color_mode)", inp)
    for key in ("height", "width", "color_mode"):
        if key not in inp:
            raise HappysadError(f"{where}: meta.json input has no {key!r}")
    for key in ("height", "width"):
        if not _is_int(inp[key]) or not 1 <= inp[key] <= MAX_SIDE:
            raise _bad(where, f"input.{key}", f"a whole number from 1 to {MAX_SIDE}", inp[key])
    cm = inp["color_mode"]
    if not isinstance(cm, str) or cm not in COLOR_CHANNELS:  # a list or object is not a key
        raise _bad(where, "input.color_mode", "rgb or grayscale", cm)
    if "channels" not in inp:  # older meta.json files: color_mode says it
        inp["channels"] = COLOR_CHANNELS[cm]
    if not _is_int(inp["channels"]) or inp["channels"] != COLOR_CHANNELS[cm]:
        raise _bad(where, "input.channels", f"{COLOR_CHANNELS[cm]} for color_mode {cm}", inp["channels"])
    if "output" in meta and meta["output"] not in OUTPUTS:
        raise _bad(where, "output", " or ".join(OUTPUTS), meta["output"])
    for key in ("arch", "name", "kind", "fusion"):
        if key in meta and not isinstance(meta[key], str):
            raise _bad(where, key, "a string", meta[key])
    for key in ("arch_options", "train", "versions", "members", "fast_runtime"):
        if key in meta and not isinstance(meta[key], dict):
            raise _bad(where, key, "an object", meta[key])
    fast = meta.get("fast_runtime")
    if fast is not None:
        name = fast.get("file")
        if not isinstance(name, str) or Path(name).name != name or Path(name).suffix.lower() not in (".onnx", ".tflite"):
            raise _bad(where, "fast_runtime.file", "a .onnx or .tflite file name beside the model", name)
    _check_faces(meta.get("faces"), where)
    return meta


def _dims(shape) -> list:
    """A model's tensor shape without the batch dimension; unknown (dynamic) dimensions become None."""
    out = []
    for d in list(shape)[1:]:
        try:
            d = int(d)
        except (TypeError, ValueError):  # None, or a symbolic name in ONNX ("height")
            d = None
        out.append(d if d is not None and d >= 0 else None)
    return out


def _model_shapes(model) -> tuple[list | None, list | None]:
    """(input dims, output dims) of a Keras model or an exported-model adapter, batch dimension left
    out; None where it cannot be told. A model with several inputs or outputs raises."""
    if getattr(model, "session", None) is not None:  # runtime.OnnxModel
        ins, outs = model.session.get_inputs(), model.session.get_outputs()
        shapes = [i.shape for i in ins], [o.shape for o in outs]
    elif getattr(model, "interpreter", None) is not None:  # runtime.LiteRTModel
        ins, outs = model.interpreter.get_input_details(), model.interpreter.get_output_details()
        pick = lambda d: d.get("shape_signature", d["shape"])  # noqa: E731  (-1: dynamic)
        shapes = [pick(d) for d in ins], [pick(d) for d in outs]
    else:
        try:
            shapes = [t.shape for t in model.inputs], [t.shape for t in model.outputs]
        except (AttributeError, TypeError, ValueError):  # a model that was never built: nothing to compare
            return None, None
    ins, outs = shapes
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"the model has {len(ins)} input(s) and {len(outs)} output(s); happysad needs one of each")
    return _dims(ins[0]), _dims(outs[0])


def check_model(model, meta: dict, where: str, model_path: str | os.PathLike = "") -> None:
    """The loaded model must take what meta.json says it takes (height x width x channels; a dynamic
    dimension of the model takes anything) and give one output per class (or one sigmoid unit for two
    classes). ``where`` is the meta.json, named in the message with the field that does not match."""
    try:
        ins, outs = _model_shapes(model)
    except ValueError as e:
        raise HappysadError(f"{model_path}: {e}") from None
    inp, classes = meta["input"], meta["classes"]
    if ins is not None:
        want = [inp["height"], inp["width"], inp["channels"]]
        if len(ins) != 3:
            raise HappysadError(f"{model_path}: the model takes inputs of shape {tuple(ins)}, not images "
                                "(height, width, channels)")
        for key, have, w in zip(("height", "width", "channels"), ins, want):
            if have is not None and have != w:
                raise HappysadError(f"{where}: meta.json input.{key} is {w} but the model's input {key} is "
                                    f"{have} ({model_path}); the meta.json does not belong to this model")
    if outs is not None:
        if len(outs) != 1:
            raise HappysadError(f"{model_path}: the model's output has shape {tuple(outs)}; happysad needs one "
                                "probability per class")
        units = outs[0]
        if units is not None and units != len(classes) and not (units == 1 and len(classes) == 2):
            raise HappysadError(f"{where}: meta.json classes lists {len(classes)} classes but the model has "
                                f"{units} output(s) ({model_path}); the meta.json does not belong to this model")


@dataclass
class Bundle:
    """A loaded model: the Keras model, its meta.json, and where it came from."""

    model: Any
    meta: dict
    path: Path
    name: str = ""
    extra: dict = field(default_factory=dict)
    members: dict = field(default_factory=dict)  # photo models: {"face": Bundle, "scene": Bundle}

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.meta["input"]["height"]), int(self.meta["input"]["width"])

    @property
    def color_mode(self) -> str:
        return self.meta["input"]["color_mode"]

    @property
    def pil_mode(self) -> str:
        """The Pillow mode the model's input is cut in: "L" for grayscale models, else "RGB"."""
        return "L" if self.color_mode == "grayscale" else "RGB"


def _read_json(path: Path):
    """A small JSON file, parsed. Only a regular file is opened (a pipe named meta.json would block) and
    at most MAX_META_BYTES are read. Raises OSError or ValueError."""
    if not path.is_file():
        raise OSError(f"not a regular file: {path}")
    with open(path, "rb") as f:
        data = f.read(MAX_META_BYTES + 1)
    if len(data) > MAX_META_BYTES:
        raise ValueError(f"larger than {MAX_META_BYTES // 2**20} MB")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:  # "[[[[...": nested too deep for the parser
        raise ValueError("nested too deeply") from None


def _is_photo_dir(p: Path) -> bool:
    """A folder holding a photo model (meta.json with kind "photo"; its members live in sub-folders)."""
    try:
        return photo.is_photo_meta(_read_json(p / META_NAME))
    except (OSError, ValueError):
        return False


def builtin_names() -> list[str]:
    if not BUILTIN_DIR.is_dir():
        return []
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "model.keras").is_file() or _is_photo_dir(p))


def resolve(ref: str | os.PathLike) -> tuple[Path, Path]:
    """Find (model file, meta.json) for a run folder, a .keras file or a built-in model name."""
    p = Path(ref)
    if p.is_dir() and _is_photo_dir(p):
        return p, p / META_NAME
    if p.is_dir():
        for cand in (p / "weights" / "best.keras", p / "model.keras", p / "weights" / "last.keras",
                     p / "model.onnx", p / "model.tflite"):
            if cand.is_file():
                return resolve(cand)
        raise HappysadError(f"{p}: no model in this folder (expected weights/best.keras or model.keras)")
    if p.is_file():
        # An exported file: MODEL.json beside it first, the most specific (export.py writes one). A Keras
        # model: its folder's meta.json first, so an export into that folder cannot shadow it.
        own = [p.parent / META_NAME] + ([p.parent.parent / META_NAME] if p.parent.name == "weights" else [])
        beside = [p.with_suffix(".json")]
        for meta in (own + beside if p.suffix.lower() == ".keras" else beside + own):
            if meta.is_file():
                return p, meta
        raise HappysadError(f"{p}: no meta.json beside it (a model needs its meta.json to know its "
                            "classes and input size)")
    if not any(sep in str(ref) for sep in ("/", os.sep)) and not str(ref).endswith((".keras", ".onnx", ".tflite")):
        b = BUILTIN_DIR / str(ref) / "model.keras"
        if b.is_file():
            return b, b.parent / META_NAME
        if _is_photo_dir(b.parent):
            return b.parent, b.parent / META_NAME
        names = builtin_names()
        raise HappysadError(f"{ref}: no such model file, run folder or built-in model "
                            f"(built-in: {', '.join(names) or 'none installed'})")
    raise HappysadError(f"{ref}: no such model file or run folder")


def read_meta(meta_path: Path) -> dict:
    """A model's meta.json, read and checked (the model itself is not loaded)."""
    try:
        meta = _read_json(meta_path)
    except (OSError, ValueError) as e:
        raise HappysadError(f"{meta_path}: cannot read meta.json ({_first_line(e)})") from None
    return check_meta(meta, str(meta_path))


def _first_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line: Keras and TensorFlow errors run to many lines of context."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fast_runtime_file(model_path: Path, meta: dict) -> Path | None:
    """The exported copy that meta.json's ``fast_runtime`` names beside a ``.keras`` model (e.g. the
    int8 LiteRT file of ``fer-happy-sad-tiny``), when it exists and its runtime is installed."""
    fast = meta.get("fast_runtime")
    if not fast or model_path.suffix.lower() != ".keras":
        return None
    path = model_path.parent / fast["file"]
    needs = {".onnx": ("onnxruntime",), ".tflite": ("ai_edge_litert", "tensorflow")}[path.suffix.lower()]
    if path.is_file() and any(importlib.util.find_spec(m) is not None for m in needs):
        return path
    return None


def load(ref: str | os.PathLike, fast: bool = False) -> Bundle:
    """Load a model by run folder, ``.keras`` path or built-in name (Keras safe_mode on). An exported
    ``.onnx`` / ``.tflite`` file loads as a runtime adapter with the same ``predict_on_batch``.

    ``fast=True`` (predict, evaluate and serve ask for it) runs a model's ``fast_runtime`` copy instead
    of Keras where there is one (see :func:`fast_runtime_file`); export, explain and fine-tuning need
    the Keras model itself and keep the default."""
    import keras

    model_path, meta_path = resolve(ref)
    meta = read_meta(meta_path)
    if fast:
        model_path = fast_runtime_file(model_path, meta) or model_path
    if photo.is_photo_meta(meta):
        members = {m: load(photo.member_dir(model_path, meta, m), fast=fast) for m in photo.member_names(meta)}
        for m, b in members.items():
            if m in photo.MEMBERS and b.classes != meta["classes"]:
                raise HappysadError(f"{meta_path}: the {m} member's classes {b.classes} differ from the "
                                    f"photo model's {meta['classes']}")
        return Bundle(model=None, meta=meta, path=model_path, name=str(ref), members=members,
                      extra={"fusion": photo.read_fusion(model_path, meta, members["emotions"].classes
                                                         if "emotions" in members else ())})
    if model_path.suffix.lower() in RUNTIME_SUFFIXES:
        model = load_runtime(model_path)
    else:
        try:
            model = keras.models.load_model(model_path, compile=False, safe_mode=True)
        except Exception as e:
            raise HappysadError(f"{model_path}: cannot load Keras model ({type(e).__name__}: "
                                f"{_first_line(e)})") from None
    check_model(model, meta, str(meta_path), model_path)
    return Bundle(model=model, meta=meta, path=model_path, name=str(ref))
