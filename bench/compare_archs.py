"""Does the default recipe beat the seed's architecture on a general image folder at equal epochs?

    python bench/compare_archs.py [--epochs 15] [--n-per-class 400] [--img-size 64]

Uses the demo's generated smile/frown faces (RGB, varied backgrounds) as a stand-in for "any folder of
images"; both architectures get the same split, seed and number of epochs (no early stopping).
Prints test-split accuracy, epochs and wall time for each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--n-per-class", type=int, default=400)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from happysad import demo, split, train

    work = Path(tempfile.mkdtemp(prefix="happysad-archs-"))
    data = demo.make_dataset(work / "data", args.n_per_class, args.seed)
    manifest = work / "split.csv"
    split.split_folder(data, manifest, seed=args.seed)
    rows = []
    for arch in ("seed", "default"):
        t = time.perf_counter()
        res = train.train(data, split=str(manifest), arch=arch, img_size=args.img_size, epochs=args.epochs,
                          early_stopping=False, seed=args.seed, project=str(work / "runs"), name=arch,
                          verbose=False)
        rows.append({"arch": arch, "test_accuracy": res.metrics["accuracy"], "n": res.metrics["n"],
                     "epochs": res.metrics["epochs_run"], "seconds": round(time.perf_counter() - t)})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nfolder: {data} ({2 * args.n_per_class} images, {args.img_size}px, {args.epochs} epochs each)")
    for r in rows:
        print(f"  {r['arch']:<8} test accuracy {r['test_accuracy']:.4f} on {r['n']} images  ({r['seconds']}s)")


if __name__ == "__main__":
    main()
