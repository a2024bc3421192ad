"""Train the built-in FER2013 models on a GPU: longer and wider than a 2-core CPU allows.

    python bench/train_fer_gpu.py --pack .gpu/fer.tar.xz                                 # here: data to carry
    KERAS_BACKEND=torch python bench/train_fer_gpu.py --fer .gpu/fer.tar.xz --width 96 --out runs/fer-gpu/w96
                                                                                         # on the GPU machine
    python bench/train_fer_gpu.py --install-from runs/fer-gpu/w96 --task emotion7        # here, to ship it

Runs where TensorFlow is absent: Keras 3 on PyTorch (``KERAS_BACKEND=torch``; the GPU machines lent to
this project carry PyTorch and JAX, not TensorFlow). The model is happysad's own ``default``
architecture (model.default, only wider), fed the pixels happysad feeds it (images.load_for_model: gray
48x48 uint8, scaled inside the model) and augmented as data.augmenter does (on the torch backend as
one batched warp, see batched_augmenter), so the saved ``.keras`` loads, evaluates and predicts in the
TensorFlow-based package unchanged. Two phases in one process:

1. 7 emotions from scratch, SGD with Nesterov momentum, cosine learning rate with warm-up, label
   smoothing, bf16 mixed precision on the GPU;
2. happy vs sad fine-tuned from phase 1 (every layer but the head copied, as ``train --init-from``).

A phase may get a wall-clock budget (``--budget``): from its second epoch on, the script measures the
epoch time (mean of the last three) and cuts the epoch count whenever the rest would not fit, and the
cosine schedule follows the cut count. A run cut once, after epoch 2, equals one given the cut
``--epochs``; a later cut (other jobs slowed the GPU down) shortens the tail of the cosine. Trains
on FER2013 train only; PublicTest (``validation``) is only evaluated, once per epoch, for the log. The
model saved is the last epoch's, not the best one, so no epoch is picked on the validation set.
Writes ``emotion7.keras`` and ``happy-sad.keras`` to ``--out`` and appends one JSON line per event
(set-up, hardware, each epoch, each phase's result) to ``--log``, which several runs may share.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
HAPPY_SAD = ["happy", "sad"]
FER_DEFAULT = ROOT.parent / "shared" / "datasets" / "fer2013"


def load_fer(fer: Path, cache: Path) -> dict[str, np.ndarray]:
    """FER2013 train and validation as uint8 arrays (N, 48, 48, 1) with emotion indices, decoded once
    by happysad's own loader and cached as .npz. ``fer`` is the class-folder tree or a .tar.xz of it."""
    if cache.exists():
        return dict(np.load(cache))
    from happysad import images

    if fer.is_file():  # a packed copy (the device machine receives one file, not 32,000)
        dest = cache.parent / "fer2013"
        with tarfile.open(fer) as tar:
            tar.extractall(cache.parent, filter="data")
        fer = dest
    out = {}
    for part in ("train", "validation"):
        files = [(f, i) for i, c in enumerate(EMOTIONS) for f in sorted((fer / part / c).iterdir())]
        with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
            xs = list(pool.map(lambda fi: images.load_for_model(fi[0], (48, 48), "grayscale"), files))
        out[f"x_{part}"] = np.stack(xs).astype(np.uint8)
        out[f"y_{part}"] = np.array([i for _, i in files], np.int32)
    np.savez(cache, **out)
    return out


def select(x, y, classes):
    """The images of ``classes`` only, relabelled 0..len(classes)-1."""
    idx = [EMOTIONS.index(c) for c in classes]
    keep = np.isin(y, idx)
    return x[keep], np.searchsorted(idx, y[keep])


def targets(y, n):
    """One-hot targets (label smoothing needs them), or a column of 0/1 for one sigmoid output."""
    return y.astype("float32")[:, None] if n == 2 else np.eye(n, dtype="float32")[y]


def batched_augmenter(seed: int = 0):
    """happysad's augmentation (data.augmenter: flip, shift 8 %, rotate 14 deg, zoom 10 %, brightness
    15 %, contrast 20 %) as one affine warp per batch: with torch's grid_sample on the torch backend,
    with keras.ops.image.affine_transform elsewhere (JAX compiles it into the train step). Keras's own
    image layers warp the images of a batch one at a time on the torch backend, which held an H100 to
    ~300 images/s."""
    import keras
    from keras import ops

    torch_backend = keras.backend.backend() == "torch"

    class BatchedAugment(keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.gen = None if torch_backend else keras.random.SeedGenerator(seed)

        def compute_output_shape(self, shape):
            return shape

        def call(self, x, training=False):
            if not training:
                return x
            return self._torch(x) if torch_backend else self._ops(x)

        @staticmethod
        def _jitter(img, u, axes):
            """Brightness then contrast, per image; ``axes`` are the spatial ones."""
            n = ops.shape(img)[0]
            img = img + ops.reshape(u(-0.15, 0.15) * 255, (n, 1, 1, 1))
            mean = ops.mean(img, axis=axes, keepdims=True)
            img = (img - mean) * ops.reshape(u(0.8, 1.2), (n, 1, 1, 1)) + mean
            return ops.clip(img, 0, 255)

        def _torch(self, x):
            import torch
            import torch.nn.functional as F

            n = x.shape[0]

            def u(lo, hi):
                return torch.empty(n, device=x.device).uniform_(lo, hi)

            img = x.permute(0, 3, 1, 2).float()
            angle, zoom = u(-0.04, 0.04) * 2 * math.pi, 1 + u(-0.1, 0.1)
            flip = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0)
            cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
            theta = torch.stack([torch.stack([cos * flip, -sin, u(-0.16, 0.16)], 1),  # grid spans -1..1
                                 torch.stack([sin * flip, cos, u(-0.16, 0.16)], 1)], 1)
            grid = F.affine_grid(theta, list(img.shape), align_corners=False)
            img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
            return self._jitter(img, u, (2, 3)).permute(0, 2, 3, 1)

        def _ops(self, x):
            n = ops.shape(x)[0]
            h, w = x.shape[1], x.shape[2]

            def u(lo, hi):
                return keras.random.uniform((n,), lo, hi, seed=self.gen)

            angle, zoom = u(-0.04, 0.04) * 2 * math.pi, 1 + u(-0.1, 0.1)
            flip = ops.where(u(0, 1) < 0.5, -1.0, 1.0)
            cos, sin = ops.cos(angle) * zoom, ops.sin(angle) * zoom
            # Output pixel (col, row) samples the input at A @ (col - cx, row - cy) + (cx + tx, cy + ty):
            # the same map as the torch branch, written as the projective transform Keras expects.
            cx, cy = (w - 1) / 2, (h - 1) / 2
            tx, ty = u(-0.08, 0.08) * w, u(-0.08, 0.08) * h
            a0, a1, b0, b1 = cos * flip, -sin, sin * flip, cos
            zero = ops.zeros_like(a0)
            t = ops.stack([a0, a1, cx + tx - a0 * cx - a1 * cy,
                           b0, b1, cy + ty - b0 * cx - b1 * cy, zero, zero], axis=1)
            img = ops.image.affine_transform(ops.cast(x, "float32"), t, interpolation="bilinear",
                                             fill_mode="nearest", data_format="channels_last")
            return self._jitter(img, u, (1, 2))

    return BatchedAugment(name="augment")


def build(n_classes, args, seed):
    """happysad's default architecture under the given dtype policy, plus the training wrapper with
    the augmenter in front (float32: pixel arithmetic stays exact)."""
    import keras

    from happysad import model

    keras.config.set_dtype_policy(args.policy)
    net = model.default((48, 48, 1), n_classes, width=args.width, dropout=args.dropout)
    keras.config.set_dtype_policy("float32")
    aug = batched_augmenter(seed)
    inp = keras.Input((48, 48, 1))
    return net, keras.Model(inp, net(aug(inp)))


def emit(args, **record):
    """One JSON line to the shared log (appends of one short line do not interleave) and stdout."""
    line = json.dumps({"tag": args.tag, **record})
    with open(args.log, "a") as f:
        f.write(line + "\n")
    print(line, flush=True)


def fit_phase(name, net, wrapper, xtr, ytr, xva, yva, n, args, lr, budget_s, epochs):
    """Fit with a cosine schedule over as many epochs as fit the budget; returns the history rows."""
    import keras

    loss = (keras.losses.BinaryCrossentropy(label_smoothing=args.label_smoothing) if n == 2
            else keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing))
    opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    wrapper.compile(optimizer=opt, loss=loss, metrics=["accuracy"], steps_per_execution=args.steps_per_execution)
    plan = {"epochs": epochs}
    rows, times = [], []
    t_start = time.perf_counter()

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            warm = args.warmup
            f = (epoch + 1) / warm if epoch < warm else 0.5 * (1 + math.cos(
                math.pi * (epoch - warm) / max(1, plan["epochs"] - warm)))
            self.model.optimizer.learning_rate = lr * max(f, 0.002)
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t0
            times.append(dt)
            if epoch >= 1 and math.isfinite(budget_s):  # epoch 0 includes start-up (and compiling)
                left = budget_s - (time.perf_counter() - t_start)
                recent = np.mean(times[max(1, epoch - 2):])  # up to the last three, never epoch 0
                fit = epoch + 1 + int(left / recent)
                if fit < plan["epochs"]:
                    plan["epochs"] = max(fit, epoch + 1)  # over budget: this epoch is the last
                    emit(args, phase=name, event="cut", after_epoch=epoch + 1, epochs=plan["epochs"])
            row = {"epoch": epoch + 1, "seconds": round(dt, 2),
                   "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                   **{k: round(float(v), 4) for k, v in (logs or {}).items()}}
            rows.append(row)
            emit(args, phase=name, **row)
            if epoch + 1 >= plan["epochs"]:
                self.model.stop_training = True

    wrapper.fit(xtr, targets(ytr, n), batch_size=args.batch_size, epochs=epochs, shuffle=True,
                validation_data=(xva, targets(yva, n)), validation_batch_size=512,
                callbacks=[Schedule()], verbose=0)
    return rows


def save_float32(net, n_classes, args, path):
    """Rebuild under float32 and save without the optimizer, so a CPU runs it as any happysad model."""
    import keras

    from happysad import model

    keras.config.set_dtype_policy("float32")
    clean = model.default((48, 48, 1), n_classes, width=args.width, dropout=args.dropout)
    clean.set_weights(net.get_weights())
    clean.save(path)
    return clean


def accuracy(net, x, y, n):
    p = net.predict(x, batch_size=512, verbose=0)
    pred = (p[:, 0] >= 0.5).astype(int) if n == 2 else p.argmax(1)
    return float((pred == y).mean())


def command(setup: dict, phase: str) -> str:
    """The command that retrains a run, from its logged options (epochs as the run ended up with)."""
    o, epochs = setup["options"], setup["epochs_run"]
    cmd = [f"KERAS_BACKEND={setup['backend']} python bench/train_fer_gpu.py", "--width", o["width"],
           "--epochs", str(epochs["emotion7"])]
    if phase == "happy-sad":
        cmd += ["--finetune-epochs", str(epochs["happy-sad"])]
    ap = parser()  # options the run left at their defaults are left out
    recipe = ("dropout", "batch_size", "lr", "finetune_lr", "seed", "weight_decay", "label_smoothing", "warmup",
              "policy", "steps_per_execution")
    cmd += [f"--{k.replace('_', '-')} {o[k]}" for k in recipe if o.get(k, str(ap.get_default(k))) != str(ap.get_default(k))]
    return " ".join(cmd)


def install(run_dir: Path, task: str, log_path: Path | None) -> int:
    """Ship one phase of a GPU run as a built-in model (here, with TensorFlow): evaluate it with happysad
    itself on PublicTest, plot its curves and confusion matrix, write meta.json and the model card."""
    import csv
    import shutil

    sys.path.insert(0, str(ROOT / "bench"))
    import train_fer

    from happysad import bundle, report

    log_path = log_path or next(p for p in (run_dir / "log.jsonl", run_dir.parent / "log.jsonl") if p.exists())
    rows = [json.loads(line) for line in open(log_path)]
    rows = [r for r in rows if r["tag"] == run_dir.name]
    setup = next(r for r in rows if r.get("event") == "setup")
    done = {r["phase"]: r for r in rows if r.get("event") == "done"}
    history = [r for r in rows if r.get("phase") == task and "epoch" in r]
    setup["epochs_run"] = {p: d["epochs"] for p, d in done.items()}
    o, classes = setup["options"], HAPPY_SAD if task == "happy-sad" else EMOTIONS
    run = run_dir / task
    (run / "weights").mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / f"{task}.keras", run / "weights" / "best.keras")
    engine = f"PyTorch {setup['torch']}" if setup["backend"] == "torch" else f"JAX {setup['jax']}"
    trained_with = (f"Keras {setup['keras']} on {engine}, {o['policy']}, "
                    f"{', '.join(setup['devices'])}")
    train = {"recipe": "bench/train_fer_gpu.py", "arch": "default", "img_size": 48, "grayscale": True,
             "epochs": done[task]["epochs"], "batch_size": int(o["batch_size"]), "seed": int(o["seed"]),
             "optimizer": "SGD, Nesterov momentum 0.9", "schedule": f"cosine, {o['warmup']} warm-up epochs",
             "learning_rate": float(o["finetune_lr"] if task == "happy-sad" else o["lr"]),
             "weight_decay": float(o["weight_decay"]), "label_smoothing": float(o["label_smoothing"]),
             "dropout": float(o["dropout"]), "augment": True, "class_weight": False,
             "init_from": "the emotion7 phase of the same run" if task == "happy-sad" else None,
             "trained_with": trained_with}
    bundle.write_json(run / "meta.json", bundle.make_meta(
        classes=classes, img_size=(48, 48), color_mode="grayscale", arch="default",
        arch_options={"width": int(o["width"])}, train=train))
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "accuracy", "loss", "val_accuracy", "val_loss", "lr"], extrasaction="ignore")
        w.writeheader()
        w.writerows({**r, "epoch": r["epoch"] - 1} for r in history)
    title = f"{train_fer.TASKS[task]['name']} (GPU, width {o['width']})"
    report.plot_curves(run / "results.csv", run / "curves.png", title)
    summary = train_fer.summarize(task, run, epochs=done[task]["epochs"], train_wall_s=round(done[task]["train_s"]),
                                  train_images_per_s=done[task]["images_per_s"])
    report.plot_confusion(summary["confusion"], classes, run / "confusion_matrix.png", title)
    print(json.dumps(summary, indent=1))
    train_fer.ship(task, run, summary, command(setup, task), hardware=setup["devices"][0],
                   trained_with=trained_with, params=int(done["emotion7"]["params"]))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, default=FER_DEFAULT)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fer48.npz"))
    ap.add_argument("--out", type=Path, default=Path("runs/fer-gpu"))
    ap.add_argument("--log", type=Path, help="JSON-lines log (default: OUT/log.jsonl)")
    ap.add_argument("--prepare", action="store_true", help="only decode FER2013 into --cache, then stop")
    ap.add_argument("--pack", type=Path, metavar="FILE.tar.xz",
                    help="write the --fer folder as one .tar.xz (44 MiB) to carry to a GPU machine, then stop")
    ap.add_argument("--tag", default="run")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--finetune-lr", type=float, default=0.01)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=150, help="7 emotions, at most (the budget may cut it)")
    ap.add_argument("--finetune-epochs", type=int, default=60)
    ap.add_argument("--budget", type=float, default=float("inf"),
                    help="seconds for the 7-emotion phase (fewer epochs if they would not fit)")
    ap.add_argument("--finetune-budget", type=float, default=float("inf"))
    ap.add_argument("--steps-per-execution", type=int, default=1,
                    help="train steps per compiled call (JAX: fewer trips back to Python; PyTorch takes only 1)")
    ap.add_argument("--policy", default="mixed_bfloat16", help="Keras dtype policy while training")
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--install-from", type=Path, metavar="RUN",
                    help="ship RUN's model as a built-in one (run here, with TensorFlow)")
    ap.add_argument("--task", choices=["emotion7", "happy-sad"], help="with --install-from: which phase")
    return ap


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    if args.pack:
        with tarfile.open(args.pack, "w:xz", preset=9) as tar:
            tar.add(args.fer, arcname="fer2013")
        print(f"wrote {args.pack} ({args.pack.stat().st_size / 2**20:.1f} MiB)")
        return 0
    if args.install_from:
        if not args.task:
            ap.error("--install-from needs --task emotion7 or --task happy-sad")
        return install(args.install_from, args.task, args.log)

    import keras

    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    args.log = args.log or args.out / "log.jsonl"
    t0 = time.perf_counter()
    d = load_fer(args.fer, args.cache)
    if args.prepare:
        print(f"decoded FER2013 into {args.cache} in {time.perf_counter() - t0:.1f} s")
        return 0
    xtr, ytr = d["x_train"], d["y_train"]
    xva, yva = d["x_validation"], d["y_validation"]
    if args.limit:
        keep = np.random.default_rng(0).permutation(len(xtr))[: args.limit]
        xtr, ytr = xtr[keep], ytr[keep]
    setup = {"options": {k: str(v) for k, v in vars(args).items()}, "backend": keras.backend.backend(),
             "keras": keras.__version__, "python": platform.python_version(), "host_cpus": os.cpu_count(),
             "n_train": len(xtr), "n_val": len(xva)}
    if keras.backend.backend() == "torch":  # (asking JAX for its devices would take the GPU's memory)
        import torch

        setup.update(torch=torch.__version__, devices=[torch.cuda.get_device_name(0)]
                     if torch.cuda.is_available() else ["cpu"])
    elif keras.backend.backend() == "jax":
        import jax

        setup.update(jax=jax.__version__, devices=[x.device_kind for x in jax.devices()])
    emit(args, event="setup", **setup)

    # Phase 1: 7 emotions.
    t1 = time.perf_counter()
    net7, wrap7 = build(7, args, args.seed)
    rows = fit_phase("emotion7", net7, wrap7, xtr, ytr, xva, yva, 7, args, args.lr, args.budget, args.epochs)
    wall = time.perf_counter() - t1
    clean7 = save_float32(net7, 7, args, args.out / "emotion7.keras")
    emit(args, event="done", phase="emotion7", params=int(clean7.count_params()), epochs=len(rows),
         train_s=round(wall, 1), images_per_s=round(len(xtr) * len(rows) / wall),
         val_accuracy=round(accuracy(clean7, xva, yva, 7), 4))

    # Phase 2: happy vs sad, from phase 1's features.
    t2 = time.perf_counter()
    xtr2, ytr2 = select(xtr, ytr, HAPPY_SAD)
    xva2, yva2 = select(xva, yva, HAPPY_SAD)
    net2, wrap2 = build(2, args, args.seed + 1)
    from happysad import model

    copied, _ = model.copy_matching_weights(net2, net7)
    rows = fit_phase("happy-sad", net2, wrap2, xtr2, ytr2, xva2, yva2, 2, args, args.finetune_lr,
                     args.finetune_budget, args.finetune_epochs)
    wall = time.perf_counter() - t2
    clean2 = save_float32(net2, 2, args, args.out / "happy-sad.keras")
    emit(args, event="done", phase="happy-sad", layers_copied=copied, epochs=len(rows), train_s=round(wall, 1),
         images_per_s=round(len(xtr2) * len(rows) / wall),
         val_accuracy=round(accuracy(clean2, xva2, yva2, 2), 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
