"""A data folder: one sub-folder per class, holding image files (at any depth).

What every stage needs to read one: the class names, the image files with a content key each, and
``faces.csv`` (written beside the crops of a face folder) that ties each crop to the photo it came from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from PIL import Image

from .errors import UsageError
from .files import thread_count
from .images import iter_files

SOURCES = "faces.csv"  # in a face folder (clean/train --faces): the photo each crop came from
# File names that are not UTF-8 (held as surrogates, os.fsdecode) go into CSV files as their bytes and come
# back as the same names: the CSV stays byte-identical to what ``ls`` shows.
CSV_TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


def list_classes(data: str | os.PathLike, classes: Sequence[str] | None = None,
                 min_classes: int = 2) -> list[str]:
    """Class names: the visible sub-folders of ``data`` (sorted), or the ``classes`` asked for, in that
    order, after checking each exists."""
    root = Path(data)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder (expected a folder with one sub-folder per class)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        classes = [c.strip() for c in classes if c.strip()]
        missing = [c for c in classes if c not in found]
        if missing:
            raise UsageError(f"{root}: no class folder named {', '.join(missing)} "
                             f"(found: {', '.join(found) or 'none'})")
        if len(set(classes)) != len(classes):
            raise UsageError(f"--classes lists a class twice: {','.join(classes)}")
        found = list(classes)
    if len(found) < min_classes:
        raise UsageError(f"{root}: needs at least {min_classes} class folder(s), found {len(found)} "
                         f"({', '.join(found) or 'none'})")
    return found


def parse_classes(text: str | None) -> list[str] | None:
    """'happy,sad' -> ['happy', 'sad']; None stays None."""
    if text is None:
        return None
    out = [c.strip() for c in text.split(",") if c.strip()]
    if len(out) < 2:
        raise UsageError(f"--classes needs at least two names separated by commas, got {text!r}")
    return out


def content_key(path: str | os.PathLike) -> str | None:
    """sha256 of the file's bytes (16 hex digits), or None if it is unreadable or not an image.

    Only the header is parsed (Pillow's lazy open); pixels are decoded later, in ``data``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)):
            pass
    except Exception:
        return None
    return hashlib.sha256(data).hexdigest()[:16]


def list_items(data: str | os.PathLike, classes: Sequence[str]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """All image files under each class folder (recursively) as (relative path, label, content key),
    and the files skipped because they are not images."""
    root = Path(data)
    files: list[tuple[Path, str]] = []
    for label in classes:
        files += [(p, label) for p in iter_files(root / label)]
    with ThreadPoolExecutor(max_workers=thread_count()) as pool:
        keys = list(pool.map(lambda f: content_key(f[0]), files))
    items, skipped = [], []
    for (p, label), key in zip(files, keys):
        rel = p.relative_to(root).as_posix()
        if key is None:
            skipped.append(rel)
        else:
            items.append((rel, label, key))
    return items, skipped


def source_groups(folder: str | os.PathLike) -> dict[str, str] | None:
    """For a face folder (one with faces.csv): crop path -> its source photo, so that all faces of one
    photo land in the same split. None for other folders."""
    p = Path(folder) / SOURCES
    if not p.is_file():
        return None
    with open(p, newline="", **CSV_TEXT) as fh:
        return {r["path"]: f"photo:{r['source']}" for r in csv.DictReader(fh)}
