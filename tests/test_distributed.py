"""Two worker processes on 127.0.0.1 train one model with MultiWorkerMirroredStrategy (TF_CONFIG)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from happysad import evaluate, train

from conftest import make_shapes

EXE = str(Path(sys.executable).with_name("happysad"))


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_match_single_worker(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=60, kinds=("circle", "square"))
    common = ["--arch", "seed", "--img-size", "32", "--epochs", "6", "--batch-size", "16", "--seed", "1"]
    single = train.train(data, arch="seed", img_size=32, epochs=6, batch_size=16, seed=1,
                         project=str(tmp_path / "single"), verbose=False)
    acc_single = evaluate.evaluate(data, single.run_dir)["accuracy"]

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = {**os.environ, "HAPPYSAD_NO_PROGRESS": "1",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        cwd = tmp_path / f"w{i}"
        cwd.mkdir()
        procs.append(subprocess.Popen([EXE, "train", str(data), "--distributed", *common, "--name", "dist"],
                                      cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    chief_run = tmp_path / "w0" / "runs" / "train" / "dist"
    assert (chief_run / "weights" / "best.keras").is_file() and (chief_run / "metrics.json").is_file()
    assert not (tmp_path / "w1" / "runs").exists()  # only the chief writes the run folder
    acc_dist = evaluate.evaluate(data, chief_run)["accuracy"]
    assert acc_dist >= 0.7 and abs(acc_dist - acc_single) <= 0.15, (acc_dist, acc_single)  # chance is 0.5
