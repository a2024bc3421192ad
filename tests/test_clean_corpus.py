"""A corpus of 30+ bad or tricky inputs, made here: each gets the right verdict, nothing crashes, nothing
is deleted (every byte is still somewhere), and restore brings everything back."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from happysad import clean, data as data_mod, images


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> None:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    path.write_bytes(buf.getvalue())


def _photo(seed: int, size=(120, 90)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // 10 + 1, size[0] // 10 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize(size, Image.BICUBIC)  # smooth, photo-like, distinct per seed
    noise = rng.normal(0, 6, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(img, float) + noise, 0, 255).astype(np.uint8))


def _png_bomb() -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def build_corpus(root: Path) -> dict[str, str | None]:
    """Returns {relative path: expected reason, or None for 'kept'}."""
    a, b = root / "happy", root / "sad"
    (a / "nested" / "deeper").mkdir(parents=True)
    b.mkdir(parents=True)
    exp: dict[str, str | None] = {}

    def add(rel, reason):
        exp[rel] = reason

    for i in range(6):  # ordinary good photos
        _photo(i).save(a / f"good_{i}.jpg", quality=92)
        add(f"happy/good_{i}.jpg", None)
        _photo(100 + i).save(b / f"good_{i}.png")
        add(f"sad/good_{i}.png", None)
    (a / "zero.jpg").write_bytes(b""); add("happy/zero.jpg", "empty")
    (a / "notes.jpg").write_text("just some text\n"); add("happy/notes.jpg", "not_image")
    (a / "page.jpg").write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    add("happy/page.jpg", "not_image")
    (b / "svg.png").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    add("sad/svg.png", "not_image")
    jpg = io.BytesIO(); _photo(7).save(jpg, "JPEG"); data = jpg.getvalue()
    (a / "truncated.jpg").write_bytes(data[: len(data) // 2]); add("happy/truncated.jpg", "corrupt")
    (b / "garbage_header.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))  # corrupt, whatever follows
    add("sad/garbage_header.jpg", "corrupt")
    (a / "bomb.png").write_bytes(_png_bomb()); add("happy/bomb.png", "too_many_pixels")
    _save(_photo(8).convert("CMYK"), a / "cmyk.jpg", "JPEG"); add("happy/cmyk.jpg", None)
    Image.fromarray((np.indices((64, 64)).sum(0) * 500).astype(np.uint16)).save(a / "gray16.png")
    add("happy/gray16.png", None)
    pal = _photo(9).convert("P", palette=Image.ADAPTIVE)
    pal.info["transparency"] = 0
    pal.save(b / "palette_alpha.png", transparency=0); add("sad/palette_alpha.png", None)
    rgba = _photo(10).convert("RGBA"); rgba.putalpha(128); rgba.save(b / "rgba.png")
    add("sad/rgba.png", None)
    frames = [_photo(11 + k) for k in range(3)]
    frames[0].save(a / "anim.gif", save_all=True, append_images=frames[1:]); add("happy/anim.gif", None)
    _save(_photo(14), b / "really_webp.png", "WEBP"); add("sad/really_webp.png", None)
    ex = Image.Exif(); ex[0x0112] = 6
    _photo(15, (160, 90)).save(a / "exif_rotated.jpg", exif=ex); add("happy/exif_rotated.jpg", None)
    Image.new("RGB", (1, 1), (255, 0, 0)).save(b / "one_pixel.png"); add("sad/one_pixel.png", "too_small")
    _photo(16, (300, 20)).save(b / "thin_banner.jpg"); add("sad/thin_banner.jpg", "too_small")
    _photo(17).save(a / "tiny_file.bmp"); add("happy/tiny_file.bmp", None)
    weird = os.fsdecode(b"caf\xe9_\xff.jpg")  # not valid UTF-8
    _photo(18).save(os.path.join(a, weird), "JPEG"); add("happy/" + weird, None)
    _photo(19).save(a / "with spaces in name.jpg"); add("happy/with spaces in name.jpg", None)
    _photo(20).save(a / "nested" / "deeper" / "inside.jpg"); add("happy/nested/deeper/inside.jpg", None)
    _photo(21).save(a / ".hidden.jpg")  # hidden: ignored, never listed
    (a / "loop").symlink_to(a / "loop")  # a symlink loop
    add("happy/loop", "unreadable")
    (b / "dangling.jpg").symlink_to(root / "nowhere.jpg"); add("sad/dangling.jpg", "unreadable")
    _photo(22).save(b / "tiff.tif"); add("sad/tiff.tif", None)
    # exact duplicate within a class: the original is older, so it stays
    shutil.copy(a / "good_0.jpg", a / "copy_of_good_0.jpg"); add("happy/copy_of_good_0.jpg", "duplicate")
    # near duplicate within a class: a resized, re-encoded copy; the larger original stays
    Image.open(b / "good_1.png").resize((100, 75)).save(b / "smaller_copy.jpg", quality=85)
    add("sad/smaller_copy.jpg", "near_duplicate")
    # the same picture in both classes: a label conflict, all copies go
    shutil.copy(a / "good_2.jpg", b / "also_sad.jpg")
    exp["happy/good_2.jpg"] = "label_conflict"; add("sad/also_sad.jpg", "label_conflict")
    # a near copy across classes is a conflict too
    Image.open(b / "good_3.png").resize((110, 82)).save(a / "happy_version.jpg", quality=88)
    exp["sad/good_3.png"] = "label_conflict"; add("happy/happy_version.jpg", "label_conflict")
    for rel in exp:  # originals are older than their copies, whatever the file system's clock resolution
        if rel.startswith(("happy/good", "sad/good")):
            os.utime(root / rel, (1e9, 1e9))
    return exp


def _everything(*roots: Path) -> list[str]:
    out = []
    for r in roots:
        for dirpath, _, files in os.walk(r):
            for f in files:
                p = Path(dirpath) / f
                if p.is_symlink():
                    out.append("link:" + os.readlink(p))
                elif f not in (clean.MANIFEST, clean.REPORT):
                    out.append(hashlib.sha256(p.read_bytes()).hexdigest())
    return sorted(out)


def test_corpus_reasons_and_no_loss(tmp_path):
    root = tmp_path / "web"
    exp = build_corpus(root)
    assert len(exp) >= 30
    before = _everything(root)
    rep = clean.clean(root, progress=False)
    got = {e["path"]: e["reason"] for e in rep.rejected}
    want = {k: v for k, v in exp.items() if v is not None}
    assert got == want
    assert rep.kept == sum(v is None for v in exp.values())
    q = clean.default_quarantine(root)
    assert _everything(root, q) == before  # nothing deleted
    assert not (q / "happy" / ".hidden.jpg").exists() and (root / "happy" / ".hidden.jpg").exists()
    html = (q / clean.REPORT).read_text()
    assert html.count("<figure") == len(want) and "data:image/jpeg;base64," in html

    # Everything kept decodes for training too (CMYK, 16-bit, palette, EXIF, WebP-as-PNG, animated).
    kept = [p for p in images.iter_files(root) if not p.is_symlink()]
    for p in kept:
        arr = images.load_for_model(p, (32, 32), "rgb")
        assert arr.shape == (32, 32, 3)
    rotated, _ = images.decode(root / "happy" / "exif_rotated.jpg")
    assert rotated.size == (90, 160)

    assert clean.clean(root, progress=False).rejected == []  # a second run finds nothing new
    res = clean.restore(root)
    assert res["problems"] == [] and len(res["restored"]) == len(want)
    assert _everything(root) == before


def test_seed_rule_and_options(tmp_path):
    root = tmp_path / "web"
    exp = build_corpus(root)
    rep = clean.clean(root, dry_run=True, min_bytes=10_000, animated="reject", allowed_formats=("JPEG", "PNG"),
                      near_dup_distance=0, progress=False)
    got = {e["path"]: e["reason"] for e in rep.rejected}
    assert got["happy/anim.gif"] in ("animated", "format_not_allowed")
    assert got["sad/tiff.tif"] == "format_not_allowed" and got["sad/really_webp.png"] == "format_not_allowed"
    assert "near_duplicate" not in got.values()  # near-duplicate detection off
    assert any(r == "too_few_bytes" for r in got.values())
    assert not clean.default_quarantine(root).exists()  # dry run: nothing moved, nothing written
    assert {e["path"] for e in rep.rejected} <= set(exp)


def test_unreadable_file(tmp_path, monkeypatch):
    """A file that cannot be read (permissions; as root chmod does not stop us, so the read fails here)."""
    root = tmp_path / "d"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    _photo(1).save(root / "a" / "x.jpg")
    _photo(2).save(root / "b" / "locked.jpg")
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    rep = clean.clean(root, dry_run=True, progress=False)
    assert [(e["path"], e["reason"]) for e in rep.rejected] == [("b/locked.jpg", "unreadable")]
    assert "Permission denied" in rep.rejected[0]["detail"]
