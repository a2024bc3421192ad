"""Grouped cross-validation of the photo-model recipe on the shared web photos, next to today's face
model and (when installed) the `fer` package, on the same photos and the same folds.

    python bench/photo_cv.py [--facts runs/photo/facts.npz] [--folds 5] [--json]

The photos are ../shared/datasets/web_photos (grouped by source repository, sources.csv) and
../shared/datasets/web_happy_sad (one group): no source is ever in both the fitting and the judged
part of a fold. The figures for the recipe are exactly what `happysad train-photo` computes and saves
in meta.json; the facts (features, faces) are cached in --facts so that reruns skip step 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
WEB = SHARED / "web_photos"
RAW = SHARED / "web_happy_sad"


def raw_groups_csv(path: Path) -> Path:
    """web_happy_sad is one source: a groups CSV that says so (written under runs/, absolute paths)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source_repo"])
        for p in sorted(RAW.glob("*/*")):
            w.writerow([str(p.resolve()), "Hardik-Taneja/Happy-Sad-Image-Classifier"])
    return path


def facts_for(cache: Path, backbone: str | None, weights: str | None):
    from happysad import bundle, faces, train_photo as tp
    from happysad.predict import face_settings

    if cache.is_file():
        return tp.load_facts(cache)
    groups = [WEB / "sources.csv", raw_groups_csv(ROOT / "runs" / "photo" / "web_happy_sad_groups.csv")]
    paths, labels, grp, classes, skipped = tp.collect([WEB, RAW], ["happy", "sad"], groups, "source_repo")
    base = bundle.load("fer-happy-sad")
    feats, _ = tp.penultimate(base.model)
    net = tp.backbone_from(backbone, weights)
    arrays, bad = tp.look(paths, net, feats, (48, 48), "L", face_settings(base.meta) or faces.settings(),
                          progress=lambda d, n: print(f"looked at {d}/{n}", file=sys.stderr) if d % 512 < 32 else None)
    ok = [i for i, p in enumerate(paths) if not any(b.startswith(f"{p}: ") for b in bad)]
    f = tp.Facts([paths[i] for i in ok], np.array([classes.index(labels[i]) for i in ok]),
                 np.array([grp[i] for i in ok]), **arrays)
    tp.save_facts(f, cache)
    return f


def fold_table(name: str, hit: np.ndarray, fold: np.ndarray, found: np.ndarray) -> dict:
    r = lambda m: round(float(hit[m].mean()), 4) if m.any() else None  # noqa: E731
    return {"name": name, "accuracy": r(np.ones(len(hit), bool)), "face_found": r(found), "no_face": r(~found),
            "per_fold": [r(fold == j) for j in np.unique(fold)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", default="runs/photo/facts.npz")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--backbone", help="photo model whose backbone to use (default the built-in happy-sad)")
    ap.add_argument("--backbone-weights", help="or Lite0 weights from bench/convert_lite0.py")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not WEB.is_dir():
        print(f"{WEB}: not found (this benchmark needs the shared web photos)", file=sys.stderr)
        return 2
    from happysad import bundle, train_photo as tp
    from happysad.predict import Predictor

    t0 = time.time()
    f = facts_for(Path(args.facts), args.backbone, args.backbone_weights)
    fold = tp.group_folds(f.groups, f.labels, args.folds)
    found = f.n_faces > 0
    base = bundle.load("fer-happy-sad")
    feats, _ = tp.penultimate(base.model)
    face_data = tp.load_face_data(SHARED / "fer2013" / "train", ["happy", "sad"], feats, (48, 48), "grayscale")
    net = tp.backbone_from(args.backbone, args.backbone_weights)
    parts, cv = tp.fit_parts(f, 2, face_data, args.folds, backbone=net)
    oof = cv.pop("_oof")
    rows = [fold_table("photo model (train-photo recipe)", oof.argmax(1) == f.labels, fold, found)]
    rows.append({"name": "  its scene branch alone", **{k: cv["scene_branch"][k] for k in ("accuracy", "face_found", "no_face", "per_fold")}})
    rows.append({"name": "  its face branch, else scene", **{k: cv["face_else_scene"][k] for k in ("accuracy", "face_found", "no_face", "per_fold")}})
    today = Predictor("fer-happy-sad").predict(f.paths)
    hit = np.array([r.get("label") == ("happy", "sad")[y] for r, y in zip(today, f.labels)])
    rows.append(fold_table("fer-happy-sad with faces (the default before)", hit, fold, found))
    try:
        from fer import FER  # noqa: F401
        rows.append(fer_package(f, fold, found))
    except ImportError:
        rows.append({"name": "fer package: not installed (pip install fer)"})
    out = {"photos": len(f.labels), "groups": int(len(set(f.groups.tolist()))), "face_found": int(found.sum()),
           "folds": cv["folds"], "fold_sizes": [int((fold == j).sum()) for j in np.unique(fold)], "rows": rows,
           "seconds": round(time.time() - t0)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['photos']} photos, {out['groups']} sources, face found in {out['face_found']}; "
          f"{out['folds']} grouped folds of {out['fold_sizes']} photos")
    print(f"{'':<48} {'all':>7} {'face':>7} {'no face':>8}   per fold")
    for r in rows:
        if "accuracy" not in r:
            print(r["name"])
            continue
        print(f"{r['name']:<48} {r['accuracy']:>7} {r['face_found']:>7} {r['no_face']:>8}   {r['per_fold']}")
    return 0


def fer_package(f, fold, found) -> dict:
    """The `fer` package (mini-Xception, OpenCV face detector by default): happy vs sad by its two
    scores on the largest face; a photo without a face counts as wrong half the time (a coin)."""
    import cv2
    from fer import FER

    det = FER()
    hits = []
    for path, y in zip(f.paths, f.labels):
        img = cv2.imread(path)
        res = det.detect_emotions(img) if img is not None else []
        if not res:
            hits.append(0.5)
            continue
        top = max(res, key=lambda r: r["box"][2] * r["box"][3])["emotions"]
        hits.append(float((top["sad"] > top["happy"]) == bool(y)))
    hit = np.array(hits)
    r = lambda m: round(float(hit[m].mean()), 4) if m.any() else None  # noqa: E731
    return {"name": "fer package (largest face; coin without one)", "accuracy": r(np.ones(len(hit), bool)),
            "face_found": r(found), "no_face": r(~found), "per_fold": [r(fold == j) for j in np.unique(fold)]}


if __name__ == "__main__":
    sys.exit(main())
