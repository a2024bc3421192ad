"""Hostile and careless inputs to `clean` and to the image reader: pipes and devices, names that are not
UTF-8, crafted manifests, two runs at once, places that cannot be written. Each must give one line naming
the file and what is wrong: never a traceback, never a hang, and nothing the user owns is lost or moved
out of its folder.

Anything that could hang runs under a timeout (a subprocess with timeout=60, or SIGALRM in-process)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from happysad import clean, images
from happysad.errors import HappysadError

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
ENV = {**os.environ, "HAPPYSAD_NO_PROGRESS": "1"}


@pytest.fixture(autouse=True)
def no_hang():
    """A test that blocks (reading a FIFO) fails after 30 s instead of hanging the suite."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(*_):
        raise TimeoutError("hung: a read blocked")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _photo(path, seed: int, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _data(tmp_path: Path, n: int = 3) -> Path:
    data = tmp_path / "data"
    for k, c in enumerate(("happy", "sad")):
        (data / c).mkdir(parents=True)
        for i in range(n):
            _photo(data / c / f"{c}_{i}.png", 10 * k + i)
    return data


def _happysad(*args, timeout: int = 60) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; output kept as bytes, to check that it is valid UTF-8."""
    p = subprocess.run([sys.executable, "-m", "happysad", *map(str, args)], capture_output=True,
                       timeout=timeout, env=ENV)
    assert b"Traceback" not in p.stderr, p.stderr.decode("utf-8", "replace")
    return p


def _files(root: Path) -> dict[bytes, bytes]:
    """Every entry below root (bytes names) -> its content, or its kind for links and pipes."""
    out = {}
    for dirpath, _, names in os.walk(os.fsencode(root)):
        for n in names:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, os.fsencode(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = b"link:" + os.readlink(p)
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = b"fifo"
            else:
                with open(p, "rb") as f:
                    out[rel] = f.read()
    return out


def _manifest(q: Path) -> list[dict]:
    return [json.loads(line) for line in (q / clean.MANIFEST).read_text().splitlines() if line.strip()]


# 1. Pipes and devices are never read; oversized files are refused before they are read.

@needs_fifo
def test_pipes_and_device_links_are_reported_as_not_a_file_without_being_read(tmp_path):
    data = _data(tmp_path)
    os.mkfifo(data / "happy" / "pipe.jpg")
    (data / "sad" / "zero.jpg").symlink_to("/dev/zero")
    before = _files(data)

    p = _happysad("clean", data, "--dry-run", "--report", tmp_path / "look.html")
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "happy/pipe.jpg: not_a_file: a named pipe (FIFO)" in out
    assert "sad/zero.jpg: not_a_file: a character device" in out
    assert (tmp_path / "look.html").is_file() and _files(data) == before

    p = _happysad("clean", data)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    q = clean.default_quarantine(data)
    assert stat.S_ISFIFO(os.lstat(q / "happy" / "pipe.jpg").st_mode)  # moved as it is, never opened
    assert os.readlink(q / "sad" / "zero.jpg") == "/dev/zero"
    assert _happysad("clean", data, "--restore").returncode == 0
    assert _files(data) == before


@needs_fifo
def test_the_image_reader_refuses_pipes_devices_and_oversized_files(tmp_path, monkeypatch):
    """What predict, evaluate, serve and train open goes through images: one clear error each."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    for src in (fifo, "/dev/zero", tmp_path / "zero.jpg"):
        with pytest.raises(images.ImageError) as e:
            images.load_for_model(src, (32, 32))
        assert e.value.reason == "not_a_file" and str(src) in str(e.value)
    skipped = []
    _photo(tmp_path / "ok.png", 1)
    assert images.iter_files(tmp_path, on_skip=lambda *a: skipped.append(a)) == [tmp_path / "ok.png"]
    assert sorted((p.name, r) for p, r, _ in skipped) == [("pipe.jpg", "not_a_file"), ("zero.jpg", "not_a_file")]

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    with pytest.raises(images.ImageError) as e:
        images.decode(tmp_path / "ok.png")
    assert e.value.reason == "too_large" and "over the limit of 1,000 bytes" in str(e.value)
    data = _data(tmp_path / "d", n=1)
    rep = clean.clean(data, dry_run=True, progress=False)
    assert {e["reason"] for e in rep.rejected} == {"too_large"}


# 2. Names that are not UTF-8 round-trip, and every report of them is valid UTF-8.

def test_names_that_are_not_utf8_round_trip_through_quarantine_and_restore(tmp_path):
    data = _data(tmp_path)
    bad = os.path.join(os.fsencode(data), b"happy", b"bad\xff.jpg")
    with open(bad, "wb") as f:
        f.write(b"<html>not a picture</html>")
    before = _files(data)

    p = _happysad("clean", data, "--dry-run", "--report", tmp_path / "r.html")
    assert p.returncode == 0, p.stderr.decode()
    assert "happy/bad\\xff.jpg: not_image" in p.stdout.decode("utf-8")  # strict: fails on invalid UTF-8
    p = _happysad("clean", data, "--dry-run", "--json")
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout.decode("utf-8"))["rejected"][0]["path"] == "happy/bad\\xff.jpg"
    assert "bad\\xff.jpg" in (tmp_path / "r.html").read_text(encoding="utf-8")

    p = _happysad("clean", data, "--json")
    assert p.returncode == 0 and json.loads(p.stdout.decode("utf-8"))["not_moved"] == 0
    q = clean.default_quarantine(data)
    assert (q / clean.MANIFEST).read_bytes().isascii()
    assert [os.fsencode(e["original"]) for e in _manifest(q)] == [b"happy/bad\xff.jpg"]
    assert os.path.exists(os.path.join(os.fsencode(q), b"happy", b"bad\xff.jpg"))
    p = _happysad("clean", data, "--restore")
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert _files(data) == before  # the exact bytes name is back


# 3. Restore trusts no manifest line.

def test_restore_moves_only_from_inside_the_quarantine_to_inside_the_data(tmp_path):
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    clean.clean(data, progress=False)
    q = clean.default_quarantine(data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("mine")
    (q / "planted.jpg").write_text("planted")
    (q / "taken.jpg").write_text("quarantined copy")
    (q / "evil").symlink_to(outside)  # a link inside the quarantine that leads out
    (data / "sad" / "elsewhere").symlink_to(outside)  # a link inside the data that leads out
    crafted = [
        {"original": "happy/stolen.txt", "quarantined": "../outside/secret.txt"},
        {"original": "happy/stolen2.txt", "quarantined": str(outside / "secret.txt")},
        {"original": "../../../escaped.jpg", "quarantined": "planted.jpg"},
        {"original": "happy/via_link.txt", "quarantined": "evil/secret.txt"},
        {"original": "sad/elsewhere/dropped.jpg", "quarantined": "planted.jpg"},
        {"original": "happy/happy_0.png", "quarantined": "taken.jpg"},  # would overwrite a kept photo
        {"original": "happy/folder", "quarantined": "happy"},  # a folder, not a file
    ]
    with open(q / clean.MANIFEST, "a") as f:
        f.writelines(json.dumps(e) + "\n" for e in crafted)
    kept_photo = (data / "happy" / "happy_0.png").read_bytes()

    p = _happysad("clean", data, "--restore")
    lines = p.stdout.decode().splitlines()
    assert p.returncode == 1
    assert lines[-1] == f"restored 1 file(s), {len(crafted)} problem(s)"
    assert len(lines) == len(crafted) + 1  # one line per refused entry
    assert [line.split(": ", 1)[0] for line in lines[:-1]] == [e["original"] for e in crafted]
    why = ["leaves its folder"] * 3 + ["outside the quarantine folder", "outside the data folder",
                                       "original place is taken", "is a folder"]
    assert all(w in line for w, line in zip(why, lines)), lines
    assert (outside / "secret.txt").read_text() == "mine" and not (data / "happy" / "stolen.txt").exists()
    assert not (tmp_path.parent / "escaped.jpg").exists() and not (outside / "dropped.jpg").exists()
    assert (data / "happy" / "happy_0.png").read_bytes() == kept_photo  # never overwritten
    assert (data / "happy" / "page.jpg").read_text() == "<html></html>"  # the real reject came back
    assert [e["original"] for e in _manifest(q)] == [e["original"] for e in crafted]  # refused lines stay


def test_a_manifest_line_without_its_path_is_reported_and_the_rest_restored(tmp_path):
    data = _data(tmp_path)
    for i in range(3):
        (data / "sad" / f"page{i}.jpg").write_text(f"<html>{i}</html>")
    clean.clean(data, progress=False)
    q = clean.default_quarantine(data)
    lines = (q / clean.MANIFEST).read_text().splitlines()
    lines.insert(1, json.dumps({"original": "sad/page9.jpg", "reason": "not_image"}))  # no "quarantined"
    lines.insert(2, "[1, 2]")
    (q / clean.MANIFEST).write_text("\n".join(lines) + "\n")

    res = clean.restore(data)
    assert sorted(res["restored"]) == ["sad/page0.jpg", "sad/page1.jpg", "sad/page2.jpg"]
    assert [(p["path"], p["line"]) for p in res["problems"]] == [("sad/page9.jpg", 2),
                                                                 (f"{q / clean.MANIFEST} line 3", 3)]
    assert 'no "quarantined" path' in res["problems"][0]["error"]
    assert (q / clean.MANIFEST).read_text().splitlines() == lines[1:3]  # only what is still unrestored


# 4. A dry-run restore moves nothing.

def test_restore_dry_run_shows_what_would_move_and_moves_nothing(tmp_path):
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    clean.clean(data, progress=False)
    q = clean.default_quarantine(data)
    manifest = (q / clean.MANIFEST).read_bytes()
    res = clean.restore(data, dry_run=True)
    assert res == {"restored": ["happy/page.jpg"], "problems": [], "dry_run": True}
    assert (q / "happy" / "page.jpg").exists() and not (data / "happy" / "page.jpg").exists()
    assert (q / clean.MANIFEST).read_bytes() == manifest


# 5. Honest reports: one clean at a time, failed moves leave nothing behind, nothing listed twice.

def test_a_second_clean_on_the_same_folder_refuses_while_the_first_runs(tmp_path):
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    with clean.lock_data_folder(data):  # as a running clean holds it
        with pytest.raises(HappysadError, match="another clean is running on"):
            clean.clean(data, progress=False)
        p = _happysad("clean", data)
        assert p.returncode == 1 and p.stdout == b""
        assert p.stderr.decode().strip() == f"happysad clean: error: another clean is running on {data}; " \
                                             "wait for it to finish, then run again"
        assert clean.clean(data, dry_run=True, progress=False).rejected  # looking is still fine
    assert (data / "happy" / "page.jpg").exists() and not clean.default_quarantine(data).exists()
    assert len(clean.clean(data, progress=False).rejected) == 1  # the lock went with its holder
    with clean.lock_data_folder(data), pytest.raises(HappysadError, match="another clean is running on"):
        clean.restore(data)


def test_a_move_that_cannot_finish_leaves_no_copy_and_no_manifest_line(tmp_path, monkeypatch):
    """Quarantine on another file system (rename fails), data folder that will not let the original go:
    the copy is removed, the line taken back, the reject reported NOT moved; a second run adds nothing."""
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    real_rename, real_unlink = os.rename, os.unlink
    mine = os.fsdecode(data) + os.sep  # not data.quarantine

    def rename(src, dst, *a, **k):
        if os.fsdecode(src).startswith(mine):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *a, **k)

    def unlink(path, *a, **k):
        if os.fsdecode(path).startswith(mine):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(path, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    q = clean.default_quarantine(data)
    for _ in range(2):
        rep = clean.clean(data, progress=False)
        assert rep.not_moved == 1 and "Permission denied" in rep.rejected[0]["error"]
        assert not (q / "happy" / "page.jpg").exists() and (data / "happy" / "page.jpg").exists()
        assert (q / clean.MANIFEST).read_text() == ""


def test_a_read_only_class_folder_fails_before_anything_moves(tmp_path, monkeypatch):
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    (data / "sad" / "page.jpg").write_text("<html></html>")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != data / "sad" and real_access(p, mode, **k))
    with pytest.raises(HappysadError, match=r"sad: folder is read-only, so its 1 reject\(s\) cannot be moved"):
        clean.clean(data, progress=False)
    assert (data / "happy" / "page.jpg").exists() and not (clean.default_quarantine(data) / "happy").exists()


def test_a_line_left_by_a_crash_is_not_listed_again(tmp_path):
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    q = clean.default_quarantine(data)
    q.mkdir()
    # killed after writing the line, before the move: the file never left
    (q / clean.MANIFEST).write_text(json.dumps({"original": "happy/page.jpg", "quarantined": "happy/page.jpg"}))
    clean.clean(data, progress=False)
    assert [e["original"] for e in _manifest(q)] == ["happy/page.jpg"]
    assert clean.clean(data, progress=False).rejected == []
    assert len(_manifest(q)) == 1


def test_a_folder_that_cannot_be_read_is_reported(tmp_path, monkeypatch, capsys):
    data = _data(tmp_path)
    locked = data / "sad" / "locked"
    locked.mkdir()
    _photo(locked / "inside.png", 99)
    real_scandir = os.scandir

    def scandir(path="."):  # as chmod 000 would, also when the tests run as root
        if Path(os.fsdecode(path)) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rep = clean.clean(data, dry_run=True, progress=False)
    assert rep.to_json()["skipped"] == [{"path": "sad/locked/", "reason": "unreadable", "label": "sad",
                                         "detail": "folder cannot be read (Permission denied); "
                                                   "its files were not checked"}]
    assert "warning: sad/locked/: folder cannot be read (Permission denied)" in capsys.readouterr().err


# 6. A quarantine or report that cannot be written: one line, before anything moves.

def test_quarantine_and_report_places_that_cannot_be_written_fail_first(tmp_path):
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    before = _files(data)
    for args, what in ((["--quarantine", a_file], "cannot quarantine there"),
                       (["--quarantine", a_file / "q"], "cannot quarantine there"),
                       (["--report", a_file / "r.html"], "cannot write the report there"),
                       (["--dry-run", "--report", a_file / "r.html"], "cannot write the report there"),
                       (["--dry-run", "--report", tmp_path], "cannot write the report there")):
        p = _happysad("clean", data, *args)
        err = p.stderr.decode().strip().splitlines()
        assert p.returncode == 1 and len(err) == 1 and what in err[0] and str(args[-1]) in err[0], err
        assert p.stdout == b""
        assert _files(data) == before and not clean.default_quarantine(data).exists()


def _without_root_powers() -> list[str]:
    """A command prefix under which permissions apply: as root, drop the capabilities that let root write
    to read-only folders (setpriv); skip where that cannot be done."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search,-fowner"
    cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]
    try:
        ok = subprocess.run([*cmd, "true"], capture_output=True, timeout=30).returncode == 0
    except OSError:
        ok = False
    if not ok:
        pytest.skip("running as root and cannot drop root's powers (setpriv): read-only folders are writable")
    return cmd


def test_read_only_quarantine_or_class_folder_fails_before_anything_moves(tmp_path):
    prefix = _without_root_powers()
    data = _data(tmp_path)
    (data / "happy" / "page.jpg").write_text("<html></html>")
    (data / "sad" / "page.jpg").write_text("<html></html>")
    q = tmp_path / "q"
    q.mkdir()
    before = _files(data)

    def run(*args):
        p = subprocess.run([*prefix, sys.executable, "-m", "happysad", "clean", str(data), *map(str, args)],
                           capture_output=True, timeout=60, env=ENV)
        err = p.stderr.decode().strip().splitlines()
        assert p.returncode == 1 and p.stdout == b"" and len(err) == 1, p.stderr.decode()
        assert _files(data) == before and list(q.iterdir()) == []
        return err[0]

    q.chmod(0o555)
    (data / "sad").chmod(0o555)
    try:
        assert run("--quarantine", q) == f"happysad clean: error: {q}: cannot quarantine there: {q} is " \
                                         "read-only; pass --quarantine DIR with a folder you can write, " \
                                         "or --dry-run to only look"
        q.chmod(0o755)
        assert run("--quarantine", q).startswith(f"happysad clean: error: {data / 'sad'}: folder is "
                                                 "read-only, so its 1 reject(s) cannot be moved")
    finally:
        q.chmod(0o755)
        (data / "sad").chmod(0o755)
