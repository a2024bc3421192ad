"""A user's own small folder: a few hundred photos of two classes, split 70/30, `happysad train` on the 70
(as a user would: default settings unless a config adds options), `happysad evaluate` on the 30.

    python bench/small_folder.py --data ../shared/datasets/web_photos --per-class 150 \\
        --config "" --config "--arch default" --config "--arch efficientnet_lite0 --weights runs/lite0.weights.h5"

Each config prints one JSON line: test accuracy on the held-out 30 % (and with --tta, the mirror image
averaged in), the wall and CPU time of `happysad train`, the
architecture it chose and the epochs it ran. The folders are symbolic links into --data (nothing is copied),
under --work. Photos sharing content (identical bytes) always land on the same side of the split.
Pure ImageNet EfficientNet-Lite0 weights for the third config: `python bench/convert_lite.py --variant lite0 --out
runs/lite0.weights.h5` (the shipped Lite0 in the built-in happy-sad model had its top blocks fine-tuned
on the shared web photos, so measuring it on them flatters it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from happysad import folders, split as splitting

EXE = str(Path(sys.executable).with_name("happysad"))


def make_folders(data: Path, classes: list[str], per_class: int, seed: int, work: Path) -> tuple[Path, Path]:
    """WORK/train and WORK/test: ``per_class`` photos per class drawn with ``seed``, split 70/30."""
    items, _ = folders.list_items(data, classes)
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        mine = [it for it in items if it[1] == c]
        picked += [mine[i] for i in sorted(rng.choice(len(mine), min(per_class, len(mine)), replace=False))]
    rows = splitting.assign(picked, (0.7, 0.3, 0.0), seed)
    for row in rows:
        dst = work / ("train" if row.split == "train" else "test") / row.label / Path(row.path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.symlink((data / row.path).resolve(), dst)
    return work / "train", work / "test"


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: on a shared machine, a truer cost than wall time."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_config(config: str, train_dir: Path, test_dir: Path, work: Path, index: int) -> dict:
    env = {**os.environ, "HAPPYSAD_NO_PROGRESS": "1"}
    name = f"c{index}"
    cmd = [EXE, "train", str(train_dir), "--project", str(work / "runs"), "--name", name, *shlex.split(config)]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if r.returncode != 0:
        return {"config": config, "error": r.stderr.strip().splitlines()[-1:]}
    run = max((work / "runs").glob(f"{name}*"), key=lambda p: p.stat().st_mtime)
    ev = subprocess.run([EXE, "evaluate", str(test_dir), "--model", str(run), "--json"], capture_output=True,
                        text=True, env=env)
    m = json.loads(ev.stdout) if ev.returncode == 0 else {}
    ev = subprocess.run([EXE, "evaluate", str(test_dir), "--model", str(run), "--json", "--tta"], capture_output=True,
                        text=True, env=env)
    tta = json.loads(ev.stdout) if ev.returncode == 0 else {}
    meta = json.loads((run / "meta.json").read_text())
    internal = json.loads((run / "metrics.json").read_text())
    return {"config": config or "(defaults)", "arch": meta["arch"], "img_size": meta["input"]["height"],
            "test_accuracy": m.get("accuracy"), "test_accuracy_tta": tta.get("accuracy"), "n_test": m.get("n"), "train_wall_s": round(seconds, 1),
            "train_cpu_s": round(cpu, 1),
            "epochs_run": internal.get("epochs_run"), "run": str(run),
            "auto": [ln for ln in r.stderr.splitlines() if ln.startswith("--arch auto")][:1]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a folder of class folders")
    p.add_argument("--classes", default="happy,sad")
    p.add_argument("--per-class", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="runs/bench-small-folder")
    p.add_argument("--config", action="append", default=None, help="extra `happysad train` options ('' = defaults)")
    a = p.parse_args(argv)
    work = Path(a.work)
    train_dir, test_dir = make_folders(Path(a.data), a.classes.split(","), a.per_class, a.seed, work)
    print(json.dumps({"train": sum(1 for _ in train_dir.rglob("*.*")), "test": sum(1 for _ in test_dir.rglob("*.*")),
                      "cpus": os.cpu_count(), "load_average": os.getloadavg()}), flush=True)
    for i, config in enumerate(a.config if a.config is not None else [""]):
        print(json.dumps(run_config(config, train_dir, test_dir, work, i)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
