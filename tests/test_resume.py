"""Kill a real training process mid-epoch with SIGKILL, resume it, and check nothing was lost or doubled."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import make_shapes

EXE = str(Path(sys.executable).with_name("happysad"))


def _epochs(results: Path) -> list[int]:
    if not results.is_file():
        return []
    with open(results) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_kill_mid_epoch_then_resume(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=150, kinds=("circle", "square"), size=48)
    run = tmp_path / "runs" / "k"
    env = {**os.environ, "HAPPYSAD_NO_PROGRESS": "1"}
    cmd = [EXE, "train", str(data), "--img-size", "48", "--epochs", "6", "--batch-size", "8",
           "--project", str(tmp_path / "runs"), "--name", "k", "--no-early-stopping"]
    log = open(tmp_path / "first.log", "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    t0, seen = time.time(), 0
    try:
        while time.time() - t0 < 240 and p.poll() is None:
            n = len(_epochs(run / "results.csv"))
            if n >= 2 and not seen:
                seen, t_epoch2 = n, time.time()
            if seen and time.time() - t_epoch2 > 0.5 * (t_epoch2 - t0) / seen:
                break  # about half way through the next epoch
            time.sleep(0.05)
        assert p.poll() is None, (tmp_path / "first.log").read_text()
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait() == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
    killed_after = _epochs(run / "results.csv")
    assert 2 <= len(killed_after) < 6
    split_before = (run / "split.csv").read_bytes()

    r = subprocess.run([EXE, "train", "--resume", str(run)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert _epochs(run / "results.csv") == [0, 1, 2, 3, 4, 5]  # every epoch exactly once
    assert (run / "split.csv").read_bytes() == split_before
    assert (run / "metrics.json").is_file() and (run / "curves.png").is_file()

    # Optimizer state came back: Adam's step counter covers all 6 epochs, not only the resumed ones.
    import keras

    m = keras.models.load_model(run / "weights" / "last.keras")
    # (Keras counts one extra step per epoch on a dataset of unknown length: 27 or 28 steps an epoch.)
    steps = -(-2 * 105 // 8)
    assert 6 * steps <= int(m.optimizer.iterations.numpy()) <= 6 * (steps + 1)

    r = subprocess.run([EXE, "train", "--resume", str(run)], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "finished already" in r.stderr
