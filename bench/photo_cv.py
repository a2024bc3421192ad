"""Grouped cross-validation of the photo model on the shared web photos, next to the face model that
was the default before and (when installed) the `fer` package, on the same photos and the same folds.

    happysad train-photo ... --save-facts runs/photo/facts.npz     # the command in docs/photo.md
    python bench/photo_cv.py [--facts runs/photo/facts.npz] [--model happy-sad] [--json]

The `fer` package row needs `make bench` and `pip install --no-deps fer==22.4.0` (its own requirements
pin the GUI build of OpenCV; the headless one that `make bench` installs serves it).

The photo model's figures are the ones `train-photo` computed and saved in its meta.json (out-of-fold
outputs of branches fitted without each fold's sources); this script recomputes the same folds from the
saved facts and scores the other models on exactly those photos. Folds never split a source repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def table(name: str, hit: np.ndarray, fold: np.ndarray, found: np.ndarray) -> dict:
    r = lambda m: round(float(hit[m].mean()), 4) if m.any() else None  # noqa: E731
    return {"name": name, "accuracy": r(np.ones(len(hit), bool)), "face_found": r(found), "no_face": r(~found),
            "per_fold": [r(fold == j) for j in np.unique(fold)]}


def fer_package(paths, labels) -> np.ndarray:
    """The `fer` package (mini-Xception, OpenCV face detector by default): happy vs sad by its two scores
    on the largest face; a photo where it finds no face counts as half right (a coin)."""
    import cv2
    from fer import FER

    det = FER()
    hits = []
    for path, y in zip(paths, labels):
        img = cv2.imread(path)
        res = det.detect_emotions(img) if img is not None else []
        if not res:
            hits.append(0.5)
            continue
        top = max(res, key=lambda r: r["box"][2] * r["box"][3])["emotions"]
        hits.append(float((top["sad"] > top["happy"]) == bool(y)))
    return np.array(hits)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", default="runs/photo/facts.npz", help="written by train-photo --save-facts")
    ap.add_argument("--model", default="happy-sad", help="the photo model those facts trained")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not Path(args.facts).is_file():
        print(f"{args.facts}: not found; run the train-photo command of docs/photo.md with --save-facts {args.facts}",
              file=sys.stderr)
        return 2
    from happysad import bundle, train_photo as tp
    from happysad.predict import Predictor

    t0 = time.time()
    f = tp.load_facts(args.facts)
    meta = bundle.read_meta(bundle.resolve(args.model)[1])
    cv = meta["cross_validation"]
    fold = tp.group_folds(f.groups, f.labels, cv["folds"])
    found = f.n_faces > 0
    classes = meta["classes"]
    rows = [{"name": f"{args.model} (photo model, out-of-fold)", **{k: cv["photo_model"][k] for k in
             ("accuracy", "face_found", "no_face", "per_fold")}}]
    rows += [{"name": f"  {n.replace('_', ' ')}", **{k: cv[n][k] for k in ("accuracy", "face_found", "no_face", "per_fold")}}
             for n in ("scene_branch", "face_else_scene")]
    today = Predictor("fer-happy-sad").predict(f.paths)
    rows.append(table("fer-happy-sad, faces (the default before)",
                      np.array([r.get("label") == classes[y] for r, y in zip(today, f.labels)]), fold, found))
    try:
        rows.append(table("fer package (largest face; coin without one)", fer_package(f.paths, f.labels), fold, found))
    except ImportError:
        rows.append({"name": "fer package: not installed (pip install fer)"})
    out = {"photos": len(f.labels), "sources": int(len(set(f.groups.tolist()))), "face_found": int(found.sum()),
           "folds": cv["folds"], "fold_sizes": [int((fold == j).sum()) for j in np.unique(fold)], "rows": rows,
           "seconds": round(time.time() - t0)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['photos']} photos from {out['sources']} sources, face found in {out['face_found']}; "
          f"{out['folds']} folds of {out['fold_sizes']} photos, no source in two folds")
    print(f"{'':<48} {'all':>7} {'face':>7} {'no face':>8}   per fold")
    for r in rows:
        if "accuracy" not in r:
            print(r["name"])
            continue
        print(f"{r['name']:<48} {r['accuracy']:>7} {r['face_found']:>7} {r['no_face']:>8}   {r['per_fold']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
