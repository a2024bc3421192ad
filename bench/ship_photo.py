"""Ship a photo model as a built-in: copy it, and put an ONNX copy beside each member's model.keras
(or those of ``--members``) that ``predict``, ``evaluate`` and ``serve`` run when onnxruntime is
installed (meta.json ``fast_runtime``; explain, export and train-photo keep using the Keras members).

    python bench/ship_photo.py runs/photo/happy-sad src/happysad/builtin/happy-sad [--members all|scene,...] [--check DIR]

The photo model with ONNX members must give the Keras one's probabilities within 1e-4 on the check
photos (default: scikit-image's sample photos), else nothing is written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--check", metavar="DIR", help="photos to compare Keras and ONNX members on")
    ap.add_argument("--members", default="all", help="comma-separated members that get an ONNX copy "
                    "(default %(default)s; e.g. 'scene' for the one that costs most)")
    args = ap.parse_args()
    from happysad import bundle, export
    from happysad.predict import Predictor

    src, dest = Path(args.src), Path(args.dest)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "model"
        shutil.copytree(src, stage)
        export.attach_fast_runtime(stage, "onnx", None if args.members == "all" else args.members.split(","))
        if args.check:
            photos = [str(p) for p in sorted(Path(args.check).rglob("*")) if p.is_file()][:40]
        else:
            from PIL import Image
            from skimage import data

            photos = []
            for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"):
                path = Path(tmp) / f"{name}.jpg"
                Image.fromarray(getattr(data, name)()).convert("RGB").save(path, quality=92)
                photos.append(str(path))
        keras_r = Predictor(bundle.load(stage)).predict(photos)
        fast_b = bundle.load(stage, fast=True)
        print({m: type(b.model).__name__ for m, b in fast_b.members.items()})
        fast_r = Predictor(fast_b).predict(photos)
        worst = max(abs(a["probabilities"][c] - b["probabilities"][c])
                    for a, b in zip(keras_r, fast_r) for c in a["probabilities"])
        print(f"{len(photos)} photos: largest |keras - onnx| probability difference {worst:.2e}")
        if worst > 1e-4:
            print("ONNX members differ from the Keras members; nothing written", file=sys.stderr)
            return 1
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(stage, dest)
    print(f"shipped {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
