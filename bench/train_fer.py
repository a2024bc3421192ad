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


def training_command(task: str, run: Path) -> str:
    """The command that retrains this run, rebuilt from its meta.json (so --install-from records the
    training command, not the install step)."""
    t = json.loads((run / "meta.json").read_text())["train"]
    cmd = ["python bench/train_fer.py", task, "--epochs", str(t["epochs"]), "--batch-size", str(t["batch_size"])]
    if t["arch"] != "default":
        cmd += ["--arch", t["arch"]]
    if t.get("seed"):
        cmd += ["--seed", str(t["seed"])]
    cmd += ["--augment-warmup", str(t["augment_warmup"])]
    if t.get("class_weight") is False:
        cmd.append("--no-class-weight")
    if t.get("init_from"):
        cmd += ["--init-from", Path(t["init_from"]).name if "builtin" in t["init_from"] else t["init_from"]]
    if t.get("learning_rate") not in (None, 1e-3):
        cmd += ["--lr", str(t["learning_rate"])]
    return " ".join(cmd + ["--install"])


CARD_KEYS = ("val_accuracy", "val_accuracy_tta", "n", "per_class", "confusion", "epochs", "train_wall_s",
             "train_images_per_s")


def summarize(task_key: str, run: Path, **facts) -> dict:
    """Evaluate a run on FER PublicTest, plain and with flip TTA (what the model card reports)."""
    from happysad import evaluate

    classes = TASKS[task_key]["classes"]
    plain = evaluate.evaluate(FER / "validation", run, classes)
    tta = evaluate.evaluate(FER / "validation", run, classes, tta=True)
    return {"task": task_key, "run": str(run), **facts, "val_accuracy": plain["accuracy"],
            "val_accuracy_tta": tta["accuracy"], "n": plain["n"], "per_class": plain["per_class"],
            "confusion": plain["confusion"]}


def ship(task_key: str, run: Path, summary: dict, command: str, **card) -> Path:
    """Copy a run's weights and meta.json (with a model card) into the package as a built-in model."""
    import keras

    from happysad import bundle, faces

    name = TASKS[task_key]["name"]
    dest = ROOT / "src" / "happysad" / "builtin" / name
    dest.mkdir(parents=True, exist_ok=True)
    # Re-saved without the optimizer state: a third of the size, and inference needs nothing else.
    bundle.save_keras(keras.models.load_model(run / "weights" / "best.keras", compile=False), dest / "model.keras")
    meta = json.loads((run / "meta.json").read_text())
    meta["name"] = name
    # A face model: predict finds and crops faces first, framed like FER2013 (bench/faces_framing.py).
    meta["faces"] = faces.settings()
    meta["model_card"] = {
        "data": "FER2013 train (fitting) and PublicTest = ../shared/datasets/fer2013/validation "
                "(model selection and reporting), 48x48 gray faces",
        "command": command, **card, **{k: summary[k] for k in CARD_KEYS},
    }
    meta["train"].pop("data", None)  # a path on the training machine means nothing to users
    meta["train"].pop("val_data", None)
    (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copy(run / "confusion_matrix.png", ROOT / "docs" / f"{name}-confusion.png")
    shutil.copy(run / "curves.png", ROOT / "docs" / f"{name}-curves.png")
    print(f"installed {dest}")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--arch", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment-warmup", type=int, default=0,
                    help="epochs before augmentation starts (0: from the start, as the shipped models were trained)")
    ap.add_argument("--class-weight", action=argparse.BooleanOptionalAction, default=None,
                    help="balanced class weights (default: the recipe's, on); off suits plain accuracy on 7 "
                         "emotions, where disgust is 1.5%% of the faces")
    ap.add_argument("--init-from", metavar="MODEL", help="fine-tune from this model (e.g. fer-emotion7)")
    ap.add_argument("--lr", type=float, help="learning rate (default: the recipe's 1e-3)")
    ap.add_argument("--project", default=str(ROOT / "runs" / "fer"))
    ap.add_argument("--install", action="store_true", help="copy the model into src/happysad/builtin/")
    ap.add_argument("--install-from", metavar="RUN", help="skip training: evaluate and install this run")
    args = ap.parse_args()
    if not (FER / "train").is_dir():
        print(f"{FER}: FER2013 class folders not found", file=sys.stderr)
        return 2

    from happysad import train

    task = TASKS[args.task]
    if args.install_from:  # evaluate and ship a run trained earlier by this script
        run = Path(args.install_from)
        metrics = json.loads((run / "metrics.json").read_text())
        wall, epochs = metrics["train_seconds"], metrics["epochs_run"]
    else:
        t0 = time.perf_counter()
        res = train.train(FER / "train", classes=task["classes"], val_data=str(FER / "validation"),
                          arch=args.arch, img_size=48, grayscale=True, epochs=args.epochs,
                          batch_size=args.batch_size, seed=args.seed, project=args.project, name=args.task,
                          augment_warmup=args.augment_warmup, class_weight=args.class_weight,
                          init_from=args.init_from, learning_rate=args.lr)
        run, wall, epochs = res.run_dir, time.perf_counter() - t0, res.metrics["epochs_run"]
        metrics = res.metrics
    summary = summarize(args.task, run, epochs=epochs, train_wall_s=round(wall),
                        train_images_per_s=metrics["images_per_second"])
    print(json.dumps(summary, indent=1))
    if args.install or args.install_from:
        ship(args.task, run, summary, training_command(args.task, run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
