"""How big and how slow is `evaluate --report` on a large folder?

    python bench/report.py [--n 2000] [--model fer-happy-sad] [--plain] [--work DIR]

Draws N demo faces (half smiling, half frowning; 96x96, demo.make_dataset) and runs
`happysad evaluate DATA --model M --report OUT.html` as a subprocess, as a user would (TensorFlow's start
included). Prints the wall time and the page's size. The page holds figures and thumbnails of the gallery
only (never the originals), so its size does not grow with N. ``--plain`` also times `evaluate` without
``--report``, to show what the page itself costs. The default model is the built-in face model, which also
runs face detection and draws the boxes on the gallery's pictures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child): on a shared machine the second says more."""
    import resource

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "happysad", *args], env=env, capture_output=True, text=True)
    seconds, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"happysad {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return seconds, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images (default 2000)")
    ap.add_argument("--model", default="fer-happy-sad", help="model to evaluate (default fer-happy-sad)")
    ap.add_argument("--plain", action="store_true", help="also time evaluate without --report")
    ap.add_argument("--work", help="folder for the images and the page (default: a temporary one)")
    args = ap.parse_args()

    from happysad import demo

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        data = work / "faces"
        if not data.is_dir():
            demo.make_dataset(data, n_per_class=args.n // 2, seed=0)
        n = sum(1 for _ in data.rglob("*.*"))
        out = work / "report.html"
        seconds, cpu = run(["evaluate", str(data), "--model", args.model, "--report", str(out), "--json"])
        size = out.stat().st_size
        load = os.getloadavg()[0]
        print(f"evaluate --report: {n} images, model {args.model}, {os.cpu_count()} CPU(s), load {load:.1f}: "
              f"{seconds:.1f} s wall, {cpu:.1f} s CPU; page {size / 2**20:.2f} MB ({out})")
        if args.plain:
            plain, plain_cpu = run(["evaluate", str(data), "--model", args.model, "--json"])
            print(f"evaluate without --report: {plain:.1f} s wall, {plain_cpu:.1f} s CPU "
                  f"(the page: {cpu - plain_cpu:+.1f} s CPU)")
        ok = size < 20 * 2**20 and seconds < 60
        print(f"target (< 20 MB, < 60 s): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
