"""Train the built-in FER2013 models on a GPU machine, with their packaged recipes.

    python bench/train_fer_gpu.py --pack .gpu/fer.tar.xz                                 # here: data to carry
    KERAS_BACKEND=torch PYTHONPATH=src python bench/train_fer_gpu.py --fer .gpu/fer.tar.xz --out runs/fer-gpu/run \
        --budget 420 --finetune-budget 150                                               # on the GPU machine
    python bench/train_fer_gpu.py --install-from runs/fer-gpu/run --task emotion7        # here, to ship it

The recipe is not in this file: phase 1 (7 emotions from scratch) follows
``src/happysad/recipes/fer-emotion7.toml`` and phase 2 (happy vs sad, every layer but the head copied
from phase 1, as ``train --init-from``) ``fer-happy-sad.toml``; ``--recipe7``/``--recipe2`` take other
recipe files and ``--epochs``, ``--finetune-epochs``, ``--width`` override theirs. The model, optimizer,
schedule, loss and augmentation come from happysad itself (model.build, optim, augment), so a model
trained here is the model ``happysad train DATA --recipe fer-emotion7`` trains, only faster.

What stays here is the GPU machine's plumbing:

- **Keras on PyTorch** (``KERAS_BACKEND=torch``; the GPU machines lent to this project carry PyTorch and
  JAX, not TensorFlow, so there is no tf.data): FER2013 is decoded once by happysad's own loader into
  arrays (carried as one .tar.xz), batches come from a Keras PyDataset that applies the recipe's mixup,
  and the augmentation (random crop, then data.augmenter's transforms as one batched warp, then random
  erasing) runs on the GPU in a wrapper in front of the model. bf16 mixed precision while training; the
  model is rebuilt and saved in float32, so it loads, evaluates and predicts in the TensorFlow package.
- **Budgets**: a phase may get a wall-clock budget (``--budget``). From its second epoch on, the script
  measures the epoch time (mean of the last three) and cuts the epoch count whenever the rest would not
  fit; the cosine schedule follows the cut count (the learning rate is set every batch from the recipe's
  schedule over the current count). A run cut once, after epoch 2, equals one given the cut ``--epochs``.

Trains on FER2013 train only; PublicTest (``validation``) is only evaluated, once per epoch, for the
log. The model saved is the last epoch's, so no epoch is picked on the validation set. Writes
``emotion7.keras`` and ``happy-sad.keras`` to ``--out`` and appends one JSON line per event (set-up with
both resolved recipes, hardware, each epoch, each phase's result) to ``--log``, which several runs may
share. On a machine with TensorFlow the same recipes also train with ``happysad train --recipe``.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from happysad import augment, images, model, optim, recipes as recipe_files, train

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
HAPPY_SAD = ["happy", "sad"]
FER_DEFAULT = ROOT.parent / "shared" / "datasets" / "fer2013"
PHASES = {"emotion7": EMOTIONS, "happy-sad": HAPPY_SAD}


def load_fer(fer: Path, cache: Path) -> dict[str, np.ndarray]:
    """FER2013 train and validation as uint8 arrays (N, 48, 48, 1) with emotion indices, decoded once
    by happysad's own loader and cached as .npz. ``fer`` is the class-folder tree or a .tar.xz of it."""
    if cache.exists():
        return dict(np.load(cache))
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


def recipes(args) -> dict[str, train.TrainConfig]:
    """The two phases' resolved recipes, with this run's overrides (phase 2 takes phase 1's width)."""
    both = dict(recipe_files.read_assignment(a, train.RECIPE_FIELDS) for a in args.set)
    given7 = {k: v for k, v in (("epochs", args.epochs), ("width", args.width)) if v is not None}
    given2 = {"epochs": args.finetune_epochs} if args.finetune_epochs else {}
    cfg7 = train.config_from_recipe(args.recipe7, **{**both, **given7})
    cfg2 = train.config_from_recipe(args.recipe2, **{**both, "init_from": None, "width": cfg7.width, **given2})
    out = {"emotion7": cfg7.resolved(), "happy-sad": cfg2.resolved()}
    for phase, cfg in out.items():
        if list(cfg.classes) != PHASES[phase] or (cfg.img_size, cfg.grayscale, cfg.arch) != (48, True, "default"):
            raise SystemExit(f"recipe of {phase}: this script trains {PHASES[phase]} on 48x48 gray faces with "
                             f"arch default; the recipe asks for {cfg.classes}, {cfg.img_size} px, {cfg.arch}")
        if cfg.class_weight or cfg.reduce_lr or cfg.early_stopping or cfg.augment_warmup:
            raise SystemExit(f"recipe of {phase}: class weights, plateau halving, early stopping and an "
                             "augmentation warm-up are not done here; use happysad train")
    return out


def build(n_classes, cfg, policy, seed):
    """happysad's model under the given dtype policy, and the training wrapper with the recipe's
    augmentation in front (float32: pixel arithmetic stays exact)."""
    import keras

    keras.config.set_dtype_policy(policy)
    net = model.build(cfg.arch, (48, 48, 1), n_classes, width=cfg.width, dropout=cfg.dropout)
    keras.config.set_dtype_policy("float32")
    inp = keras.Input((48, 48, 1))
    x = augment.random_pad_crop(cfg.crop_pad, seed=seed)(inp) if cfg.crop_pad else inp
    x = augment.batched_augmenter(seed)(x) if cfg.augment else x
    x = augment.random_erasing(cfg.erasing, seed=seed)(x) if cfg.erasing else x
    return net, keras.Model(inp, net(x))


def batches(x, y, batch_size, mixup, seed):
    """A Keras PyDataset: (pixels, targets) in a new random order each epoch, mixed up as the recipe says."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))
            self.mix = augment.mixup(mixup, seed=seed) if mixup else None

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            xb, yb = x[idx].astype("float32"), y[idx]
            if self.mix is not None:
                xb, yb = (keras.ops.convert_to_numpy(a) for a in self.mix(xb, yb))
            return xb, yb

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(x))

    return Batches()


def emit(args, **record):
    """One JSON line to the shared log (appends of one short line do not interleave) and stdout."""
    line = json.dumps({"tag": args.tag, **record})
    with open(args.log, "a") as f:
        f.write(line + "\n")
    print(line, flush=True)


def fit_phase(name, wrapper, xtr, ytr, xva, yva, n, cfg, args, budget_s):
    """Fit with the recipe's optimizer, loss and schedule over as many epochs as fit the budget;
    returns the history rows."""
    import keras

    steps = math.ceil(len(xtr) / cfg.batch_size)
    plan = {"epochs": cfg.epochs, "lr": optim.schedule(cfg, steps)}
    opt = optim.optimizer(cfg, float(cfg.learning_rate))  # a plain rate, set every batch from plan["lr"]
    wrapper.compile(optimizer=opt, loss=optim.loss(n, cfg.label_smoothing), metrics=["accuracy"],
                    steps_per_execution=args.steps_per_execution)
    rows, times = [], []
    t_start = time.perf_counter()

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.t0 = epoch, time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            lr = plan["lr"]
            step = self.epoch * steps + batch
            rate = lr if isinstance(lr, float) else float(keras.ops.convert_to_numpy(lr(step)))
            self.model.optimizer.learning_rate = rate

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t0
            times.append(dt)
            if epoch >= 1 and math.isfinite(budget_s):  # epoch 0 includes start-up (and compiling)
                left = budget_s - (time.perf_counter() - t_start)
                recent = np.mean(times[max(1, epoch - 2):])  # up to the last three, never epoch 0
                fit = epoch + 1 + int(left / recent)
                if fit < plan["epochs"]:
                    plan["epochs"] = max(fit, epoch + 1)  # over budget: this epoch is the last
                    plan["lr"] = optim.schedule(dataclasses.replace(cfg, epochs=plan["epochs"]), steps)
                    emit(args, phase=name, event="cut", after_epoch=epoch + 1, epochs=plan["epochs"])
            row = {"epoch": epoch + 1, "seconds": round(dt, 2),
                   "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                   **{k: round(float(v), 4) for k, v in (logs or {}).items()}}
            rows.append(row)
            emit(args, phase=name, **row)
            if epoch + 1 >= plan["epochs"]:
                self.model.stop_training = True

    wrapper.fit(batches(xtr, targets(ytr, n), cfg.batch_size, cfg.mixup, cfg.seed), epochs=cfg.epochs,
                validation_data=(xva, targets(yva, n)), validation_batch_size=512, callbacks=[Schedule()], verbose=0)
    return rows


def save_float32(net, n_classes, cfg, path):
    """Rebuild under float32 and save without the optimizer, so a CPU runs it as any happysad model."""
    import keras

    keras.config.set_dtype_policy("float32")
    clean = model.build(cfg.arch, (48, 48, 1), n_classes, width=cfg.width, dropout=cfg.dropout)
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
    cmd = [f"KERAS_BACKEND={setup['backend']} PYTHONPATH=src python bench/train_fer_gpu.py",
           "--epochs", str(epochs["emotion7"])]
    if phase == "happy-sad":
        cmd += ["--finetune-epochs", str(epochs["happy-sad"])]
    ap = parser()  # options the run left at their defaults are left out
    for k in ("recipe7", "recipe2", "width", "policy", "steps_per_execution"):
        if k in o and o[k] != str(ap.get_default(k)):
            cmd.append(f"--{k.replace('_', '-')} {o[k]}")
    cmd += [f"--set '{a}'" for a in o.get("set", [])]
    return " ".join(cmd)


def install(run_dir: Path, task: str, log_path: Path | None) -> int:
    """Ship one phase of a GPU run as a built-in model (here, with TensorFlow): evaluate it with happysad
    itself on PublicTest, plot its curves and confusion matrix, write meta.json and the model card."""
    import csv
    import shutil

    import train_fer  # bench/, beside this script

    from happysad import bundle, report

    log_path = log_path or next(p for p in (run_dir / "log.jsonl", run_dir.parent / "log.jsonl") if p.exists())
    rows = [json.loads(line) for line in open(log_path)]
    rows = [r for r in rows if r["tag"] == run_dir.name]
    setup = next(r for r in rows if r.get("event") == "setup")
    done = {r["phase"]: r for r in rows if r.get("event") == "done"}
    history = [r for r in rows if r.get("phase") == task and "epoch" in r]
    setup["epochs_run"] = {p: d["epochs"] for p, d in done.items()}
    cfg = train.TrainConfig(**{**setup["recipes"][task], "epochs": done[task]["epochs"]})
    run = run_dir / task
    (run / "weights").mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / f"{task}.keras", run / "weights" / "best.keras")
    engine = f"PyTorch {setup['torch']}" if setup["backend"] == "torch" else f"JAX {setup['jax']}"
    trained_with = f"Keras {setup['keras']} on {engine}, {setup['options']['policy']}, {', '.join(setup['devices'])}"
    settings = {**cfg.settings(), "init_from": "the emotion7 phase of the same run" if task == "happy-sad" else None}
    bundle.write_json(run / "meta.json", bundle.make_meta(
        classes=list(cfg.classes), img_size=(48, 48), color_mode="grayscale", arch=cfg.arch,
        arch_options={"width": cfg.width}, tta=train.tta_settings(cfg),
        train={**settings, "recipe": setup["options"]["recipe7" if task == "emotion7" else "recipe2"],
               "trained_with": trained_with}))
    with open(run / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "accuracy", "loss", "val_accuracy", "val_loss", "lr"], extrasaction="ignore")
        w.writeheader()
        w.writerows({**r, "epoch": r["epoch"] - 1} for r in history)
    title = f"{train_fer.TASKS[task]['name']} (GPU, width {cfg.width})"
    report.plot_curves(run / "results.csv", run / "curves.png", title)
    summary = train_fer.summarize(task, run, epochs=done[task]["epochs"], train_wall_s=round(done[task]["train_s"]),
                                  train_images_per_s=done[task]["images_per_s"])
    report.plot_confusion(summary["confusion"], list(cfg.classes), run / "confusion_matrix.png", title)
    print(json.dumps(summary, indent=1))
    train_fer.ship(task, run, summary, command(setup, task), hardware=setup["devices"][0],
                   trained_with=trained_with, params=int(done[task]["params"]))
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
    ap.add_argument("--recipe7", default="fer-emotion7", help="recipe of the 7-emotion phase (name or file)")
    ap.add_argument("--recipe2", default="fer-happy-sad", help="recipe of the happy/sad phase (name or file)")
    ap.add_argument("--width", type=int, help="override the recipe's width")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of both recipes, as in a recipe file (e.g. warmup_epochs=1)")
    ap.add_argument("--epochs", type=int, help="7 emotions, at most (the budget may cut it; default: the recipe's)")
    ap.add_argument("--finetune-epochs", type=int, help="happy vs sad, at most (default: the recipe's)")
    ap.add_argument("--budget", type=float, default=float("inf"),
                    help="seconds for the 7-emotion phase (fewer epochs if they would not fit)")
    ap.add_argument("--finetune-budget", type=float, default=float("inf"))
    ap.add_argument("--steps-per-execution", type=int, default=1,
                    help="train steps per compiled call (JAX: fewer trips back to Python; PyTorch takes only 1)")
    ap.add_argument("--policy", default="mixed_bfloat16", help="Keras dtype policy while training")
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (smoke test)")
    ap.add_argument("--install-from", type=Path, metavar="RUN",
                    help="ship RUN's model as a built-in one (run here, with TensorFlow)")
    ap.add_argument("--task", choices=sorted(PHASES), help="with --install-from: which phase")
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

    cfgs = recipes(args)
    keras.utils.set_random_seed(cfgs["emotion7"].seed)
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
    setup = {"options": {k: v if isinstance(v, list) else str(v) for k, v in vars(args).items()},
             "recipes": {p: c.settings() for p, c in cfgs.items()},
             "backend": keras.backend.backend(), "keras": keras.__version__, "python": platform.python_version(),
             "host_cpus": os.cpu_count(), "n_train": len(xtr), "n_val": len(xva), "devices": ["cpu"]}
    if keras.backend.backend() == "torch":  # (asking JAX for its devices would take the GPU's memory)
        import torch

        setup.update(torch=torch.__version__, devices=[torch.cuda.get_device_name(0)]
                     if torch.cuda.is_available() else ["cpu"])
    elif keras.backend.backend() == "jax":
        import jax

        setup.update(jax=jax.__version__, devices=[x.device_kind for x in jax.devices()])
    emit(args, event="setup", **setup)

    # Phase 1: 7 emotions. Phase 2: happy vs sad, from phase 1's features.
    budgets = {"emotion7": args.budget, "happy-sad": args.finetune_budget}
    nets = {}
    for phase, classes in PHASES.items():
        cfg, t1 = cfgs[phase], time.perf_counter()
        x, y = select(xtr, ytr, classes)
        xv, yv = select(xva, yva, classes)
        n = len(classes)
        net, wrapper = build(n, cfg, args.policy, cfg.seed + len(nets))
        copied = model.copy_matching_weights(net, nets["emotion7"])[0] if nets else None
        rows = fit_phase(phase, wrapper, x, y, xv, yv, n, cfg, args, budgets[phase])
        wall = time.perf_counter() - t1
        nets[phase] = save_float32(net, n, cfg, args.out / f"{phase}.keras")
        emit(args, event="done", phase=phase, params=int(nets[phase].count_params()), epochs=len(rows),
             train_s=round(wall, 1), images_per_s=round(len(x) * len(rows) / wall),
             val_accuracy=round(accuracy(nets[phase], xv, yv, n), 4),
             **({"layers_copied": copied} if copied is not None else {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
