"""The packaged FER recipes against the recipe that made today's built-in models, at small scale on the CPU.

    python bench/recipe_cpu.py                        # 7 emotions, 500 faces per class, 12 epochs, width 32
    python bench/recipe_cpu.py --task happy-sad --per-class 1200 --val-per-class 200 --epochs 12 --arms builtin,recipe

Every arm trains the same architecture on the same subsample of FER2013 train for the same number of
epochs (same seed), and is scored on FER2013 PublicTest (``../shared/datasets/fer2013/validation``; all
of it, or ``--val-per-class`` faces per class), which also picks the best epoch by validation loss, the
same way for every arm (no early stopping; cosine schedules end at the last epoch). Arms:

- ``adam``: happysad's default training (Adam, rate halved on plateaus, label smoothing 0.05, early
  stopping off here so that every arm gets the same epochs);
- ``builtin``: the recipe that made today's fer-emotion7 (SGD + Nesterov, cosine with warm-up, weight
  decay, label smoothing 0.05; ``bench/train_fer_gpu.py`` before the recipes became files);
- ``recipe``: the packaged recipe, fer-emotion7 or fer-happy-sad (the above, plus mixup, random crop,
  random erasing, label smoothing 0.1, ten-crop at test time). Happy/sad starts from scratch here in
  every arm (the packaged recipe fine-tunes fer-emotion7), so that only the recipes differ.

Each arm is scored with no test-time averaging, flip and ten-crop. Prints one JSON line per arm and a
table; the run folders (with their config.toml) stay under --project.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER = ROOT.parent / "shared" / "datasets" / "fer2013"

# What differs from the packaged fer-emotion7 recipe in each arm (the rest: same data, size, epochs).
ARMS = {
    "adam": dict(optimizer="adam", schedule="constant", warmup_epochs=0, learning_rate=1e-3, weight_decay=None,
                 nesterov=False, reduce_lr=True, label_smoothing=0.05, mixup=0.0, crop_pad=0, erasing=0.0,
                 dropout=None, tta="none"),
    "builtin": dict(label_smoothing=0.05, mixup=0.0, crop_pad=0, erasing=0.0, tta="none"),
    "recipe": {},
}
RECIPES = {"emotion7": "fer-emotion7", "happy-sad": "fer-happy-sad"}


def subsample_manifest(per_class: int, val_per_class: int, classes: list[str], seed: int, out: Path):
    """A split manifest: ``per_class`` faces of each class from FER train (fewer where a class has
    fewer) and ``val_per_class`` (0: all) of PublicTest as validation (absolute paths, as train
    --val-data writes them). Returns it and the validation rows."""
    import random

    from happysad import split

    rng = random.Random(seed)
    rows = []
    for c in classes:
        files = sorted(p.name for p in (FER / "train" / c).iterdir())
        rows += [split.Row(f"{c}/{f}", c, "train", "") for f in rng.sample(files, min(per_class, len(files)))]
        val = sorted(str(p.resolve()) for p in (FER / "validation" / c).iterdir())
        val = rng.sample(val, min(val_per_class, len(val))) if val_per_class else val
        rows += [split.Row(f, c, "val", "") for f in val]
    split.write_manifest(rows, out)
    return out, [r for r in rows if r.split == "val"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(RECIPES), default="emotion7")
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--val-per-class", type=int, default=0, help="PublicTest faces per class (0: all 3,589)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--warmup-epochs", type=float, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--project", default=str(ROOT / "runs" / "recipe-cpu"))
    args = ap.parse_args()
    if not (FER / "train").is_dir():
        print(f"{FER}: FER2013 class folders not found", file=sys.stderr)
        return 2

    from happysad import evaluate, train
    from happysad.predict import Predictor

    recipe = RECIPES[args.task]
    base = train.config_from_recipe(recipe)
    project = Path(args.project)
    project.mkdir(parents=True, exist_ok=True)
    manifest, val = subsample_manifest(args.per_class, args.val_per_class, list(base.classes), args.seed,
                                       project / "subsample.csv")
    results = []
    for arm in args.arms.split(","):
        t0 = time.perf_counter()
        cfg = train.config_from_recipe(recipe, init_from=None, **{
            **ARMS[arm], "epochs": args.epochs, "width": args.width, "seed": args.seed, "split": str(manifest),
            "warmup_epochs": ARMS[arm].get("warmup_epochs", args.warmup_epochs), "early_stopping": False,
            "project": str(project), "name": arm})
        res = train.train(FER / "train", cfg)
        wall = time.perf_counter() - t0
        scores = {tta: evaluate.evaluate_files(Predictor(res.run_dir, tta=tta), [r.path for r in val],
                                               [r.label for r in val])["accuracy"]
                  for tta in ("none", "flip", "tencrop")}
        row = {"arm": arm, "run": str(res.run_dir), "epochs": args.epochs,
               "train_s": round(wall), **{f"publictest_{k}": v for k, v in scores.items()}}
        print(json.dumps(row), flush=True)
        results.append(row)
    print(f"\n{len(base.classes)} classes, {args.per_class} train faces per class, {args.epochs} epochs, "
          f"width {args.width}; accuracy on {len(val)} FER PublicTest faces (no TTA / flip / ten-crop):")
    for r in results:
        print(f"  {r['arm']:<14} {r['publictest_none']:.4f} / {r['publictest_flip']:.4f} / "
              f"{r['publictest_tencrop']:.4f}   ({r['train_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
