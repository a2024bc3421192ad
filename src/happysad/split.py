"""Split a folder of class folders into train/val/test as a materialized, seeded manifest.

The seed tutorial split with ``take``/``skip`` on a dataset that reshuffled every epoch, so its "test"
images were mostly training images. Here the split is a CSV file written once: each file is in exactly
one split, per-class proportions are kept (stratified), and files with identical content (and, when
``clean`` found them, near-duplicates) form a group that never straddles two splits.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import dedup, files
from .errors import HappysadError, UsageError
from .folders import CSV_TEXT, list_classes, list_items, source_groups
from .images import decode
from .places import output_file

DEFAULT_RATIOS = (0.7, 0.2, 0.1)
SPLITS = ("train", "val", "test")
COLUMNS = ("path", "label", "split", "group")


@dataclass(frozen=True)
class Row:
    path: str  # relative to the data folder, with '/' separators
    label: str
    split: str
    group: str


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


def write_manifest(rows: Sequence[Row], out: str | os.PathLike) -> Path:
    """Write the CSV atomically (same content for the same data and seed, byte for byte)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in rows:
        w.writerow([row.path, row.label, row.split, row.group])
    return files.atomic_write_bytes(out, buf.getvalue().encode(**CSV_TEXT))


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
    def phash(rel):
        try:
            return dedup.phash(decode(Path(data) / rel, "RGB", allowed_formats=None)[0])
        except Exception:
            return None

    with ThreadPoolExecutor(max_workers=files.thread_count()) as pool:
        hashes = list(pool.map(phash, [p for p, _, _ in items]))
    known = [(item, h) for item, h in zip(items, hashes) if h is not None]
    gid = dedup.near_duplicate_groups([h for _, h in known], max_distance)
    name: dict[int, str] = {}
    for ((_, _, key), _), g in zip(known, gid):
        name.setdefault(g, key)  # a group is named after one member's content key
    return {path: name[g] for ((path, _, _), _), g in zip(known, gid)}


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
