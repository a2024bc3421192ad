"""Face detection + classification time for one 640x480 photo with one face (target: <= 100 ms).

    python bench/faces_latency.py [--runs 60] [--model happy-sad|fer-happy-sad]

The photo is scikit-image's astronaut (a real face photo shipped in a package) resized into a
640x480 JPEG. Each run is what `happysad predict photo.jpg` does per image after start-up: decode,
detect (BlazeFace short + full range), align and crop, classify. With the photo model (the default)
the first stage also runs both branches on the photo and its mirror image; the second is the fusion.
Prints the median and the 90th percentile of the wall time of a single-image call.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--model", default="happy-sad")
    args = ap.parse_args()
    from PIL import Image
    from skimage import data

    from happysad.predict import Predictor

    photo = Image.fromarray(data.astronaut()).resize((480, 480)).crop((-80, 0, 560, 480))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    pred = Predictor(args.model, faces=True)
    stages = {"prepare": [], "total": []}
    for i in range(args.runs + 3):
        t0 = time.perf_counter()
        prep = pred.prepare(jpeg)
        t1 = time.perf_counter()
        r = pred.finish("photo.jpg", prep, pred.predict_arrays(prep.x))
        t2 = time.perf_counter()
        if i >= 3:  # the first calls trace the model
            stages["prepare"].append((t1 - t0) * 1000)
            stages["total"].append((t2 - t0) * 1000)
    assert r["face_found"] and len(r["faces"]) == 1, r
    for k, v in stages.items():
        q = statistics.quantiles(v, n=10)
        print(f"{k:<12} median {statistics.median(v):6.1f} ms   p90 {q[-1]:6.1f} ms   ({len(v)} runs)")
    print(f"label {r['label']} {r['probabilities']}  box {r['faces'][0]['box']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
