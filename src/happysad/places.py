"""Places a command writes to, checked before its work starts: a folder that cannot be made or written, a
file where a folder is needed or a folder where a file is, is one line naming the place, why, and the
option that picks another place (never a traceback after minutes of work)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import HappysadError
from .images import shown

# The longest file name most file systems take (ext4, XFS, APFS, NTFS: 255 bytes).
NAME_MAX = 255


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written in ``folder`` (made if missing), or None."""
    p = Path(folder)
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    if not p.is_dir():
        return f"{shown(p)} is not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{shown(p)} is read-only"
    return None


def _fail(place: Path, why: str, option: str, what: str) -> HappysadError:
    return HappysadError(f"{shown(place)}: cannot write there: {why}; pass {option} with {what} you can write")


def output_folder(folder: str | os.PathLike, option: str, make: bool = True) -> Path:
    """``folder`` made (with its parents; ``make=False`` only checks), or one line naming it and ``option``."""
    p = Path(folder)
    why = folder_problem(p)
    if why is None and make:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = e.strerror or str(e)
    if why:
        raise _fail(p, why, option, "a folder")
    return p


def output_file(path: str | os.PathLike, option: str, make_folder: bool = True) -> Path:
    """A file about to be written: not a folder, its folder made (``make_folder=False`` only checks)."""
    p = Path(path)
    if len(os.fsencode(p.name)) > NAME_MAX:
        raise _fail(p, f"the file name is longer than {NAME_MAX} bytes", option, "a shorter name in a folder")
    if p.is_dir():
        raise _fail(p, f"{shown(p)} is a folder", option, "a file name in a folder")
    why = folder_problem(p.parent)
    if why is None and make_folder:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = e.strerror or str(e)
    if why:
        raise _fail(p, why, option, "a file in a folder")
    return p


def fit_name(stem: str, suffix: str, reserve: int = 0) -> str:
    """``stem + suffix`` cut to a file name the file system takes: at most NAME_MAX bytes, with ``reserve``
    bytes left for a ``-N`` that keeps names apart. Cut at a character, never inside one."""
    room = NAME_MAX - len(os.fsencode(suffix)) - reserve
    while len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return stem + suffix


def write_error(path: str | os.PathLike, e: OSError, option: str) -> HappysadError:
    """One line for a write that failed half-way (disk full, a folder made read-only meanwhile)."""
    why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return _fail(Path(path), why, option, "a place")
