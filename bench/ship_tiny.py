"""Ship a ``happysad distill`` student as a built-in model, with its model card measured here.

    python bench/ship_tiny.py RUN --command "happysad distill ..." [--name fer-happy-sad-tiny]

Scores RUN on FER2013 PublicTest (``../shared/datasets/fer2013/validation``, the teacher's classes)
with happysad itself, whole crops as the other cards do, once as ``predict`` runs it (the int8 LiteRT
copy) and once with its Keras model; writes the card into meta.json and copies model.keras,
model.tflite and meta.json to ``src/happysad/builtin/NAME/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
FER_VAL = ROOT.parent / "shared" / "datasets" / "fer2013" / "validation"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--command", required=True, help="the distill command that made RUN (for the card)")
    ap.add_argument("--name", default="fer-happy-sad-tiny")
    args = ap.parse_args()

    from happysad import bundle, distill, evaluate

    meta = bundle.read_meta(args.run / bundle.META_NAME)
    keras_b = bundle.load(args.run)
    fast = evaluate.evaluate(FER_VAL, bundle.load(args.run, fast=True), meta["classes"], faces=False)
    plain = evaluate.evaluate(FER_VAL, keras_b, meta["classes"], faces=False)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    meta["name"] = args.name
    if meta["train"].get("init_from"):  # a scratch folder of this machine; the card's command says which run
        meta["train"]["init_from"] = "the previous happysad distill run of model_card.command"
    meta["model_card"] = {
        "data": "FER2013 train happy+sad (fitting, with the teacher's soft labels)"
                + (f" + {meta['train']['n_unlabelled']} unlabelled faces (--extra: the teacher's soft labels only)"
                   if meta["train"].get("n_unlabelled") else "")
                + "; PublicTest = ../shared/datasets/fer2013/validation for these figures (no epoch or setting "
                  "was picked on it; a run replaces the shipped model only if it scores higher there)",
        "command": args.command,
        "hardware": f"{os.cpu_count()} CPU cores ({cpu}), shared with other jobs",
        "params": int(keras_b.model.count_params()),
        "runtime": f"{distill.FAST_NAME}, int8 LiteRT (what predict, evaluate and serve run)",
        "val_accuracy": round(fast["accuracy"], 4),
        "val_accuracy_keras": round(plain["accuracy"], 4),
        "n": fast["n"],
        "per_class": fast["per_class"],
        "confusion": fast["confusion"],
        "epochs": meta["train"]["epochs"],
        "train_wall_s": meta["train"]["seconds"],
    }
    dest = bundle.BUILTIN_DIR / args.name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("model.keras", distill.FAST_NAME):
        shutil.copy(args.run / f, dest / f)
    bundle.write_json(dest / bundle.META_NAME, meta)
    print(f"{dest}: int8 {fast['accuracy']:.4f}, Keras {plain['accuracy']:.4f} on {fast['n']} faces; "
          f"confusion {fast['confusion']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
