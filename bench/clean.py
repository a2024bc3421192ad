"""Benchmark `happysad clean` (dry run: nothing is moved) on a folder of class folders.

    python bench/clean.py [DATA] [--near-dup-distance 4]

DATA defaults to ../shared/datasets/fer2013/train (28,709 images). Prints images/s for the whole scan
(decode every file fully, sha256, pHash, duplicate grouping) and the rejects by reason.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013" / "train"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--near-dup-distance", type=int, default=4)
    ap.add_argument("--min-bytes", type=int, default=0)
    args = ap.parse_args()
    from happysad import clean

    n = sum(1 for c in Path(args.data).iterdir() if c.is_dir() for _ in clean.images.iter_files(c))
    t = time.perf_counter()
    rep = clean.clean(args.data, dry_run=True, near_dup_distance=args.near_dup_distance,
                      min_bytes=args.min_bytes, progress=False)
    dt = time.perf_counter() - t
    print(json.dumps({"data": args.data, "files": n, "seconds": round(dt, 1), "images_per_s": round(n / dt),
                      "cores": os.cpu_count(), "kept": rep.kept, "by_reason": rep.by_reason}, indent=1))


if __name__ == "__main__":
    main()
