"""The CLI contract: commands, JSON shapes, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from happysad.cli import main

from conftest import make_shapes


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_end_to_end_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = make_shapes(tmp_path / "data", n_per_class=24, kinds=("circle", "square", "triangle"))
    (data / "circle" / "broken.jpg").write_text("<html>oops</html>")

    code, out, _ = run(capsys, "clean", data)
    assert code == 0 and "circle/broken.jpg: not_image" in out and "kept 72" in out

    code, out, _ = run(capsys, "split", data, "--out", "s.csv", "--seed", "1", "--classes", "circle,square")
    assert code == 0 and Path("s.csv").is_file() and "circle" in out and "triangle" not in out

    code, out, _ = run(capsys, "train", data, "--split", "s.csv", "--classes", "circle,square",
                       "--arch", "seed", "--img-size", "32", "--epochs", "1", "--batch-size", "8", "--json")
    assert code == 0
    res = json.loads(out)
    run_dir = Path(res["run"])
    assert run_dir == Path("runs/train/exp") and (run_dir / "weights" / "best.keras").is_file()

    code, out, _ = run(capsys, "evaluate", data, "--model", run_dir, "--classes", "circle,square", "--json")
    assert code == 0
    m = json.loads(out)
    assert set(m) >= {"accuracy", "n", "classes", "per_class", "confusion"}
    assert m["n"] == 48 and m["classes"] == ["circle", "square"]
    assert set(m["per_class"]["circle"]) >= {"precision", "recall", "f1", "support"}

    code, out, err = run(capsys, "evaluate", data, "--model", run_dir)
    assert code == 2 and "triangle" in err and "--classes" in err

    bad = tmp_path / "junk.png"
    bad.write_bytes(b"")
    code, out, _ = run(capsys, "predict", data / "square", bad, "--model", run_dir / "weights" / "best.keras",
                       "--json")
    lines = [json.loads(l) for l in out.splitlines()]
    assert code == 1 and len(lines) == 25
    assert {"path", "label", "probabilities"} <= set(lines[0])
    assert lines[-1]["path"] == str(bad) and "error" in lines[-1]


def test_usage_errors_are_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "split", tmp_path / "nope", "--out", tmp_path / "x.csv")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a folder" in err
    make_shapes(tmp_path / "d", n_per_class=4, kinds=("a", "b"))
    code, _, err = run(capsys, "split", tmp_path / "d", "--out", tmp_path / "x.csv", "--ratios", "0.5", "0.6")
    assert code == 2 and "--ratios" in err
    code, _, err = run(capsys, "predict", tmp_path / "d", "--model", tmp_path / "none")
    assert code == 1 and "no such model" in err and "Traceback" not in err


def test_console_script_no_traceback(tmp_path):
    exe = Path(sys.executable).with_name("happysad")
    p = subprocess.run([str(exe), "train", str(tmp_path / "missing")], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip() == f"happysad train: error: {tmp_path / 'missing'}: not a folder " \
                               "(expected a folder with one sub-folder per class)"
    p = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("happysad ")
