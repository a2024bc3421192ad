"""Compare face detectors on hand-labelled web photos: recall, false alarms and speed.

    python bench/faces_compare.py            # needs ../shared/datasets/web_happy_sad and the bench extra

bench/web_happy_sad_faces.csv lists 120 images drawn at random (seed 6) from the images that
`happysad clean` keeps in web_happy_sad, each labelled by hand: 1 = a photographed human face whose
expression can be read (frontal or profile, not mostly hidden), 0 = none (cartoons, emoji, paintings,
masks, faces too small or cut up). Recall = share of the 1s where the detector finds at least one face;
"fires on 0" = share of the 0s where it finds one (drawn faces are often found: not always wrong).
Times are per image, median, at the image's own size, one thread of this CPU.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "web_happy_sad"
LABELS = Path(__file__).with_name("web_happy_sad_faces.csv")


def haar(name: str):
    import cv2

    cv2.setNumThreads(1)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)

    def run(img: Image.Image) -> int:
        gray = np.asarray(img.convert("L"))
        return len(cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20)))
    return run


def mtcnn():
    from mtcnn import MTCNN

    det = MTCNN(device="CPU:0")

    def run(img: Image.Image) -> int:
        return len([f for f in det.detect_faces(np.asarray(img)) if f["confidence"] >= 0.9])
    return run


def blazeface(kind: str, **kw):
    from happysad import faces

    det = faces.FaceDetector(kind, threads=1, **kw)
    return lambda img: len(det.detect(img))


DETECTORS = {
    "haar default (OpenCV 4)": lambda: haar("haarcascade_frontalface_default.xml"),
    "haar alt2 (OpenCV 4)": lambda: haar("haarcascade_frontalface_alt2.xml"),
    "mtcnn 1.0 (conf >= 0.9)": mtcnn,
    "BlazeFace short": lambda: blazeface("short", tile_above=1e9),
    "BlazeFace full": lambda: blazeface("full", tile_above=1e9),
    "BlazeFace full + tiles": lambda: blazeface("full"),
    "BlazeFace short+full + tiles (happysad)": lambda: blazeface("short+full"),
}


def main() -> int:
    if not DATA.is_dir():
        print(f"{DATA}: not found (this benchmark needs the shared web photos)", file=sys.stderr)
        return 2
    rows = list(csv.DictReader(LABELS.open()))
    imgs = []
    for r in rows:
        im = Image.open(DATA / r["path"])
        im.seek(0)
        imgs.append((ImageOps.exif_transpose(im.convert("RGB")), r["visible_face"] == "1"))
    n_pos = sum(y for _, y in imgs)
    print(f"{len(imgs)} images, {n_pos} with a visible face (hand-labelled)")
    print(f"| detector | recall | fires on 0 | ms/image (median) |")
    print(f"|---|---|---|---|")
    only = sys.argv[1:]
    for name, make in DETECTORS.items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        try:
            run = make()
        except Exception as e:  # a detector whose package is missing
            print(f"| {name} | not run: {type(e).__name__}: {e} | | |")
            continue
        run(imgs[0][0])  # warm-up
        hits, times = [], []
        for img, y in imgs:
            t = time.perf_counter()
            n = run(img)
            times.append((time.perf_counter() - t) * 1000)
            hits.append((n > 0, y))
        recall = sum(h for h, y in hits if y) / n_pos
        fires = sum(h for h, y in hits if not y) / (len(imgs) - n_pos)
        print(f"| {name} | {recall:.3f} | {fires:.3f} | {statistics.median(times):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
