"""files.py: atomic writes, free names, thread counts."""

import json
import os
import stat

import pytest

from happysad import files


def test_atomic_write_replaces_the_file_in_one_step_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "meta.json"  # its folder is made
    files.write_json(target, {"a": 1})
    files.atomic_write_bytes(target, b'{"a": 2}\n')
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["meta.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target, suffix=".onnx") as tmp:
            assert tmp.endswith(".onnx") and os.path.dirname(tmp) == str(tmp_path)  # same file system
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("converter crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_new_file_gets_a_plain_open_mode_and_a_replaced_file_keeps_its_mode(tmp_path):
    new = files.atomic_write_bytes(tmp_path / "new.txt", b"x")
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # not mkstemp's 0600
    os.chmod(new, 0o640)
    files.atomic_write_bytes(new, b"y")
    assert stat.S_IMODE(new.stat().st_mode) == 0o640


def test_candidate_names_number_from_two_in_the_callers_style():
    def first(n, *args, **kw):
        names = files.candidate_names(*args, **kw)
        return [next(names) for _ in range(n)]

    assert first(3, "a", ".jpg") == ["a.jpg", "a-2.jpg", "a-3.jpg"]          # annotated copies
    assert first(2, "exp", sep="") == ["exp", "exp2"]                         # run folders
    assert first(2, "happy/x.png", sep=".") == ["happy/x.png", "happy/x.png.2"]  # quarantine
    assert first(2, "happy/a", "_face0.png") == ["happy/a_face0.png", "happy/a-2_face0.png"]  # face crops


def test_free_name_skips_taken_names():
    taken = {"a.gradcam.png", "a-2.gradcam.png"}
    assert files.free_name("a", ".gradcam.png", taken=taken.__contains__) == "a-3.gradcam.png"
    assert files.free_name("b", ".gradcam.png", taken=taken.__contains__) == "b.gradcam.png"


def test_free_name_lets_the_caller_join_stem_and_ending():
    short = lambda stem, end: stem[:8 - len(end)] + end  # noqa: E731  (a file system allowing 8 characters)
    assert files.free_name("abcdefgh", ".png", taken={"abcd.png"}.__contains__, fit=short) == "ab-2.png"


def test_thread_count_scales_with_cores_up_to_a_cap(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert files.thread_count() == 4
    assert files.thread_count(per_core=1, cap=4) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert files.thread_count() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: assume two cores
    assert files.thread_count() == 4
