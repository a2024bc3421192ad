"""Does judging each web face from several framings help? A probe of the face model on the shared web
photos: every face found is cut with other margins and heights than the shipped ones (faces.MARGIN,
faces.RAISE), each framing scored alone and several averaged, as a photo's face vote (area x score).

    happysad train-photo ... --save-facts runs/photo/facts.npz      # the command in docs/photo.md
    python bench/face_framings.py [--facts runs/photo/facts.npz] [--model fer-happy-sad] [--json]

The face model is one that never saw these photos (``fer-happy-sad`` by default), so the figures are
fair without folds. Faces are found again here, as ``predict`` finds them; a photo that is a face crop
is judged whole in every framing. About 9 minutes on a 2-core CPU (docs/photo.md, fifth round).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from happysad import faces, photo  # noqa: E402
from happysad.predict import MAX_FACES, Predictor, image_probabilities  # noqa: E402
from happysad.train_photo import load_facts  # noqa: E402

MARGINS = (0.0, faces.MARGIN, 0.2, 0.35)   # box widths added on each side
RAISES = (0.0, faces.RAISE, 0.18)          # box heights the centre sits above the box centre


def framings() -> list[tuple[float, float]]:
    return [(m, faces.RAISE) for m in MARGINS] + [(faces.MARGIN, r) for r in RAISES if r != faces.RAISE]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--facts", default="runs/photo/facts.npz", help="train-photo --save-facts file (paths, labels)")
    ap.add_argument("--model", default="fer-happy-sad", help="a face model that never saw these photos")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    f = load_facts(args.facts)
    judge = Predictor(args.model, tta="flip", faces=False)  # each crop averaged with its mirror image
    h, w = judge.bundle.image_size
    mode = judge.bundle.pil_mode
    det = faces.detector()
    views = framings()
    votes, labels = [], []  # per photo with a face: (framings, faces, classes) and its label
    t0 = time.time()
    for path, y in zip(f.paths, f.labels):
        img = photo.whole_image(path)
        found = photo.find_faces(det, img, MAX_FACES)
        if not found:
            continue
        if faces.is_face_crop(img, found):
            whole = faces.face_inputs(img, found, (w, h), mode, faces.settings())
            x, found = np.repeat(whole[None], len(views), 0), found[:1]
        else:
            x = np.stack([faces.crops(img, found, (w, h), mode, margin=m, raise_=r) for m, r in views])
        p = judge.predict_arrays(x.reshape(-1, *x.shape[2:])).reshape(len(views), len(found), -1)
        votes.append((p, [g.area * g.score for g in found]))
        labels.append(int(y))
    labels = np.array(labels)

    def accuracy(which: list[int]) -> float:
        pred = [image_probabilities(p[which].mean(axis=0), wt).argmax() for p, wt in votes]
        return round(float((np.array(pred) == labels).mean()), 4)

    rows = [{"framing": f"margin {m}, raise {r}", "accuracy": accuracy([i])} for i, (m, r) in enumerate(views)]
    rows.append({"framing": f"mean of the {len(MARGINS)} margins", "accuracy": accuracy(list(range(len(MARGINS))))})
    rows.append({"framing": f"mean of all {len(views)}", "accuracy": accuracy(list(range(len(views))))})
    out = {"model": args.model, "photos_with_a_face": len(labels), "seconds": round(time.time() - t0), "rows": rows}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} on {len(labels)} web photos with a face found (image-level vote, mirror averaged)")
        for r in rows:
            print(f"  {r['framing']:<28} {r['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
