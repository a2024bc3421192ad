"""Cache what the photo model's branches see in every shared web photo, for cross-validation.

    python bench/photo_features.py [--out runs/photo/features.npz]

Per photo: EfficientNet-Lite0 features of the whole image and of its mirror image, the faces BlazeFace
finds (boxes, scores), every face cut 48x48 grey as the FER models see it, and Lite0 features of the
largest face in colour. Photos: ../shared/datasets/web_photos (group = source repository) and the
cleaned web_happy_sad (its own group).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def photo_list() -> list[tuple[str, str, str]]:
    """(path, label, group) of every shared web photo."""
    out = []
    web = SHARED / "web_photos"
    for row in csv.DictReader((web / "sources.csv").open()):
        out.append((str(web / row["path"]), row["class"], row["source_repo"]))
    from happysad import clean

    raw = SHARED / "web_happy_sad"
    report = clean.clean(raw, quarantine="/nonexistent-dry-run", dry_run=True, progress=False)
    rejected = {r["path"] for r in report.rejected}
    for p in sorted(raw.glob("*/*")):
        if p.is_file() and str(p.relative_to(raw)) not in rejected:
            out.append((str(p), p.parent.name, "web_happy_sad"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/photo/features.npz")
    ap.add_argument("--weights", default="runs/lite0.weights.h5", help="from bench/convert_lite0.py")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    from happysad import faces, images
    from happysad.model import efficientnet_lite0

    items = photo_list()[: args.limit]
    print(f"{len(items)} photos", flush=True)
    net = efficientnet_lite0()
    net.load_weights(args.weights)
    det = faces.detector()
    opts = faces.crop_options(faces.settings())

    def prepare(item):
        img, _ = images.decode(item[0], "RGB")
        found = det.detect(img)[:64]
        whole = np.asarray(img.resize((224, 224), Image.BILINEAR), np.uint8)
        crops48 = faces.crops(img, found, (48, 48), "L", **opts) if found else np.zeros((0, 48, 48, 1), np.uint8)
        big = (np.asarray(faces.crop(img, found[0], (224, 224), "RGB", margin=0.25, align=True), np.uint8)
               if found else np.zeros((224, 224, 3), np.uint8))
        return img.size, found, whole, crops48, big

    t0 = time.time()
    feats, featsf, facef, meta_rows, crops, crop_owner = [], [], [], [], [], []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(items), 64):
            chunk = list(pool.map(prepare, items[start:start + 64]))
            whole = np.stack([c[2] for c in chunk]).astype(np.float32)
            feats.append(net.predict_on_batch(whole))
            featsf.append(net.predict_on_batch(whole[:, :, ::-1]))
            facef.append(net.predict_on_batch(np.stack([c[4] for c in chunk]).astype(np.float32)))
            for j, (size, found, _, c48, _) in enumerate(chunk):
                k = start + j
                meta_rows.append((size, [(f.box, f.score) for f in found]))
                crops.append(c48)
                crop_owner += [k] * len(c48)
            done = start + len(chunk)
            print(f"{done}/{len(items)} {done / (time.time() - t0):.1f} photos/s", flush=True)
    n_faces = np.array([len(f) for _, f in meta_rows])
    boxes = np.zeros((len(items), 64, 5), np.float32)
    for k, (_, found) in enumerate(meta_rows):
        for j, (b, s) in enumerate(found):
            boxes[k, j] = (*b, s)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, paths=np.array([p for p, _, _ in items]), labels=np.array([lab for _, lab, _ in items]),
        groups=np.array([g for _, _, g in items]), sizes=np.array([s for s, _ in meta_rows]),
        scene=np.concatenate(feats), scene_flip=np.concatenate(featsf), face_lite=np.concatenate(facef),
        n_faces=n_faces, boxes=boxes, crops=np.concatenate(crops), crop_owner=np.array(crop_owner, int))
    print(f"saved {args.out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
