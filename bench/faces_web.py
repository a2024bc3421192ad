"""Image-level happy/sad accuracy on real web photos with the built-in model, with and without faces.

    python bench/faces_web.py [--model fer-happy-sad]

The photos are ../shared/datasets/web_happy_sad after cleaning: `happysad clean` runs as a dry run (the
shared folder is never modified) and the files it would keep are scored, each against its folder's
label. The model never saw these photos. Also prints face-finding recall on the 120 hand-labelled
images of bench/web_happy_sad_faces.csv (see bench/faces_compare.py) and the image-level accuracy on
the photos where a face was found.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "web_happy_sad"
LABELS = Path(__file__).with_name("web_happy_sad_faces.csv")


def by_face_side(results: list[dict], ok: list[bool]) -> dict:
    """Accuracy where a face was found, by the pixel side of the image's largest face: "lo-hi": [right, n]."""
    buckets = {(0, 40): [0, 0], (40, 80): [0, 0], (80, 160): [0, 0], (160, 1 << 30): [0, 0]}
    for r, good in zip((r for r in results if "error" not in r), ok):
        if r.get("face_found"):
            side = max(f["box"][2] for f in r["faces"])
            b = next(v for (lo, hi), v in buckets.items() if lo <= side < hi)
            b[0], b[1] = b[0] + good, b[1] + 1
    return {f"{lo}-{hi if hi < 1 << 30 else ''}": v for (lo, hi), v in buckets.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fer-happy-sad")
    ap.add_argument("--tta", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"{DATA}: not found (this benchmark needs the shared web photos)", file=sys.stderr)
        return 2
    from happysad import clean
    from happysad.predict import Predictor

    report = clean.clean(DATA, quarantine="/nonexistent-dry-run", dry_run=True, progress=False)
    rejected = {r["path"] for r in report.rejected}
    items = [(p, p.parent.name) for p in sorted(DATA.glob("*/*")) if p.is_file()
             and str(p.relative_to(DATA)) not in rejected]
    print(f"{len(items)} photos kept by clean (of {len(items) + len(rejected)})")
    paths, labels = [str(p) for p, _ in items], [lab for _, lab in items]
    out = {}
    for faces in (False, True):
        pred = Predictor(args.model, tta=args.tta, faces=faces)
        t0 = time.perf_counter()
        results = pred.predict(paths)
        secs = time.perf_counter() - t0
        ok = [r["label"] == lab for r, lab in zip(results, labels) if "error" not in r]
        key = "faces" if faces else "whole image"
        out[key] = {"accuracy": round(sum(ok) / len(ok), 4), "n": len(ok), "seconds": round(secs, 1)}
        if faces:
            found = [r.get("face_found") for r in results if "error" not in r]
            with_face = [k for k, f in zip(ok, found) if f]
            out[key].update(face_found_share=round(sum(found) / len(found), 4),
                            accuracy_where_face_found=round(sum(with_face) / max(len(with_face), 1), 4),
                            n_face_found=len(with_face))
            by_path = {Path(r["path"]).relative_to(DATA).as_posix(): r for r in results}
            rows = list(csv.DictReader(LABELS.open()))
            pos = [r for r in rows if r["visible_face"] == "1"]
            out[key]["recall_on_hand_labelled"] = round(
                sum(by_path[r["path"]].get("face_found", False) for r in pos) / len(pos), 4)
            out[key]["accuracy_by_largest_face_side"] = by_face_side(results, ok)
        print(f"{key}: {json.dumps(out[key])}", flush=True)
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    print(f"majority class share: {majority:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
