"""Clean a folder of class folders: every file is judged by its content, and the rejects are moved to a
quarantine folder with a manifest (never deleted); ``restore`` moves them back.

Checks per file (reason codes): empty, unreadable, not_image, format_not_allowed, too_many_pixels,
corrupt (via ``images.decode``), too_small (shortest side under ``min_side`` pixels), too_few_bytes
(only with ``min_bytes``, the seed's rule, off by default), animated (only with ``animated="reject"``;
by default the first frame is used); and across files: duplicate (byte-identical to a kept file of the
same class), near_duplicate (perceptual hash within ``near_dup_distance`` bits of a kept file of the
same class; the largest copy is kept) and label_conflict (the same or nearly the same picture in two
classes: every copy goes, since we cannot know which label is right).
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
MIN_BYTES = 0  # the seed dropped files under 10 KB; by pixels is the better rule, so this is off
NEAR_DUP_DISTANCE = 4  # bits of a 64-bit pHash; 0 turns near-duplicate detection off
ANIMATED = "first"  # or "reject"
MANIFEST = "manifest.jsonl"
REPORT = "report.html"


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
    phash: int | None = None
    frames: int = 1


@dataclass
class CleanReport:
    data: Path
    quarantine: Path
    kept: int = 0
    rejected: list[dict] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    dry_run: bool = False
    html: str | None = None
    faces: dict | None = None  # with faces=True: the face folder written and its counts

    def to_json(self) -> dict:
        out = {"data": str(self.data), "quarantine": str(self.quarantine), "dry_run": self.dry_run,
               "kept": self.kept, "rejected": self.rejected, "by_reason": self.by_reason,
               "by_class": self.by_class, "report_html": self.html}
        if self.faces is not None:
            out["faces"] = self.faces
        return out


def default_faces_folder(data: str | os.PathLike) -> Path:
    """``DATA/../DATA.faces``: where ``clean --faces`` writes the face crops."""
    d = Path(data).resolve()
    return d.parent / f"{d.name}.faces"


def mark_no_face(checks: Sequence[FileCheck], progress: bool | None = None) -> dict[str, list]:
    """Run the face detector on every kept file; those without a face get reason ``no_face``. Returns
    relative path -> faces for the files that have some."""
    from . import faces

    todo = [c for c in checks if c.ok]
    bar = _progress(len(todo), "finding faces", progress)
    found = faces.find_faces_in_files([c.path for c in todo],
                                      progress=(lambda _: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    detections = {}
    for c, (_, fs) in zip(todo, found):
        if fs:
            detections[c.rel] = fs
        else:
            c.ok, c.reason = False, "no_face"
            c.detail = (f"no face found (BlazeFace, score >= {faces.MIN_SCORE}, "
                        f"box >= {faces.MIN_FACE} px)")
    return detections


def default_quarantine(data: str | os.PathLike) -> Path:
    """``DATA/../DATA.quarantine``: beside the data, so that it is never listed as a class."""
    d = Path(data).resolve()
    return d.parent / f"{d.name}.quarantine"


def check_file(path: Path, rel: str, label: str, min_side: int = MIN_SIDE, min_bytes: int = MIN_BYTES,
               allowed_formats: Sequence[str] = images.ALLOWED_FORMATS, max_pixels: int = images.MAX_PIXELS,
               animated: str = ANIMATED, want_phash: bool = True) -> FileCheck:
    """Judge one file by its content (and compute its hashes)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return FileCheck(path, rel, label, False, "unreadable", f"cannot read file ({e.strerror or e})")
    digest = hashlib.sha256(data).hexdigest()
    try:
        img, info = images.decode(data, "RGB", allowed_formats=tuple(allowed_formats), max_pixels=max_pixels)
    except images.ImageError as e:
        return FileCheck(path, rel, label, False, e.reason, e.detail, digest)
    fc = FileCheck(path, rel, label, True, sha256=digest, format=info.format, width=info.width,
                   height=info.height, frames=info.frames)
    if want_phash:
        import imagehash

        fc.phash = int(str(imagehash.phash(img)), 16)
    if min(info.width, info.height) < min_side:
        fc.ok, fc.reason = False, "too_small"
        fc.detail = f"{info.width}x{info.height} px, shortest side under {min_side} px"
    elif min_bytes and len(data) < min_bytes:
        fc.ok, fc.reason, fc.detail = False, "too_few_bytes", f"{len(data):,} bytes, under --min-bytes {min_bytes:,}"
    elif info.frames > 1 and animated == "reject":
        fc.ok, fc.reason, fc.detail = False, "animated", f"animated {info.format} with {info.frames} frames"
    return fc


def scan(data: str | os.PathLike, classes: Sequence[str] | None = None, min_side: int = MIN_SIDE,
         min_bytes: int = MIN_BYTES, allowed_formats: Sequence[str] = images.ALLOWED_FORMATS,
         max_pixels: int = images.MAX_PIXELS, animated: str = ANIMATED,
         near_dup_distance: int = NEAR_DUP_DISTANCE, workers: int | None = None,
         progress: bool | None = None) -> list[FileCheck]:
    """Check every file under each class folder in parallel, then mark duplicates across files."""
    root = Path(data)
    if animated not in ("first", "reject"):
        raise UsageError(f"--animated must be 'first' or 'reject', not {animated!r}")
    names = list_classes(root, classes, min_classes=1)
    todo = [(p, p.relative_to(root).as_posix(), c) for c in names for p in images.iter_files(root / c)]
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    opts = dict(min_side=min_side, min_bytes=min_bytes, allowed_formats=tuple(allowed_formats),
                max_pixels=max_pixels, animated=animated, want_phash=near_dup_distance > 0)
    bar = _progress(len(todo), "checking", progress)
    with ThreadPoolExecutor(workers) as pool:
        checks = []
        for c in pool.map(lambda t: check_file(*t, **opts), todo, chunksize=64):
            checks.append(c)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    mark_duplicates(checks, near_dup_distance)
    return checks


def _progress(total: int, desc: str, show: bool | None):
    if show is None:
        show = sys.stderr.isatty() and os.environ.get("HAPPYSAD_NO_PROGRESS", "") in ("", "0")
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


def near_duplicate_groups(hashes: Sequence[int], max_distance: int) -> list[int]:
    """Group index per item: items whose 64-bit perceptual hashes differ in at most ``max_distance``
    bits are joined (transitively, union-find)."""
    import numpy as np

    h = np.array([x & 0xFFFFFFFFFFFFFFFF for x in hashes], dtype=np.uint64)
    parent = list(range(len(h)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(h) - 1):
        close = np.nonzero(np.bitwise_count(h[i + 1:] ^ h[i]) <= max_distance)[0]
        for j in close:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[b] = a
    return [find(i) for i in range(len(h))]


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")


def mark_duplicates(checks: Iterable[FileCheck], near_dup_distance: int = 0) -> None:
    """Exact copies (same sha256) and, with ``near_dup_distance``, near copies (pHash) among the files
    that passed: within a class keep one (the largest picture, then the oldest file, then by path); the
    same picture under two labels rejects every copy."""
    ok = [c for c in checks if c.ok]
    groups: dict[object, list[FileCheck]] = defaultdict(list)
    if near_dup_distance > 0 and all(c.phash is not None for c in ok):
        # identical bytes decode to identical pixels, so exact copies always share a pHash group
        for c, g in zip(ok, near_duplicate_groups([c.phash for c in ok], near_dup_distance)):
            groups[g].append(c)
    else:
        for c in ok:
            groups[c.sha256].append(c)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda c: (-(c.width * c.height), _mtime(c.path), c.rel))
        labels = sorted({m.label for m in members})
        if len(labels) > 1:
            for m in members:
                m.ok, m.reason = False, "label_conflict"
                m.detail = f"same picture in classes {', '.join(labels)}: " + _some(members)
            continue
        keep = members[0]
        for m in members[1:]:
            if m.sha256 == keep.sha256:
                m.ok, m.reason, m.detail = False, "duplicate", f"same content as {keep.rel}"
            else:
                m.ok, m.reason = False, "near_duplicate"
                m.detail = f"looks the same as {keep.rel} (pHash distance {_hamming(m.phash, keep.phash)})"


def _some(members: Sequence[FileCheck], n: int = 5) -> str:
    """The first few paths of a group (a huge group must not make every detail string huge)."""
    names = ", ".join(m.rel for m in members[:n])
    return names + (f" and {len(members) - n} more" if len(members) > n else "")


def _hamming(a: int | None, b: int | None) -> int:
    return bin((a or 0) ^ (b or 0)).count("1")


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
             "reason": check.reason, "detail": check.detail, "sha256": check.sha256,
             "phash": f"{check.phash:016x}" if check.phash is not None else None, "time": time.time()}
    _append_manifest(qdir, entry)  # written before the move, so a crash can always be undone
    shutil.move(str(root / check.rel), str(dest))
    return entry["quarantined"]


def clean(data: str | os.PathLike, quarantine: str | os.PathLike | None = None,
          classes: Sequence[str] | None = None, min_side: int = MIN_SIDE, dry_run: bool = False,
          on_reject=None, *, min_bytes: int = MIN_BYTES, allowed_formats: Sequence[str] = images.ALLOWED_FORMATS,
          max_pixels: int = images.MAX_PIXELS, animated: str = ANIMATED,
          near_dup_distance: int = NEAR_DUP_DISTANCE, report_html: str | os.PathLike | None = None,
          progress: bool | None = None, faces: bool = False,
          faces_out: str | os.PathLike | None = None) -> CleanReport:
    """Scan ``data`` and move rejected files into the quarantine folder (nothing is deleted).

    Writes ``QUARANTINE/report.html`` (thumbnails of every reject and why) unless ``dry_run``; with
    ``report_html`` the report goes there instead (also in a dry run).

    ``faces=True`` also quarantines photos without a face (reason ``no_face``) and, unless ``dry_run``,
    writes every face of the kept photos to ``faces_out`` (default ``DATA/../DATA.faces``) as a new
    folder of class folders ready for ``happysad train``.
    """
    root = Path(data)
    qdir = Path(quarantine) if quarantine else default_quarantine(root)
    if qdir.resolve() == root.resolve() or root.resolve() in qdir.resolve().parents:
        raise UsageError(f"{qdir}: the quarantine folder must be outside the data folder {root}")
    allowed = tuple(f.upper() for f in allowed_formats)
    unknown = [f for f in allowed if f not in images.ALLOWED_FORMATS]
    if unknown:
        raise UsageError(f"--formats: unknown format(s) {', '.join(unknown)} "
                         f"(known: {', '.join(images.ALLOWED_FORMATS)})")
    checks = scan(root, classes, min_side=min_side, min_bytes=min_bytes, allowed_formats=allowed,
                  max_pixels=max_pixels, animated=animated, near_dup_distance=near_dup_distance,
                  progress=progress)
    detections = mark_no_face(checks, progress) if faces else None
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
    if faces:
        fdir = Path(faces_out) if faces_out else default_faces_folder(root)
        report.faces = {"faces_folder": str(fdir), "images_with_faces": len(detections),
                        "faces": sum(len(v) for v in detections.values())}
        if not dry_run:
            from .faces import build_face_dataset

            kept = [(c.rel, c.label) for c in checks if c.ok]
            report.faces = build_face_dataset(root, fdir, kept, detections=detections).to_json()
    report.by_reason = dict(sorted(Counter(e["reason"] for e in report.rejected).items()))
    report.by_class = {k: dict(v) for k, v in sorted(by_class.items())}
    out = Path(report_html) if report_html else (None if dry_run or not report.rejected else qdir / REPORT)
    if out is not None:
        from .report import write_clean_html

        report.html = str(write_clean_html(report, out))
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
