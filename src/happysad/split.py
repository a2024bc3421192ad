"""Split a folder of class folders into train/val/test as a materialized, seeded manifest.

The seed tutorial split with ``take``/``skip`` on a dataset that reshuffled every epoch, so its "test"
images were mostly training images. Here the split is a CSV file written once: each file is in exactly
one split, per-class proportions are kept (stratified), and files with identical content (and, when
``clean`` found them, near-duplicates) form a group that never straddles two splits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import HappysadError, UsageError
from .images import iter_files
from .places import output_file

DEFAULT_RATIOS = (0.7, 0.2, 0.1)
SPLITS = ("train", "val", "test")
COLUMNS = ("path", "label", "split", "group")
SOURCES = "faces.csv"  # in a face folder (clean/train --faces): the photo each crop came from


@dataclass(frozen=True)
class Row:
    path: str  # relative to the data folder, with '/' separators
    label: str
    split: str
    group: str


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
    from PIL import Image

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
    from concurrent.futures import ThreadPoolExecutor

    root = Path(data)
    files: list[tuple[Path, str]] = []
    for label in classes:
        files += [(p, label) for p in iter_files(root / label)]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        keys = list(pool.map(lambda f: content_key(f[0]), files))
    items, skipped = [], []
    for (p, label), key in zip(files, keys):
        rel = p.relative_to(root).as_posix()
        if key is None:
            skipped.append(rel)
        else:
            items.append((rel, label, key))
    return items, skipped


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = [float(x) for x in ratios]
    if len(r) == 2:
        r.append(0.0)
    if len(r) != 3 or any(x < 0 for x in r) or abs(sum(r) - 1.0) > 1e-6 or r[0] <= 0:
        raise UsageError(f"--ratios must be 2 or 3 non-negative numbers (train val [test]) that sum to 1, "
                         f"with train > 0; got {' '.join(map(str, ratios))}")
    return r[0], r[1], r[2]


def assign(items: Iterable[tuple[str, str, str]], ratios: Sequence[float] = DEFAULT_RATIOS,
           seed: int = 0, groups: Mapping[str, str] | None = None) -> list[Row]:
    """Stratified, seeded, group-aware split of (path, label, content key) items.

    ``groups`` maps a path to a group id (e.g. near-duplicate groups from ``clean``); by default the
    content key is the group, so byte-identical files always share a split.
    """
    r = check_ratios(ratios)
    items = sorted(items)
    by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path, label, key in items:
        by_class[label].append((path, (groups or {}).get(path, key)))
    rng = np.random.default_rng(seed)
    group_split: dict[str, str] = {}
    rows: list[Row] = []
    for label in sorted(by_class):
        members = by_class[label]
        sizes = Counter(g for _, g in members)
        order = sorted(sizes)
        order = [order[i] for i in rng.permutation(len(order))]
        n = len(members)
        want = {"train": round(r[0] * n), "val": round(r[1] * n)}
        want["test"] = n - want["train"] - want["val"]
        # Small classes: keep at least one item in every split that was asked for.
        for s, ratio in zip(SPLITS[1:], r[1:]):
            if ratio > 0 and want[s] == 0 and n >= 3:
                want[s], want["train"] = 1, want["train"] - 1
        have = Counter()
        for g in order:
            if g not in group_split:
                # The first split (in train, val, test order) still short of its target takes the group.
                group_split[g] = next((s for s in SPLITS if have[s] < want[s]), "train")
            have[group_split[g]] += sizes[g]
        rows += [Row(p, label, group_split[g], g) for p, g in members]
    return sorted(rows, key=lambda row: row.path)


# File names that are not UTF-8 (held as surrogates, os.fsdecode) go into CSV files as their bytes and come
# back as the same names: the CSV stays byte-identical to what ``ls`` shows.
CSV_TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


def write_manifest(rows: Sequence[Row], out: str | os.PathLike) -> Path:
    """Write the CSV atomically (same content for the same data and seed, byte for byte)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in rows:
        w.writerow([row.path, row.label, row.split, row.group])
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.write_text(buf.getvalue(), newline="", **CSV_TEXT)
    os.replace(tmp, out)
    return out


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """Read and check a split manifest: known columns, known split names, no file in two splits."""
    path = Path(path)
    try:
        with open(path, newline="", **CSV_TEXT) as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label", "split"} <= set(reader.fieldnames):
                raise HappysadError(f"{path}: not a split manifest (needs columns path,label,split; "
                                    f"found {','.join(reader.fieldnames or [])})")
            rows = [Row(d["path"], d["label"], d["split"], d.get("group") or d["path"]) for d in reader]
    except OSError as e:
        raise HappysadError(f"{path}: cannot read split manifest ({e.strerror or e})") from None
    bad = sorted({r.split for r in rows} - set(SPLITS))
    if bad:
        raise HappysadError(f"{path}: unknown split name(s) {', '.join(bad)} (use train, val, test)")
    check_no_leak(rows, source=str(path))
    return rows


def check_no_leak(rows: Sequence[Row], source: str = "split") -> None:
    """Refuse a split that puts one file, or one content group, in two splits."""
    seen: dict[str, str] = {}
    gseen: dict[str, str] = {}
    for r in rows:
        if r.path in seen:
            raise HappysadError(f"{source}: {r.path} is listed twice ({seen[r.path]} and {r.split})")
        seen[r.path] = r.split
        if gseen.setdefault(r.group, r.split) != r.split:
            raise HappysadError(f"{source}: identical or near-duplicate content (group {r.group}) is in "
                                f"two splits ({gseen[r.group]} and {r.split}); re-split with happysad split")


def counts(rows: Sequence[Row]) -> dict[str, dict[str, int]]:
    """{label: {split: n}} for a summary table."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {s: 0 for s in SPLITS})
    for r in rows:
        out[r.label][r.split] += 1
    return dict(out)


def near_duplicate_group_ids(data: str | os.PathLike, items: Sequence[tuple[str, str, str]],
                             max_distance: int) -> dict[str, str]:
    """path -> group id joining pictures within ``max_distance`` pHash bits (decodes every image once)."""
    from concurrent.futures import ThreadPoolExecutor

    import imagehash

    from .clean import near_duplicate_groups
    from .images import decode

    def phash(rel):
        try:
            return int(str(imagehash.phash(decode(Path(data) / rel, "RGB", allowed_formats=None)[0])), 16)
        except Exception:
            return None

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        hashes = list(pool.map(phash, [p for p, _, _ in items]))
    known = [(item, h) for item, h in zip(items, hashes) if h is not None]
    gid = near_duplicate_groups([h for _, h in known], max_distance)
    name: dict[int, str] = {}
    for ((_, _, key), _), g in zip(known, gid):
        name.setdefault(g, key)  # a group is named after one member's content key
    return {path: name[g] for ((path, _, _), _), g in zip(known, gid)}


def source_groups(folder: str | os.PathLike) -> dict[str, str] | None:
    """For a face folder (one with faces.csv): crop path -> its source photo, so that all faces of one
    photo land in the same split. None for other folders."""
    p = Path(folder) / SOURCES
    if not p.is_file():
        return None
    with open(p, newline="", **CSV_TEXT) as fh:
        return {r["path"]: f"photo:{r['source']}" for r in csv.DictReader(fh)}


def split_folder(data: str | os.PathLike, out: str | os.PathLike | None = None,
                 ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0,
                 classes: Sequence[str] | None = None,
                 groups: Mapping[str, str] | None = None,
                 near_dup_distance: int = 0) -> tuple[list[Row], list[str]]:
    """List, split and (if ``out``) write the manifest. Returns the rows and the skipped non-images.

    Byte-identical files always share a split; with ``near_dup_distance`` > 0 so do pictures whose
    perceptual hashes are that close (e.g. a resized or re-encoded copy)."""
    check_ratios(ratios)
    if out is not None:  # before the files are listed and hashed
        output_file(out, "--out", make_folder=False)
    names = list_classes(data, classes)
    items, skipped = list_items(data, names)
    if groups is None:
        groups = source_groups(data)
    if near_dup_distance > 0 and groups is None:
        groups = near_duplicate_group_ids(data, items, near_dup_distance)
    have = Counter(label for _, label, _ in items)
    empty = [c for c in names if have[c] == 0]
    if empty:
        raise HappysadError(f"{data}: class folder(s) with no images: {', '.join(empty)}")
    rows = assign(items, ratios, seed, groups)
    if out is not None:
        write_manifest(rows, out)
    return rows, skipped
