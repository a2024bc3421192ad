"""Train the built-in FER2013 models and print their figures.

    python bench/train_fer.py happy-sad            # binary happy vs sad
    python bench/train_fer.py emotion7             # all 7 emotions
    python bench/train_fer.py happy-sad --install  # also ship it as the built-in model

Trains on ../shared/datasets/fer2013/train only and selects (early stopping, best checkpoint) on
../shared/datasets/fer2013/validation (FER2013 PublicTest), which is also where the figures come from:
nothing else exists for us. Prints accuracy (plain and with horizontal-flip TTA), per-class figures,
epochs, wall time and training images/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT.parent / "shared" / "datasets" / "fer2013"
TASKS = {
    "happy-sad": dict(name="fer-happy-sad", classes=["happy", "sad"]),
    "emotion7": dict(name="fer-emotion7",
                     classes=["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--arch", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment-warmup", type=int, default=0,
                    help="epochs before augmentation starts (0: from the start, as the shipped models were trained)")
    ap.add_argument("--project", default=str(ROOT / "runs" / "fer"))
    ap.add_argument("--install", action="store_true", help="copy the model into src/happysad/builtin/")
    args = ap.parse_args()
    if not (FER / "train").is_dir():
        print(f"{FER}: FER2013 class folders not found", file=sys.stderr)
        return 2

    from happysad import evaluate, train

    task = TASKS[args.task]
    t0 = time.perf_counter()
    res = train.train(FER / "train", classes=task["classes"], val_data=str(FER / "validation"),
                      arch=args.arch, img_size=48, grayscale=True, epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, project=args.project, name=args.task,
                      augment_warmup=args.augment_warmup)
    wall = time.perf_counter() - t0
    plain = evaluate.evaluate(FER / "validation", res.run_dir, task["classes"])
    tta = evaluate.evaluate(FER / "validation", res.run_dir, task["classes"], tta=True)
    summary = {
        "task": args.task, "run": str(res.run_dir), "epochs": res.metrics["epochs_run"],
        "train_wall_s": round(wall), "train_images_per_s": res.metrics["images_per_second"],
        "val_accuracy": plain["accuracy"], "val_accuracy_tta": tta["accuracy"], "n": plain["n"],
        "per_class": plain["per_class"], "confusion": plain["confusion"],
    }
    print(json.dumps(summary, indent=1))
    if args.install:
        dest = ROOT / "src" / "happysad" / "builtin" / task["name"]
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(res.run_dir / "weights" / "best.keras", dest / "model.keras")
        meta = json.loads((res.run_dir / "meta.json").read_text())
        meta["name"] = task["name"]
        meta["model_card"] = {
            "data": "FER2013 train (fitting) and PublicTest (selection and reporting), 48x48 gray faces",
            "command": f"python bench/train_fer.py {args.task} --epochs {args.epochs} --install",
            "val_accuracy": plain["accuracy"], "val_accuracy_tta": tta["accuracy"], "n": plain["n"],
            "per_class": plain["per_class"], "confusion": plain["confusion"],
            "epochs": res.metrics["epochs_run"], "train_wall_s": round(wall),
        }
        meta["train"].pop("data", None)  # a path on the training machine means nothing to users
        (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.copy(res.run_dir / "confusion_matrix.png", dest.parent.parent.parent.parent / "docs" /
                    f"{task['name']}-confusion.png")
        print(f"installed {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
