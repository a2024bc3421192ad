"""Property: whatever the file names (any bytes), image shapes (1xN to Nx1), contents and meta.json values,
`clean`, `clean --restore` and `predict` give one result per input and at most one error line, never a
traceback; memory stays under an address-space cap; nothing outside the data folder and its quarantine is
touched, and a restore gives back every file, name and bytes as they were.

The generated cases run in a child pytest under ``resource.setrlimit(RLIMIT_AS)`` (the cap must hold for the
whole process: this one's peak says nothing), a handful of small examples so that it stays fast."""

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from happysad import cli

CHILD = "HAPPYSAD_PROPERTY_CHILD"
ADDRESS_SPACE = 3 * 2**30  # bytes: TensorFlow, Keras and the tiny model run in well under this
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


def test_generated_inputs_in_a_memory_capped_process():
    if os.environ.get(CHILD):
        pytest.skip("this is the child run")
    try:
        import resource
    except ImportError:
        pytest.skip("no resource module (not POSIX)")

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    here = Path(__file__)
    env = {**os.environ, CHILD: "1", "HAPPYSAD_NO_PROGRESS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(here.parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        f"{here}::test_any_names_shapes_and_contents", f"{here}::test_any_meta_json_values"],
                       capture_output=True, text=True, timeout=600, env=env, preexec_fn=cap, cwd=here.parents[1])
    assert p.returncode == 0 and "2 passed" in p.stdout, p.stdout[-6000:] + p.stderr[-3000:]


child_only = pytest.mark.skipif(not os.environ.get(CHILD), reason="runs in the memory-capped child")

# ------------------------------------------------------------------------------------------------ inputs

names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b
                                                  and not b.startswith(b"."))
names = st.one_of(names, names.map(lambda b: b[:36] + b".jpg"))
shapes = st.one_of(st.tuples(st.integers(1, 2500), st.integers(1, 3)),   # strips, both ways round
                   st.tuples(st.integers(1, 3), st.integers(1, 2500)),
                   st.tuples(st.integers(1, 200), st.integers(1, 200)))


@st.composite
def contents(draw) -> bytes:
    kind = draw(st.sampled_from(["image", "image", "image", "cut", "bytes", "empty"]))
    if kind == "empty":
        return b""
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300))
    w, h = draw(shapes)
    fmt = draw(st.sampled_from(FORMATS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, fmt)
    data = buf.getvalue()
    return data[: draw(st.integers(1, max(len(data) - 1, 1)))] if kind == "cut" else data


folders = st.dictionaries(names, contents(), min_size=1, max_size=4)


def snapshot(root: Path) -> dict[bytes, bytes]:
    """Every file below ``root``: path (bytes, relative) -> content."""
    out = {}
    for dirpath, _, files in os.walk(os.fsencode(root)):
        for f in files:
            full = os.path.join(dirpath, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, os.fsencode(root))] = fh.read()
    return out


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv])
    assert "Traceback" not in err.getvalue() and len(err.getvalue().strip().splitlines()) <= 1, err.getvalue()
    out.getvalue().encode("utf-8")  # what a terminal or a pipe gets is valid UTF-8, whatever the names
    return code, out.getvalue(), err.getvalue()


@child_only
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(happy=folders, sad=folders)
def test_any_names_shapes_and_contents(tmp_path_factory, tiny_model, happy, sad):
    root = tmp_path_factory.mktemp("site")
    data, quarantine, outside = root / "data", root / "q", root / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not to be touched")
    for label, files in (("happy", happy), ("sad", sad)):
        (data / label).mkdir(parents=True)
        for name, content in files.items():
            with open(os.path.join(os.fsencode(data / label), name), "wb") as f:
                f.write(content)
    n = len(happy) + len(sad)
    before, around = snapshot(data), snapshot(outside)

    code, out, _ = run("predict", data, "--model", tiny_model, "--json", "--device", "cpu")
    lines = [json.loads(line) for line in out.splitlines()]  # valid JSON, names included
    assert code in (0, 1) and len(lines) == n and all(("error" in r) != ("label" in r) for r in lines)
    assert {os.fsencode(r["path"]) for r in lines} == {os.path.join(os.fsencode(data), p) for p in before}

    code, out, _ = run("clean", data, "--quarantine", quarantine, "--json")
    rep = json.loads(out)
    assert code in (0, 1) and rep["kept"] + len(rep["rejected"]) + len(rep["skipped"]) == n
    moved = [v for k, v in snapshot(quarantine).items() if k not in (b"manifest.jsonl", b"report.html")]
    assert sorted(list(snapshot(data).values()) + moved) == sorted(before.values())  # each file in one place

    code, _, err = run("clean", data, "--quarantine", quarantine, "--restore")
    assert code == 0 or (not moved and "nothing to restore" in err)  # nothing quarantined: it says so
    assert snapshot(data) == before  # names and bytes as they were
    assert snapshot(outside) == around and set(os.listdir(root)) <= {"data", "outside", "q"}


# --------------------------------------------------------------------------------------------- meta.json

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)
fields = st.sampled_from(["classes", "format_version", "input", "input.height", "input.width", "input.channels",
                          "input.color_mode", "output", "faces", "arch_options", "kind", "members"])


@child_only
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(fields, json_values, min_size=1, max_size=3), shape=shapes)
def test_any_meta_json_values(tmp_path_factory, tiny_model, changes, shape):
    model = tmp_path_factory.mktemp("model")
    meta = json.loads((tiny_model / "meta.json").read_text())
    changed = copy.deepcopy(meta)
    for key, value in changes.items():
        if key.startswith("input.") and isinstance(changed.get("input"), dict):
            changed["input"][key.split(".")[1]] = value
        else:
            changed[key] = value
    (model / "meta.json").write_text(json.dumps(changed))
    (model / "model.keras").write_bytes((tiny_model / "model.keras").read_bytes())
    img = model.parent / f"{model.name}.png"
    Image.new("RGB", shape, (120, 80, 40)).save(img)

    code, out, err = run("predict", img, "--model", model, "--device", "cpu")
    if code == 0:
        assert len(out.splitlines()) == 1 and out.startswith(f"{img}: ")
    else:  # the model is refused in one line naming its file
        assert code in (1, 2) and out == "" and err.startswith("happysad predict: error: ") and str(model) in err


# ------------------------------------------------------------------------------------ one example, by hand

def test_split_manifests_keep_names_that_are_not_utf8(tmp_path, capsys):
    from happysad import split

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        (data / label).mkdir(parents=True)
        for i in range(4):
            name = os.path.join(os.fsencode(data / label), b"bad\xff%d.png" % i)
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(os.fsdecode(name), "PNG")
    out = tmp_path / "split.csv"
    assert cli.main(["split", str(data), "--out", str(out)]) == 0
    assert b"bad\xff0.png" in out.read_bytes()  # as the bytes on disk
    rows = split.read_manifest(out)
    assert len(rows) == 8 and all((data / r.path).is_file() for r in rows)
    assert "wrote" in capsys.readouterr().out
