"""Experiment (not shipped): fine-tune fer-happy-sad with low-resolution augmentation.

    python bench/faces_lowres.py [--epochs 4] [--out runs/faces-lowres]
    python bench/faces_web.py --model runs/faces-lowres

Hypothesis from the web-photo errors (docs/faces.md): crowd faces of 15-30 px, blurred when upscaled
to 48 px, are misread. So half of the training batches are shrunk to a random side of 12-40 px and
scaled back up, on top of the usual augmentation; SGD with a cosine learning rate from 0.003. Trains on
FER2013 train happy/sad and prints PublicTest accuracy per epoch; writes a model folder for faces_web.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_fer_gpu import FER_DEFAULT, load_fer, select, HAPPY_SAD  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "faces-lowres")
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    from happysad import data

    d = load_fer(FER_DEFAULT, Path("/tmp/fer48.npz"))
    xtr, ytr = select(d["x_train"], d["y_train"], HAPPY_SAD)
    xva, yva = select(d["x_validation"], d["y_validation"], HAPPY_SAD)
    keras.utils.set_random_seed(0)
    src = ROOT / "src" / "happysad" / "builtin" / "fer-happy-sad"
    net = keras.models.load_model(src / "model.keras")

    class LowRes(keras.layers.Layer):
        def call(self, x, training=False):
            if not training:
                return x
            side = tf.random.uniform([], 12, 41, dtype=tf.int32)
            blurred = tf.image.resize(tf.image.resize(x, tf.stack([side, side]), method="area"), [48, 48])
            return tf.cond(tf.random.uniform([]) < 0.5, lambda: blurred, lambda: x)

        def compute_output_shape(self, shape):
            return shape

    inp = keras.Input((48, 48, 1))
    wrap = keras.Model(inp, net(data.augmenter(0)(LowRes()(inp))))
    steps = args.epochs * int(np.ceil(len(xtr) / 128))
    wrap.compile(keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.003, steps), momentum=0.9,
                                      nesterov=True),
                 keras.losses.BinaryCrossentropy(label_smoothing=0.05), metrics=["accuracy"])
    wrap.fit(xtr, ytr.astype("float32")[:, None], batch_size=128, epochs=args.epochs, verbose=2,
             validation_data=(xva, yva.astype("float32")[:, None]))
    args.out.mkdir(parents=True, exist_ok=True)
    net.save(args.out / "model.keras")
    meta = json.loads((src / "meta.json").read_text())
    meta.pop("model_card", None)
    meta["name"] = "fer-happy-sad + low-resolution fine-tuning (experiment)"
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    p = net.predict(xva, batch_size=256, verbose=0)[:, 0]
    print(json.dumps({"fer_val_accuracy": round(float(((p >= 0.5) == yva).mean()), 4), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
