"""Kill `happysad clean` with SIGKILL while it is moving files: every file must still be in place or in the
quarantine with a manifest entry, and --restore must bring every byte back."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import make_shapes

EXE = str(Path(sys.executable).with_name("happysad"))


def _digests(root: Path) -> list[str]:
    return sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
                  if p.is_file() and p.name not in ("manifest.jsonl", "report.html"))


def test_kill_clean_mid_way_then_restore(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=20, kinds=("a", "b"))
    for i in range(3000):  # many rejects, so that the kill lands while files are being moved
        (data / ("a", "b")[i % 2] / f"junk_{i:04d}.jpg").write_text(f"<html>{i}</html>")
    before = _digests(data)
    q = tmp_path / "d.quarantine"
    manifest = q / "manifest.jsonl"
    p = subprocess.Popen([EXE, "clean", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        if manifest.is_file() and manifest.stat().st_size > 20_000:
            break
        time.sleep(0.002)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip().endswith("}")]
    assert 0 < len(entries) < 3000, "the kill should land mid-way"

    # Invariant: each file is in its place, or in quarantine with a manifest entry.
    recorded = {e["original"]: e["quarantined"] for e in entries}
    in_data = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()}
    for i in range(3000):
        rel = f"{('a', 'b')[i % 2]}/junk_{i:04d}.jpg"
        assert rel in in_data or (rel in recorded and (q / recorded[rel]).is_file()), rel
    assert sorted(_digests(data) + _digests(q)) == before  # nothing lost, nothing doubled

    r = subprocess.run([EXE, "clean", str(data), "--restore"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _digests(data) == before
