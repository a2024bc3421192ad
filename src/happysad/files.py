"""File-system helpers every stage shares: writing a file atomically, choosing a name that is not taken,
and how many threads work through a list of files."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

# The models that ship inside the package (built-in names resolve here).
BUILTIN_DIR = Path(__file__).parent / "builtin"


def _default_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes them owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, so a crash
    leaves either the old file or the new one. On failure the temporary file is removed. The new file
    keeps the mode of the one it replaces (or gets a plain open()'s mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON, written atomically."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def candidate_names(stem: str, suffix: str = "", sep: str = "-",
                    fit: Callable[[str, str], str] | None = None) -> Iterator[str]:
    """``stem + suffix``, then the same numbered from 2: ``a.jpg``, ``a-2.jpg``, ``a-3.jpg``, ...
    ``fit(stem, ending)`` joins the two (e.g. shortening a stem so the name fits the file system)."""
    join = fit or (lambda s, end: s + end)
    yield join(stem, suffix)
    for n in itertools.count(2):
        yield join(stem, f"{sep}{n}{suffix}")


def free_name(stem: str, suffix: str = "", sep: str = "-", *, taken: Callable[[str], bool],
              fit: Callable[[str, str], str] | None = None) -> str:
    """The first of :func:`candidate_names` that is not ``taken``."""
    return next(name for name in candidate_names(stem, suffix, sep, fit) if not taken(name))


def thread_count(per_core: int = 2, cap: int = 8) -> int:
    """Threads for a pool working through files: ``per_core`` per CPU core, at most ``cap``. Reading and
    decoding wait on the disk or release the GIL, so two per core keep the cores busy."""
    return min(cap, (os.cpu_count() or 2) * per_core)
