"""Clean a folder of class folders: every file is judged by its content, and the rejects are moved to a
quarantine folder with a manifest (never deleted); ``restore`` moves them back.

Checks per file (reason codes): empty, unreadable, not_image, format_not_allowed, too_many_pixels,
corrupt (via ``images.decode``), too_small (shortest side under ``min_side``), and across files:
duplicate (byte-identical to a kept file of the same class) and label_conflict (the same content in
two classes: every copy goes, since we cannot know which label is right).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import images
from .errors import HappysadError, UsageError
from .split import list_classes

MIN_SIDE = 32
MANIFEST = "manifest.jsonl"


@dataclass
class FileCheck:
    path: Path  # absolute or as found under the data folder
    rel: str  # relative to the data folder, '/' separators
    label: str
    ok: bool
    reason: str = ""
    detail: str = ""
    sha256: str = ""
    format: str = ""
    width: int = 0
    height: int = 0


@dataclass
class CleanReport:
    data: Path
    quarantine: Path
    kept: int = 0
    rejected: list[dict] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    dry_run: bool = False

    def to_json(self) -> dict:
        return {"data": str(self.data), "quarantine": str(self.quarantine), "dry_run": self.dry_run,
                "kept": self.kept, "rejected": self.rejected, "by_reason": self.by_reason,
                "by_class": self.by_class}


def default_quarantine(data: str | os.PathLike) -> Path:
    """``DATA/../DATA.quarantine``: beside the data, so that it is never listed as a class."""
    d = Path(data).resolve()
    return d.parent / f"{d.name}.quarantine"


def check_file(path: Path, rel: str, label: str, min_side: int = MIN_SIDE,
               allowed_formats: Sequence[str] = images.ALLOWED_FORMATS,
               max_pixels: int = images.MAX_PIXELS) -> FileCheck:
    """Judge one file by its content."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return FileCheck(path, rel, label, False, "unreadable", f"cannot read file ({e.strerror or e})")
    digest = hashlib.sha256(data).hexdigest()
    try:
        _, info = images.decode(data, "RGB", allowed_formats=tuple(allowed_formats), max_pixels=max_pixels)
    except images.ImageError as e:
        return FileCheck(path, rel, label, False, e.reason, e.detail, digest)
    fc = FileCheck(path, rel, label, True, sha256=digest, format=info.format, width=info.width,
                   height=info.height)
    if min(info.width, info.height) < min_side:
        fc.ok, fc.reason = False, "too_small"
        fc.detail = f"{info.width}x{info.height} px, shortest side under {min_side} px"
    return fc


def scan(data: str | os.PathLike, classes: Sequence[str] | None = None, min_side: int = MIN_SIDE,
         workers: int | None = None) -> list[FileCheck]:
    """Check every file under each class folder (in parallel; Pillow decodes without the GIL)."""
    root = Path(data)
    names = list_classes(root, classes, min_classes=1)
    todo = [(p, p.relative_to(root).as_posix(), c) for c in names for p in images.iter_files(root / c)]
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        checks = list(pool.map(lambda t: check_file(*t, min_side=min_side), todo))
    mark_duplicates(checks)
    return checks


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")


def mark_duplicates(checks: Iterable[FileCheck]) -> None:
    """Byte-identical files: keep the oldest (mtime, then path) in a class, as copies are made later;
    the same content under two labels rejects every copy."""
    groups: dict[str, list[FileCheck]] = defaultdict(list)
    for c in checks:
        if c.ok:
            groups[c.sha256].append(c)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda c: (_mtime(c.path), c.rel))
        labels = sorted({m.label for m in members})
        if len(labels) > 1:
            for m in members:
                m.ok, m.reason = False, "label_conflict"
                m.detail = f"same content in classes {', '.join(labels)}: " + ", ".join(x.rel for x in members)
        else:
            for m in members[1:]:
                m.ok, m.reason, m.detail = False, "duplicate", f"same content as {members[0].rel}"


def _append_manifest(qdir: Path, entry: dict) -> None:
    with open(qdir / MANIFEST, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def quarantine_file(root: Path, qdir: Path, check: FileCheck) -> str:
    """Move one file under ``qdir`` (same relative path; a suffix if taken), recording it first."""
    dest = qdir / check.rel
    n = 1
    while dest.exists() or dest.is_symlink():
        n += 1
        dest = qdir / f"{check.rel}.{n}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    entry = {"original": check.rel, "quarantined": dest.relative_to(qdir).as_posix(), "label": check.label,
             "reason": check.reason, "detail": check.detail, "sha256": check.sha256, "time": time.time()}
    _append_manifest(qdir, entry)  # written before the move, so a crash can always be undone
    shutil.move(str(root / check.rel), str(dest))
    return entry["quarantined"]


def clean(data: str | os.PathLike, quarantine: str | os.PathLike | None = None,
          classes: Sequence[str] | None = None, min_side: int = MIN_SIDE, dry_run: bool = False,
          on_reject=None) -> CleanReport:
    """Scan ``data`` and move rejected files into the quarantine folder (nothing is deleted)."""
    root = Path(data)
    qdir = Path(quarantine) if quarantine else default_quarantine(root)
    if qdir.resolve() == root.resolve() or root.resolve() in qdir.resolve().parents:
        raise UsageError(f"{qdir}: the quarantine folder must be outside the data folder {root}")
    checks = scan(root, classes, min_side=min_side)
    report = CleanReport(root, qdir, dry_run=dry_run)
    by_class: dict[str, Counter] = defaultdict(Counter)
    if not dry_run and any(not c.ok for c in checks):
        qdir.mkdir(parents=True, exist_ok=True)
    for c in checks:
        if c.ok:
            report.kept += 1
            by_class[c.label]["kept"] += 1
            continue
        by_class[c.label][c.reason] += 1
        entry = {"path": c.rel, "reason": c.reason, "detail": c.detail, "label": c.label}
        if not dry_run:
            try:
                entry["quarantined"] = quarantine_file(root, qdir, c)
            except OSError as e:
                entry["error"] = f"could not move to quarantine ({e.strerror or e}); left in place"
        report.rejected.append(entry)
        if on_reject:
            on_reject(entry)
    report.by_reason = dict(sorted(Counter(e["reason"] for e in report.rejected).items()))
    report.by_class = {k: dict(v) for k, v in sorted(by_class.items())}
    return report


def read_quarantine(qdir: str | os.PathLike) -> list[dict]:
    p = Path(qdir) / MANIFEST
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                print(f"warning: {p}: skipping a damaged manifest line", file=sys.stderr)
    return out


def restore(data: str | os.PathLike, quarantine: str | os.PathLike | None = None) -> dict:
    """Move every quarantined file back to where it was. Files whose original place is taken stay in
    quarantine and are reported. Returns {"restored": [...], "kept_in_quarantine": [...]}."""
    root = Path(data)
    qdir = Path(quarantine) if quarantine else default_quarantine(root)
    entries = read_quarantine(qdir)
    if not entries:
        raise HappysadError(f"{qdir}: no quarantine manifest here, nothing to restore")
    restored, remaining, problems = [], [], []
    for e in entries:
        src, dst = qdir / e["quarantined"], root / e["original"]
        if not (src.exists() or src.is_symlink()):
            if dst.exists():  # crash between manifest write and move: the file never left
                restored.append(e["original"])
            else:
                problems.append({"path": e["original"], "error": f"missing from quarantine ({src})"})
            continue
        if dst.exists() or dst.is_symlink():
            remaining.append(e)
            problems.append({"path": e["original"], "error": "original place is taken; left in quarantine"})
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        restored.append(e["original"])
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in remaining)
    from .bundle import atomic_write_bytes

    atomic_write_bytes(qdir / MANIFEST, text.encode("utf-8"))
    return {"restored": restored, "problems": problems}
