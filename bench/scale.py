"""Scale benchmark: clean + one training epoch on N generated images, for growing N.

Each size runs in a fresh process so that its peak RSS is its own. Prints a table:
    python bench/scale.py                 # 10k and 100k images (about 10 minutes on 2 cores)
    python bench/scale.py --sizes 2000    # quick check
The tf.data cache is off (HAPPYSAD_CACHE_MB=0) so the figures show the streaming path; with the cache
on, memory also holds the decoded images (N x 32 x 32 x 3 bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(root: Path, n: int) -> None:
    """Photo-like 32x32 images (smooth random colour fields with a shape on top): distinct pictures
    with distinct perceptual hashes, as photos have."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    kinds = ("circle", "square")
    for k in kinds:
        (root / k).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = kinds[i % 2]
        field = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
        img = Image.fromarray(field).resize((32, 32), Image.BICUBIC)
        d = ImageDraw.Draw(img)
        r = rng.uniform(6, 11)
        cx, cy = rng.uniform(r, 32 - r, 2)
        box = [cx - r, cy - r, cx + r, cy + r]
        (d.ellipse if k == "circle" else d.rectangle)(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        img.save(root / k / f"{i:06d}.png", compress_level=1)


def child(n: int, work: Path) -> dict:
    os.environ["HAPPYSAD_CACHE_MB"] = "0"
    from happysad import clean, train

    data = work / "data"
    t = time.perf_counter()
    generate(data, n)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    rep = clean.clean(data, dry_run=True)
    t_clean = time.perf_counter() - t
    t = time.perf_counter()
    res = train.train(data, arch="seed", img_size=32, epochs=1, batch_size=64, project=str(work / "runs"),
                      verbose=False, ratios=(0.9, 0.05, 0.05))
    t_train = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "kept": rep.kept, "generate_s": round(t_gen, 1), "clean_s": round(t_clean, 1),
            "clean_img_per_s": round(n / t_clean), "train_epoch_s": round(t_train, 1),
            "train_img_per_s": round(n * 0.9 / t_train), "peak_rss_mb": round(peak_mb),
            "test_accuracy": res.metrics["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.work))))
        return
    rows = []
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"happysad-scale-{n}-"))
        try:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--work", str(work)],
                                 capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    keys = ["n", "clean_s", "clean_img_per_s", "train_epoch_s", "train_img_per_s", "peak_rss_mb"]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
