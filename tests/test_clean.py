import hashlib
import io
import shutil

import numpy as np
from PIL import Image

from happysad import clean

from conftest import make_shapes


def _all_bytes(*roots):
    out = []
    for r in roots:
        if r.exists():
            out += [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(r.rglob("*"))
                    if p.is_file() and p.name not in (clean.MANIFEST, clean.REPORT)]
    return sorted(out)


def _junk(data):
    (data / "circle" / "empty.jpg").write_bytes(b"")
    (data / "circle" / "page.jpg").write_text("<html><body>Not found</body></html>")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (data / "square" / "cut.jpg").write_bytes(buf.getvalue()[:800])
    Image.new("RGB", (8, 8)).save(data / "square" / "tiny.png")
    shutil.copy(data / "square" / "square_001.png",
                data / "square" / "dup.png")
    shutil.copy(data / "circle" / "circle_002.png", data / "square" / "conflict.png")


def test_clean_quarantines_with_reasons_and_restores(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=12, kinds=("circle", "square"))
    _junk(data)
    before = _all_bytes(data)
    rep = clean.clean(data)
    reasons = {e["path"]: e["reason"] for e in rep.rejected}
    assert reasons == {
        "circle/empty.jpg": "empty", "circle/page.jpg": "not_image", "square/cut.jpg": "corrupt",
        "square/tiny.png": "too_small", "square/dup.png": "duplicate",
        "square/conflict.png": "label_conflict", "circle/circle_002.png": "label_conflict",
    }
    assert rep.kept == 24 - 1 + 1 - 1  # 24 originals, one conflict copy gone, dup kept original
    q = clean.default_quarantine(data)
    assert q == data.parent / "d.quarantine" and (q / clean.MANIFEST).is_file()
    # nothing deleted: every byte is in data or quarantine
    assert _all_bytes(data, q) == before
    # a second run finds nothing new
    again = clean.clean(data)
    assert again.rejected == []
    res = clean.restore(data)
    assert len(res["restored"]) == 7 and res["problems"] == []
    assert _all_bytes(data) == before


def test_dry_run_moves_nothing(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=5, kinds=("a", "b"))
    (data / "a" / "bad.jpg").write_text("nope")
    rep = clean.clean(data, dry_run=True)
    assert [e["path"] for e in rep.rejected] == ["a/bad.jpg"]
    assert (data / "a" / "bad.jpg").exists()
    assert not clean.default_quarantine(data).exists()
