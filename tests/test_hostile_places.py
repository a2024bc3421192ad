"""Places a command cannot write to: a file where a folder should be, a folder where a file should be, a
read-only folder, a file name too long for the file system. Each ends in one line naming the place and the
option that picks another one (exit code 1), before the command's work starts; never a traceback."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from happysad import cli, faces, places
from test_hostile_clean import ENV, _without_root_powers


@pytest.fixture
def site(tmp_path):
    """A data folder with two class folders, an image, and a plain file where folders are expected."""
    data = tmp_path / "data"
    for label in ("happy", "sad"):
        (data / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (40, 40), 60 * i + (label == "sad") * 20).save(data / label / f"{i}.png")
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path


def one_line_error(argv, capsys) -> str:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv, place, option", [
    (["predict", "{img}", "--model", "{model}", "--save-annotated", "{f}"], "{f}", "--save-annotated"),
    (["predict", "{img}", "--model", "{model}", "--save-annotated", "{f}/out"], "{f}/out", "--save-annotated"),
    (["split", "{data}", "--out", "{f}/split.csv"], "{f}/split.csv", "--out"),
    (["split", "{data}", "--out", "{data}"], "{data}", "--out"),
    (["train", "{data}", "--project", "{f}/runs", "--epochs", "1"], "{f}/runs", "--project"),
    (["export", "--model", "{model}", "--out", "{f}/m.onnx"], "{f}/m.onnx", "--out"),
    (["explain", "{img}", "--model", "{model}", "--out", "{f}"], "{f}", "--out"),
    (["demo", "--workdir", "{f}"], "{f}", "--workdir"),
    (["demo", "--workdir", "{f}/demo"], "{f}/demo", "--workdir"),
])
def test_a_file_where_a_folder_should_be_is_one_line(site, tiny_model, capsys, argv, place, option):
    names = {"f": site / "a_file", "data": site / "data", "img": site / "data" / "happy" / "0.png",
             "model": tiny_model}
    argv = [a.format(**names) for a in argv] + (["--device", "cpu"] if argv[0] in ("predict", "explain") else [])
    line = one_line_error(argv, capsys)
    assert line.startswith(f"happysad {argv[0]}: error: {place.format(**names)}: cannot write there: ")
    assert line.endswith("you can write") and f"pass {option} with" in line
    assert ("is a folder" if argv[-1] == str(site / "data") else "a_file is not a folder") in line
    assert sorted(p.name for p in site.iterdir()) == ["a_file", "data"]  # nothing made anywhere


RUN_EACH = """
import contextlib, io, json, sys
from happysad import cli
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    print(json.dumps([code, err.getvalue()]))
"""


def test_read_only_places_are_one_line_before_any_work(site):
    prefix = _without_root_powers()  # as root, read-only folders are writable unless root's powers go
    ro = site / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    # Commands that load TensorFlow take seconds to start; their places go through the same check (the
    # test above shows each command uses it), so one that does not load it stands for all here.
    cases = [(["split", site / "data", "--out", ro / "s.csv"], "--out", "a file in a folder"),
             (["split", site / "data", "--out", ro / "deeper" / "s.csv"], "--out", "a file in a folder"),
             (["clean", site / "data", "--report", ro / "r.html", "--dry-run"], "--report", "")]
    try:
        p = subprocess.run([*prefix, sys.executable, "-c", RUN_EACH,
                            json.dumps([[str(a) for a in argv] for argv, _, _ in cases])],
                           capture_output=True, text=True, timeout=180, env=ENV)
        assert p.returncode == 0, p.stderr
        for (argv, option, what), line in zip(cases, p.stdout.strip().splitlines()):
            code, err = json.loads(line)
            if argv[0] == "clean":  # clean's own words for its report
                assert code == 1 and f"cannot write the report there: {ro} is read-only" in err, err
                continue
            assert code == 1 and err == f"happysad {argv[0]}: error: {argv[-1]}: cannot write there: {ro} is " \
                                        f"read-only; pass {option} with {what} you can write\n"
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_annotated_copies_of_names_at_the_file_system_limit_get_names_that_fit(site, tiny_model, capsys):
    src = site / "src"
    src.mkdir()
    long_names = ["é" * 125 + "a.png", "b" * 251 + ".png", "b" * 251 + ".PNG"]  # 255 bytes each
    for n in long_names:
        assert len(n.encode()) == 255
        Image.new("RGB", (12, 12), "red").save(src / n, "PNG")
    out = site / "annotated"
    assert cli.main(["predict", str(src), "--model", str(tiny_model), "--save-annotated", str(out),
                     "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    written = sorted(os.fsencode(p.name) for p in out.iterdir())
    assert len(lines) == 3 and len(written) == 3 and all(len(n) <= places.NAME_MAX for n in written)
    assert all(n.endswith(b".jpg") for n in written) and any(n.endswith(b"-2.jpg") for n in written)
    assert any(n.decode().startswith("é" * 124) for n in written)  # cut at a character, not inside one


def test_a_folder_that_fails_half_way_is_one_line(site, capsys, monkeypatch):
    out = site / "annotated"
    writer = faces.AnnotatedWriter(out)
    out.rmdir()
    out.write_text("replaced by a file meanwhile")
    result = {"label": "happy", "probabilities": {"happy": 0.9, "sad": 0.1}}
    with pytest.raises(places.HappysadError) as e:
        writer.write(str(site / "data" / "happy" / "0.png"), result)
    assert str(e.value).startswith(f"{out / '0.jpg'}: cannot write there: ") and "--save-annotated" in str(e.value)

    def full_disk(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(site / "out.csv"))

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_fn(parser(), full_disk))
    line = one_line_error(["split", str(site / "data"), "--out", str(site / "out.csv")], capsys)
    assert line.startswith(f"happysad split: error: {site / 'out.csv'}: No space left on device; ")


def _with_fn(parser, fn):
    real = parser.parse_args
    parser.parse_args = lambda argv=None: _set(real(argv), fn=fn)
    return parser


def _set(ns, **kw):
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_place_checks_name_the_option_and_make_nothing_when_only_checking(tmp_path):
    target = tmp_path / "a" / "b"
    assert places.output_folder(target, "--x", make=False) == target and not target.exists()
    assert places.output_folder(target, "--x").is_dir()
    with pytest.raises(places.HappysadError, match="longer than 255 bytes; pass --out with a shorter name"):
        places.output_file(tmp_path / ("x" * 256 + ".csv"), "--out")
    assert places.fit_name("x" * 300, ".jpg") == "x" * 251 + ".jpg"
    assert places.fit_name("ab", "-2.jpg") == "ab-2.jpg"
    assert Path(places.fit_name("\udcff" * 300, ".jpg")).suffix == ".jpg"  # a name that is not UTF-8
