"""Measure how FER2013 frames a face relative to a BlazeFace box; faces.MARGIN and faces.RAISE come from it.

    python bench/faces_framing.py [N]     # N random FER2013 validation faces (default 600)

Each 48x48 face is upscaled to 192 px and placed in the middle of a grey 384 px canvas (the detector
needs context around a tight crop). From the box found: margin = how much wider than the box the FER
crop is on each side (in box widths), raise = how far the crop centre sits above the box centre (in box
heights). Crops cut with these look like the images the built-in models were trained on.
"""

import random
import statistics
import sys
from pathlib import Path

from PIL import Image

from happysad import faces

FER = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013" / "validation"


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    files = sorted(FER.glob("*/*"))
    if not files:
        print(f"{FER}: not found", file=sys.stderr)
        return 2
    random.Random(0).shuffle(files)
    det = faces.FaceDetector(min_face=4)
    margins, raises, found = [], [], 0
    for f in files[:n]:
        canvas = Image.new("RGB", (384, 384), (128, 128, 128))
        canvas.paste(Image.open(f).convert("RGB").resize((192, 192), Image.BICUBIC), (96, 96))
        got = det.detect(canvas)
        if not got:
            continue
        found += 1
        x, y, w, h = got[0].box
        side = max(w, h)
        margins.append((192 / side - 1) / 2)
        raises.append((y + h / 2 - 192) / side)  # box centre below the image centre = crop centre above
    print(f"face found in {found}/{n} FER2013 validation images")
    print(f"margin median {statistics.median(margins):.3f}  (faces.MARGIN = {faces.MARGIN})")
    print(f"raise  median {statistics.median(raises):.3f}  (faces.RAISE = {faces.RAISE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
