"""Make docs/gradcam_example.png: Grad-CAM overlays from a demo-trained model on unseen generated faces.

    python bench/gradcam_example.py [--model RUN] [--out docs/gradcam_example.png]

Without --model it trains the demo model (default arch, 48x48, 400 faces per class, 20 epochs: the demo's settings).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--out", default=str(ROOT / "docs" / "gradcam_example.png"))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from happysad import demo, explain, train

    tmp = Path(tempfile.mkdtemp(prefix="happysad-cam-"))
    run = args.model
    if run is None:
        data = demo.make_dataset(tmp / "data", n_per_class=400, seed=0)
        res = train.train(data, arch="default", img_size=48, epochs=20, seed=0,
                          project=str(tmp / "runs"), name="cam", verbose=False)
        run = res.run_dir
        print(f"trained {run}: test accuracy {res.metrics['accuracy']:.3f}")
    unseen = demo.make_dataset(tmp / "unseen", n_per_class=3, seed=2024)
    files = sorted((unseen / "happy").glob("happy_*"))[:3] + sorted((unseen / "sad").glob("sad_*"))[:3]
    cams = explain.explain(files, run)
    fig, axes = plt.subplots(2, len(files), figsize=(2.2 * len(files), 4.8))
    for j, (f, ex) in enumerate(zip(files, cams)):
        axes[0, j].imshow(Image.open(f).convert("RGB"))
        axes[0, j].set_title(f"true: {f.parent.name}", fontsize=9)
        axes[1, j].imshow(ex.overlay)
        axes[1, j].set_title(f"said: {ex.label} {max(ex.probabilities.values()):.2f}", fontsize=9)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle("Grad-CAM (happysad explain): red = what pushed the model to its answer", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
