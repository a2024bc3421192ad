"""A model on disk is a ``.keras`` file plus a ``meta.json`` beside it.

``meta.json`` is the single source of truth for how an image becomes a model input (size, color mode,
resizing, class names), so training, evaluation, prediction and serving cannot drift apart.
Saving is atomic (write a temporary file, then rename); loading uses Keras' safe_mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import photo
from .errors import HappysadError

FORMAT_VERSION = 1
META_NAME = "meta.json"
BUILTIN_DIR = Path(__file__).parent / "builtin"


def _default_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes them owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _atomic(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, so a crash
    leaves either the old file or the new one. On failure the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with _atomic(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_keras(model, path: str | os.PathLike) -> Path:
    """``model.save`` to a temporary ``.keras`` file in the same folder, then rename over ``path``."""
    with _atomic(path, suffix=".tmp.keras") as tmp:
        model.save(tmp)
    return Path(path)


def make_meta(*, classes, img_size, color_mode, arch, **extra) -> dict:
    """The meta.json contract (format_version 1). ``extra`` adds training facts (seed, split, ...)."""
    import keras
    import tensorflow as tf

    from . import __version__

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


def check_meta(meta: dict, where: str) -> dict:
    """Validate a meta.json at the boundary, with a message that names the file."""
    try:
        v = meta["format_version"]
        classes = meta["classes"]
        inp = meta["input"]
        int(inp["height"]), int(inp["width"])
        cm = inp["color_mode"]
    except (KeyError, TypeError, ValueError) as e:
        raise HappysadError(f"{where}: not a happysad meta.json (missing or bad {e})") from None
    if v > FORMAT_VERSION:
        raise HappysadError(f"{where}: meta.json format_version {v} is newer than this happysad "
                            f"understands ({FORMAT_VERSION}); upgrade happysad")
    if not isinstance(classes, list) or len(classes) < 2:
        raise HappysadError(f"{where}: meta.json needs a list of at least 2 classes")
    if cm not in ("rgb", "grayscale"):
        raise HappysadError(f"{where}: meta.json color_mode must be rgb or grayscale, not {cm!r}")
    return meta


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


def _is_photo_dir(p: Path) -> bool:
    """A folder holding a photo model (meta.json with kind "photo"; its members live in sub-folders)."""
    try:
        return photo.is_photo_meta(json.loads((p / META_NAME).read_text(encoding="utf-8")))
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
        # MODEL.json beside the file first: it is the most specific (exports write one, see export.py).
        for meta in (p.with_suffix(".json"), p.parent / META_NAME,
                     p.parent.parent / META_NAME if p.parent.name == "weights" else None):
            if meta is not None and meta.is_file():
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
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HappysadError(f"{meta_path}: cannot read meta.json ({e})") from None
    return check_meta(meta, str(meta_path))


def load(ref: str | os.PathLike) -> Bundle:
    """Load a model by run folder, ``.keras`` path or built-in name (Keras safe_mode on). An exported
    ``.onnx`` / ``.tflite`` file loads as a runtime adapter with the same ``predict_on_batch``."""
    import keras

    model_path, meta_path = resolve(ref)
    meta = read_meta(meta_path)
    if photo.is_photo_meta(meta):
        members = {m: load(photo.member_dir(model_path, meta, m)) for m in photo.MEMBERS}
        for m, b in members.items():
            if b.classes != meta["classes"]:
                raise HappysadError(f"{meta_path}: the {m} member's classes {b.classes} differ from the "
                                    f"photo model's {meta['classes']}")
        return Bundle(model=None, meta=meta, path=model_path, name=str(ref), members=members,
                      extra={"fusion": photo.read_fusion(model_path, meta)})
    from .runtime import RUNTIME_SUFFIXES, load_runtime

    if model_path.suffix.lower() in RUNTIME_SUFFIXES:
        return Bundle(model=load_runtime(model_path), meta=meta, path=model_path, name=str(ref))
    try:
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
    except Exception as e:
        raise HappysadError(f"{model_path}: cannot load Keras model ({type(e).__name__}: {e})") from None
    return Bundle(model=model, meta=meta, path=model_path, name=str(ref))
