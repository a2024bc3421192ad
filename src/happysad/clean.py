"""Clean a folder of class folders: every file is judged by its content, and the rejects are moved to a
quarantine folder with a manifest (never deleted); ``restore`` moves them back.

Checks per file (reason codes): empty, unreadable, not_image, format_not_allowed, too_many_pixels,
corrupt (via ``images.decode``), too_small (shortest side under ``min_side`` pixels), too_few_bytes
(only with ``min_bytes``, the seed's rule, off by default), animated (only with ``animated="reject"``;
by default the first frame is used); and across files: duplicate (byte-identical to a kept file of the
same class), near_duplicate (perceptual hash within ``near_dup_distance`` bits of a kept file of the
same class; the largest copy is kept) and label_conflict (the same or nearly the same picture in two
classes: every copy goes, since we cannot know which label is right); and not_a_file (a FIFO, device or
socket, also behind a link: listed and moved, never opened) and too_large (over ``images.MAX_FILE_BYTES``).

Hostile folders and manifests: only one clean or restore runs on a data folder at a time (a lock on the
folder); the quarantine and report places are checked before anything moves; a move never replaces a file
and never leaves a copy in both places; restore moves only files inside the quarantine to places inside
the data folder, whatever the manifest says. File names that are not UTF-8 are kept exactly in the
manifest (``\\udcff`` escapes, which ``os.fsencode`` turns back into the original bytes) and shown with
``\\xff`` escapes everywhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from tqdm import tqdm

from . import dedup, faces as face_tools, files, images
from .places import folder_problem
from .errors import HappysadError, UsageError
from .folders import list_classes
from .images import shown
from .clean_report import write_clean_html

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
    skipped: list[dict] = field(default_factory=list)  # folders that could not be read: not checked

    @property
    def not_moved(self) -> int:
        return sum("error" in e for e in self.rejected)

    def to_json(self) -> dict:
        """For printing: names that are not UTF-8 are shown with ``\\xff`` escapes (``rejected`` itself
        keeps the exact names, to open the files with)."""
        out = {"data": shown(self.data), "quarantine": shown(self.quarantine), "dry_run": self.dry_run,
               "kept": self.kept, "rejected": [_shown_entry(e) for e in self.rejected],
               "not_moved": self.not_moved,
               "by_reason": self.by_reason, "by_class": self.by_class, "report_html": self.html,
               "skipped": [_shown_entry(s) for s in self.skipped]}
        if self.faces is not None:
            out["faces"] = self.faces
        return out


def _shown_entry(e: dict) -> dict:
    return {k: shown(v) if k in ("path", "quarantined", "label") and isinstance(v, str) else v
            for k, v in e.items()}


def default_faces_folder(data: str | os.PathLike) -> Path:
    """``DATA/../DATA.faces``: where ``clean --faces`` writes the face crops."""
    d = Path(data).resolve()
    return d.parent / f"{d.name}.faces"


def mark_no_face(checks: Sequence[FileCheck], progress: bool | None = None) -> dict[str, list]:
    """Run the face detector on every kept file; those without a face get reason ``no_face``. Returns
    relative path -> faces for the files that have some."""
    todo = [c for c in checks if c.ok]
    bar = _progress(len(todo), "finding faces", progress)
    found = face_tools.find_faces_in_files([c.path for c in todo],
                                      progress=(lambda _: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    detections = {}
    for c, (_, fs) in zip(todo, found):
        if fs:
            detections[c.rel] = fs
        else:
            c.ok, c.reason = False, "no_face"
            c.detail = (f"no face found (BlazeFace, score >= {face_tools.MIN_SCORE}, "
                        f"box >= {face_tools.MIN_FACE} px)")
    return detections


def default_quarantine(data: str | os.PathLike) -> Path:
    """``DATA/../DATA.quarantine``: beside the data, so that it is never listed as a class."""
    d = Path(data).resolve()
    return d.parent / f"{d.name}.quarantine"


def check_file(path: Path, rel: str, label: str, min_side: int = MIN_SIDE, min_bytes: int = MIN_BYTES,
               allowed_formats: Sequence[str] = images.ALLOWED_FORMATS, max_pixels: int = images.MAX_PIXELS,
               animated: str = ANIMATED, want_phash: bool = True) -> FileCheck:
    """Judge one file by its content (and compute its hashes)."""
    # Pipes and devices are refused by a stat, before any open (opening a FIFO blocks), and the size is
    # bounded. Path.read_bytes rather than images.read_file (which also opens non-blocking and bounds the
    # read) because tests/test_clean_corpus.py simulates an unreadable file by patching read_bytes.
    problem = images.regular_file_problem(path)
    if problem:
        return FileCheck(path, rel, label, False, *problem)
    try:
        size = path.stat().st_size
        if size > images.MAX_FILE_BYTES:
            return FileCheck(path, rel, label, False, "too_large", f"{size:,} bytes is over the limit of "
                             f"{images.MAX_FILE_BYTES:,} bytes for an image file")
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
        fc.phash = dedup.phash(img)
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
         progress: bool | None = None, skipped: list[dict] | None = None) -> list[FileCheck]:
    """Check every file under each class folder in parallel, then mark duplicates across files.

    FIFOs, devices and sockets come back as ``not_a_file`` without being opened; folders that cannot be
    read are added to ``skipped`` (``{"path", "reason", "detail", "label"}``, path relative to ``data``
    ending in ``/``)."""
    root = Path(data)
    if animated not in ("first", "reject"):
        raise UsageError(f"--animated must be 'first' or 'reject', not {animated!r}")
    names = list_classes(root, classes, min_classes=1)
    todo, not_files = [], []
    for c in names:
        def on_skip(p: Path, reason: str, detail: str, c=c):
            rel = _rel(p, root)
            if reason == "not_a_file":
                not_files.append(FileCheck(p, rel, c, False, reason, detail))
            elif skipped is not None:
                skipped.append({"path": rel + "/", "reason": reason, "detail": detail, "label": c})

        todo += [(p, _rel(p, root), c) for p in images.iter_files(root / c, on_skip=on_skip)]
    workers = workers or files.thread_count()
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
    order = {c: i for i, c in enumerate(names)}  # each class's pipes and devices after its files
    return sorted(checks + not_files, key=lambda c: order[c.label])


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def _progress(total: int, desc: str, show: bool | None):
    if show is None:
        show = sys.stderr.isatty() and os.environ.get("HAPPYSAD_NO_PROGRESS", "") in ("", "0")
    if not show:
        return None
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


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
        for c, g in zip(ok, dedup.near_duplicate_groups([c.phash for c in ok], near_dup_distance)):
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
                m.detail = f"same picture in classes {', '.join(map(shown, labels))}: " + _some(members)
            continue
        keep = members[0]
        for m in members[1:]:
            if m.sha256 == keep.sha256:
                m.ok, m.reason, m.detail = False, "duplicate", f"same content as {shown(keep.rel)}"
            else:
                m.ok, m.reason = False, "near_duplicate"
                m.detail = f"looks the same as {shown(keep.rel)} (pHash distance {dedup.hamming(m.phash, keep.phash)})"


def _some(members: Sequence[FileCheck], n: int = 5) -> str:
    """The first few paths of a group (a huge group must not make every detail string huge)."""
    names = ", ".join(shown(m.rel) for m in members[:n])
    return names + (f" and {len(members) - n} more" if len(members) > n else "")


def _manifest_line(entry: dict) -> str:
    # ensure_ascii: a name that is not UTF-8 is held as surrogates; they are written as \udcff escapes,
    # which json.loads reads back into the same str and os.fsencode into the original bytes.
    return json.dumps(entry, ensure_ascii=True) + "\n"


def _append_manifest(qdir: Path, entry: dict) -> int:
    """Append one line (flushed to disk) and return the manifest's size before it, to undo it with."""
    with open(qdir / MANIFEST, "a", encoding="ascii") as f:
        before = os.fstat(f.fileno()).st_size
        f.write(_manifest_line(entry))
        f.flush()
        os.fsync(f.fileno())
    return before


def _read_manifest_lines(qdir: Path) -> list[str]:
    p = Path(qdir) / MANIFEST
    if not p.is_file():
        return []
    # surrogateescape: an old manifest written by hand may hold any bytes; they are written back as read
    return p.read_text(encoding="utf-8", errors="surrogateescape").splitlines()


def _write_manifest_lines(qdir: Path, lines: Sequence[str]) -> None:
    """Replace the manifest in one rename (flushed first): a crash leaves the old one or the new one."""
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape")
    files.atomic_write_bytes(Path(qdir) / MANIFEST, data)


def _entry_problem(e) -> str | None:
    """Why a manifest line cannot be trusted to name a file, or None. Paths must be relative and stay in
    their folder: the manifest is a file anyone with write access to the quarantine can edit."""
    if not isinstance(e, dict):
        return "not a manifest entry"
    for key in ("original", "quarantined"):
        v = e.get(key)
        if not isinstance(v, str) or not v.strip():
            return f'no "{key}" path'
        parts = v.replace(os.sep, "/").split("/")  # on POSIX a backslash is part of a name
        if v.startswith("/") or os.path.isabs(v) or Path(v).drive or any(p in ("..", ".") for p in parts):
            return f'"{key}" path {shown(v)!r} leaves its folder'
        if "\x00" in v:
            return f'"{key}" path holds a NUL character'
    return None


def _inside(path: Path, top: Path) -> bool:
    return path == top or top in path.parents


def _existing_real(path: Path) -> Path:
    """The real path of ``path``'s deepest existing ancestor (links resolved), where new folders would be
    made."""
    p = path
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    return p.resolve()


def _copy_then_remove(src: Path, dst: Path) -> None:
    """A move across file systems. The copy is removed again when the original cannot be (a read-only
    folder), so a file is never reported moved while it is in both places."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        try:
            with open(src, "rb") as fi, open(dst, "xb") as fo:  # "x": never replaces a file
                shutil.copyfileobj(fi, fo, 1 << 20)
                fo.flush()
                os.fsync(fo.fileno())
            shutil.copystat(src, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(dst)
            raise
    else:
        raise OSError(errno.EXDEV, "a pipe or device cannot be moved to another file system")
    try:
        os.unlink(src)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(dst)
        raise


def _move(src: Path, dst: Path, *, no_replace: bool = False) -> None:
    """Move one directory entry (a link moves as a link; nothing is opened) unless ``dst`` exists.

    ``no_replace``: hard-link then unlink, so that even a file that appears at ``dst`` meanwhile is never
    replaced (a crash in between leaves two names for one file; restore recognises that). Otherwise one
    rename, so that a crash leaves the file in exactly one place."""
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "already exists", os.fsdecode(dst))
    if no_replace:
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileExistsError:
            raise
        except (OSError, NotImplementedError):
            pass  # no hard links here (other file system, FAT, ...): a checked rename below
        else:
            try:
                os.unlink(src)
            except OSError:
                os.unlink(dst)
                raise
            return
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_then_remove(src, dst)


def quarantine_file(root: Path, qdir: Path, check: FileCheck, taken: set[str] | None = None) -> str:
    """Move one file under ``qdir`` (same relative path; a suffix if taken), recording it first. If the
    move fails, its manifest line is taken back, so a file that stayed is not listed as quarantined.
    ``taken``: quarantined names already in the manifest (also those whose file is gone)."""
    taken = taken if taken is not None else set()
    qrel = files.free_name(check.rel, sep=".", taken=lambda q: q in taken or os.path.lexists(qdir / q))
    dest = qdir / qrel
    if not _inside(_existing_real(dest.parent), qdir.resolve()):  # a link planted inside the quarantine
        raise OSError(errno.EXDEV, f"{shown(dest.parent)} leads out of the quarantine folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    entry = {"original": check.rel, "quarantined": qrel, "label": check.label,
             "reason": check.reason, "detail": check.detail, "sha256": check.sha256,
             "phash": f"{check.phash:016x}" if check.phash is not None else None, "time": time.time()}
    before = _append_manifest(qdir, entry)  # written before the move, so a crash can always be undone
    try:
        _move(root / check.rel, dest)
    except OSError:
        with contextlib.suppress(OSError):
            os.truncate(qdir / MANIFEST, before)
        raise
    taken.add(qrel)
    return qrel


@contextlib.contextmanager
def lock_data_folder(data: str | os.PathLike):
    """Only one clean or restore at a time on a data folder: two runs moving the same files report each
    other's moves as failures and write every line twice. The lock is on the data folder itself (no lock
    file is left behind) and the system drops it when the process ends, even on kill -9."""
    if fcntl is None:  # Windows: no advisory locks here
        yield
        return
    try:
        fd = os.open(data, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise HappysadError(f"{shown(data)}: cannot open the data folder ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HappysadError(f"another clean is running on {shown(data)}; wait for it to finish, "
                                "then run again") from None
        except OSError:
            pass  # a file system without locks (some network mounts): run unlocked, as before
        yield
    finally:
        os.close(fd)


def _check_writable(qdir: Path, report_html: Path | None, dry_run: bool) -> None:
    """Fail before anything is scanned or moved when the quarantine or the report cannot be written."""
    if not dry_run:
        why = folder_problem(qdir)
        if why is None and (qdir / MANIFEST).exists() and (
                not (qdir / MANIFEST).is_file() or not os.access(qdir / MANIFEST, os.W_OK)):
            why = f"{shown(qdir / MANIFEST)} cannot be written"
        if why:
            raise HappysadError(f"{shown(qdir)}: cannot quarantine there: {why}; pass --quarantine DIR with "
                                "a folder you can write, or --dry-run to only look")
    if report_html is not None:
        why = f"{shown(report_html)} is a folder" if report_html.is_dir() else folder_problem(report_html.parent)
        if why:
            raise HappysadError(f"{shown(report_html)}: cannot write the report there: {why}; pass --report "
                                "with a file in a folder you can write")


def _check_sources_writable(root: Path, checks: Sequence[FileCheck]) -> None:
    """A reject can only leave a folder we may write: refuse before moving anything rather than move some
    and report the rest."""
    per_folder = Counter((root / c.rel).parent for c in checks if not c.ok)
    stuck = [(d, n) for d, n in per_folder.items() if not os.access(d, os.W_OK | os.X_OK)]
    if stuck:
        d, n = stuck[0]
        more = f" (and {len(stuck) - 1} more folder(s))" if len(stuck) > 1 else ""
        raise HappysadError(f"{shown(d)}: folder is read-only, so its {n} reject(s) cannot be moved to the "
                            f"quarantine{more}; nothing was moved (make it writable, or use --dry-run "
                            "--report FILE to only look)")


def _prune_manifest(root: Path, qdir: Path) -> set[str]:
    """Drop lines of files that never left (a crash between writing the line and the move, or a file put
    back by hand), so a run does not list a file twice; return the quarantined names still listed."""
    lines = _read_manifest_lines(qdir)
    keep, names = [], set()
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            keep.append(line)
            continue
        if _entry_problem(e) is None:
            if not os.path.lexists(qdir / e["quarantined"]) and os.path.lexists(root / e["original"]):
                continue
            names.add(e["quarantined"])
        keep.append(line)
    # A line cut short by a crash would swallow the next one appended: end it first.
    if len(keep) != len(lines) or (lines and not (qdir / MANIFEST).read_bytes().endswith(b"\n")):
        _write_manifest_lines(qdir, keep)
    return names


def _write_html(report: CleanReport, out: Path) -> str:
    """The HTML report, from a copy that names files for showing and points at each file's exact place
    (clean_report opens ``quarantine / quarantined``; an absolute path there wins). Pipes and devices get
    no card: reading one for a preview would block."""
    shown_rejects = [{**_shown_entry(e), "quarantined": os.path.abspath(
                         report.quarantine / e["quarantined"] if e.get("quarantined") else report.data / e["path"])}
                     for e in report.rejected if e["reason"] != "not_a_file"]
    view = dataclasses.replace(report, data=Path(shown(report.data)), quarantine=Path(shown(report.quarantine)),
                               rejected=shown_rejects)
    return shown(write_clean_html(view, out))


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

    Folders that cannot be read are warned about on stderr (and listed in ``skipped``); a reject that
    cannot be moved stays in place with an ``error``. Only one clean runs on a data folder at a time.
    """
    root = Path(data)
    qdir = Path(quarantine) if quarantine else default_quarantine(root)
    if qdir.resolve() == root.resolve() or root.resolve() in qdir.resolve().parents:
        raise UsageError(f"{shown(qdir)}: the quarantine folder must be outside the data folder {shown(root)}")
    allowed = tuple(f.upper() for f in allowed_formats)
    unknown = [f for f in allowed if f not in images.ALLOWED_FORMATS]
    if unknown:
        raise UsageError(f"--formats: unknown format(s) {', '.join(unknown)} "
                         f"(known: {', '.join(images.ALLOWED_FORMATS)})")
    if not root.is_dir():
        raise HappysadError(f"{shown(root)}: not a folder (give a folder of class folders)")
    _check_writable(qdir, Path(report_html) if report_html else None, dry_run)
    with (contextlib.nullcontext() if dry_run else lock_data_folder(root)):
        return _clean_locked(root, qdir, classes, min_side, dry_run, on_reject, min_bytes, allowed, max_pixels,
                             animated, near_dup_distance, report_html, progress, faces, faces_out)


def _clean_locked(root, qdir, classes, min_side, dry_run, on_reject, min_bytes, allowed, max_pixels, animated,
                  near_dup_distance, report_html, progress, faces, faces_out) -> CleanReport:
    skipped: list[dict] = []
    checks = scan(root, classes, min_side=min_side, min_bytes=min_bytes, allowed_formats=allowed,
                  max_pixels=max_pixels, animated=animated, near_dup_distance=near_dup_distance,
                  progress=progress, skipped=skipped)
    for s in skipped:
        print(f"warning: {shown(s['path'])}: {s['detail']}", file=sys.stderr)
    detections = mark_no_face(checks, progress) if faces else None
    report = CleanReport(root, qdir, dry_run=dry_run, skipped=skipped)
    by_class: dict[str, Counter] = defaultdict(Counter)
    taken: set[str] = set()
    if not dry_run and any(not c.ok for c in checks):
        _check_sources_writable(root, checks)
        qdir.mkdir(parents=True, exist_ok=True)
        taken = _prune_manifest(root, qdir)
    for c in checks:
        if c.ok:
            report.kept += 1
            by_class[c.label]["kept"] += 1
            continue
        by_class[c.label][c.reason] += 1
        entry = {"path": c.rel, "reason": c.reason, "detail": c.detail, "label": c.label}
        if not dry_run:
            try:
                entry["quarantined"] = quarantine_file(root, qdir, c, taken)
            except OSError as e:
                entry["error"] = f"could not move to quarantine ({e.strerror or e}); left in place"
        report.rejected.append(entry)
        if on_reject:
            on_reject(_shown_entry(entry))  # it prints: a name that is not UTF-8 must not break the output
    if faces:
        fdir = Path(faces_out) if faces_out else default_faces_folder(root)
        report.faces = {"faces_folder": str(fdir), "images_with_faces": len(detections),
                        "faces": sum(len(v) for v in detections.values())}
        if not dry_run:
            kept = [(c.rel, c.label) for c in checks if c.ok]
            report.faces = face_tools.build_face_dataset(root, fdir, kept, detections=detections).to_json()
    report.by_reason = dict(sorted(Counter(e["reason"] for e in report.rejected).items()))
    report.by_class = {shown(k): dict(v) for k, v in sorted(by_class.items())}
    out = Path(report_html) if report_html else (None if dry_run or not report.rejected else qdir / REPORT)
    if out is not None:
        try:
            report.html = _write_html(report, out)
        except OSError as e:  # the moves are done and recorded: say so instead of a traceback
            print(f"warning: {shown(out)}: could not write the report ({e.strerror or e})", file=sys.stderr)
    return report


def read_quarantine(qdir: str | os.PathLike) -> list[dict]:
    p = Path(qdir) / MANIFEST
    out = []
    for line in _read_manifest_lines(Path(qdir)):
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                print(f"warning: {shown(p)}: skipping a damaged manifest line", file=sys.stderr)
    return out


def _class_roots(root: Path) -> list[Path]:
    """The data folder's real path and those of its class folders (a class folder may be a link to
    where the pictures really are): restore puts files only below these."""
    tops = [root.resolve()]
    with contextlib.suppress(OSError):
        tops += [p.resolve() for p in root.iterdir() if p.is_dir()]
    return tops


def restore(data: str | os.PathLike, quarantine: str | os.PathLike | None = None, dry_run: bool = False) -> dict:
    """Move every quarantined file back to where it was. Files whose original place is taken stay in
    quarantine and are reported. Returns {"restored": [...], "problems": [...], "dry_run": ...}.

    The manifest is not trusted: a line is only followed from inside the quarantine folder to inside the
    data folder (links resolved); a folder is never moved and an existing file never replaced. Lines
    that are refused or fail stay in the manifest, which is rewritten atomically even when a restore
    stops half-way. ``dry_run`` reports what would move and moves nothing."""
    root = Path(data)
    qdir = Path(quarantine) if quarantine else default_quarantine(root)
    manifest = qdir / MANIFEST
    if not root.is_dir():
        raise HappysadError(f"{shown(root)}: not a folder; give the data folder that was cleaned")
    if not manifest.is_file():
        raise HappysadError(f"{shown(qdir)}: no quarantine manifest here, nothing to restore")
    with (contextlib.nullcontext() if dry_run else lock_data_folder(root)):
        return _restore_locked(root, qdir, dry_run)


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _restore_locked(root: Path, qdir: Path, dry_run: bool) -> dict:
    manifest = qdir / MANIFEST
    try:
        lines = _read_manifest_lines(qdir)
    except OSError as e:
        raise HappysadError(f"{shown(manifest)}: cannot read the manifest ({e.strerror or e})") from None
    if not any(line.strip() for line in lines):
        raise HappysadError(f"{shown(qdir)}: the quarantine manifest is empty, nothing to restore")
    why = None if dry_run else folder_problem(qdir)
    if why:
        raise HappysadError(f"{shown(qdir)}: cannot restore from there: {why} (the manifest is rewritten "
                            "as files move back); make it writable and run again")
    qreal, tops = qdir.resolve(), _class_roots(root)
    restored, problems, keep = [], [], []

    def refuse(n: int, line: str, e, error: str):
        name = shown(e["original"]) if isinstance(e, dict) and isinstance(e.get("original"), str) else None
        problems.append({"path": name or f"{shown(manifest)} line {n}", "line": n, "error": error})
        keep.append(line)  # the file stays where it is, so its line stays too

    i = 0
    try:
        for i, line in enumerate(lines):
            n = i + 1
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError:  # a line cut short by a crash: its move never started
                print(f"warning: {shown(manifest)}: skipping a damaged manifest line {n}", file=sys.stderr)
                continue
            why = _entry_problem(e)
            if why:
                refuse(n, line, e, f"manifest line {n}: {why}; nothing moved")
                continue
            src, dst = qdir / e["quarantined"], root / e["original"]
            if not _inside(_existing_real(src.parent), qreal):
                refuse(n, line, e, f"manifest line {n}: {shown(src)} is outside the quarantine folder "
                       f"{shown(qdir)}; nothing moved")
                continue
            if not any(_inside(_existing_real(dst.parent), t) for t in tops):
                refuse(n, line, e, f"manifest line {n}: {shown(dst)} is outside the data folder "
                       f"{shown(root)}; nothing moved")
                continue
            if not os.path.lexists(src):
                if os.path.lexists(dst):  # crash between manifest write and move: the file never left
                    restored.append(shown(e["original"]))
                else:
                    problems.append({"path": shown(e["original"]), "line": n,
                                     "error": f"missing from quarantine ({shown(src)})"})
                continue
            if stat.S_ISDIR(os.lstat(src).st_mode):
                refuse(n, line, e, f"manifest line {n}: {shown(src)} is a folder, and only files are "
                       "restored; nothing moved")
                continue
            if os.path.lexists(dst):
                if _same_file(src, dst):  # a restore stopped between its link and unlink
                    if not dry_run:
                        os.unlink(src)
                    restored.append(shown(e["original"]))
                    continue
                refuse(n, line, e, "original place is taken; left in quarantine")
                continue
            if dry_run:
                restored.append(shown(e["original"]))
                continue
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not any(_inside(dst.parent.resolve(), t) for t in tops):  # changed under our feet
                    raise OSError(errno.EXDEV, "its folder now leads outside the data folder")
                _move(src, dst, no_replace=True)
            except OSError as ex:
                refuse(n, line, e, f"could not move back ({ex.strerror or ex}); left in quarantine")
                continue
            restored.append(shown(e["original"]))
        i = len(lines)
    finally:
        # Also after an unexpected error: the line being handled and those after it stay listed.
        if not dry_run:
            _write_manifest_lines(qdir, keep + lines[i:])
    return {"restored": restored, "problems": problems, "dry_run": dry_run}
