"""Stochastic weight averaging (SWA) of a trained happy/sad model, on a CPU.

    python bench/swa_happy_sad.py --epochs 5 --lr 0.003 --out runs/swa/happy-sad

Continues training a model (default: the built-in fer-happy-sad) on FER2013 train's happy and sad faces
at a small constant learning rate with the usual augmentation, averages the weights at the end of each
epoch, recomputes the batch-norm statistics for the average (one pass over the training images), and
scores the average on PublicTest with happysad itself. Only the average is the result; each epoch's
own validation accuracy is logged for the curve, not used to pick anything.
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
sys.path.insert(0, str(ROOT / "bench"))

import train_fer  # noqa: E402  (the model-card evaluation on PublicTest)
import train_fer_gpu as gpu  # noqa: E402  (FER loading, task selection, the batched augmentation)


def recompute_batchnorm(net, x, batch_size: int = 256) -> None:
    """Exact mean of the per-batch statistics over ``x`` (momentum 1 - 1/i at batch i), in train mode as
    during training; the averaged weights never produced the running statistics they carry."""
    import keras

    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [b.momentum for b in bns]
    for b in bns:
        b.moving_mean.assign(np.zeros(b.moving_mean.shape, "float32"))
        b.moving_variance.assign(np.ones(b.moving_variance.shape, "float32"))
    for i, start in enumerate(range(0, len(x), batch_size), 1):
        for b in bns:
            b.momentum = 1 - 1 / i
        net(x[start:start + batch_size].astype("float32"), training=True)
    for b, m in zip(bns, saved):
        b.momentum = m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fer-happy-sad")
    ap.add_argument("--fer", type=Path, default=gpu.FER_DEFAULT)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fer48.npz"))
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "swa" / "happy-sad")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import keras

    from happysad import bundle, files

    keras.utils.set_random_seed(args.seed)
    d = gpu.load_fer(args.fer, args.cache)
    x, y = gpu.select(d["x_train"], d["y_train"], gpu.HAPPY_SAD)
    xv, yv = gpu.select(d["x_validation"], d["y_validation"], gpu.HAPPY_SAD)
    src = bundle.load(args.model)
    net = src.model
    inp = keras.Input((48, 48, 1))
    wrapper = keras.Model(inp, net(gpu.batched_augmenter(args.seed)(inp)))
    wrapper.compile(optimizer=keras.optimizers.SGD(args.lr, momentum=0.9, nesterov=True,
                                                   weight_decay=args.weight_decay),
                    loss=keras.losses.BinaryCrossentropy(label_smoothing=args.label_smoothing))
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.jsonl"
    log.write_text("")

    def emit(**r):
        print(json.dumps(r), flush=True)
        with open(log, "a") as f:
            f.write(json.dumps(r) + "\n")

    emit(event="start", model=args.model, val_accuracy=round(gpu.accuracy(net, xv, yv, 2), 4), n_train=len(x),
         **{k: v for k, v in vars(args).items() if k in ("epochs", "lr", "batch_size", "seed")})
    avg, t0 = None, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        te = time.perf_counter()
        h = wrapper.fit(x, gpu.targets(y, 2), batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
        w = [np.array(v) for v in net.get_weights()]
        avg = w if avg is None else [a + (b - a) / epoch for a, b in zip(avg, w)]
        emit(epoch=epoch, seconds=round(time.perf_counter() - te, 1), loss=round(h.history["loss"][0], 4),
             val_accuracy_this_epoch=round(gpu.accuracy(net, xv, yv, 2), 4))
    net.set_weights(avg)
    recompute_batchnorm(net, x)
    train_s = time.perf_counter() - t0
    bundle.save_keras(net, args.out / "model.keras")
    meta = json.loads(json.dumps(src.meta))
    meta["train"] = {**meta.get("train", {}), "swa": {"from": args.model, "epochs": args.epochs, "lr": args.lr}}
    meta.pop("model_card", None)
    files.write_json(args.out / "meta.json", meta)
    card = train_fer.summarize("happy-sad", args.out)
    emit(event="done", train_s=round(train_s), images_per_s=round(len(x) * args.epochs / train_s),
         **{k: card[k] for k in ("val_accuracy", "val_accuracy_tta", "confusion")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
