"""Single-image latency: Keras vs onnxruntime vs LiteRT on the same model and the same images.

    python bench/latency.py [--model RUN] [--repeats 200] [--threads N]

Without --model it trains a small demo model first (default arch, 48x48, 2 epochs; accuracy does not
matter for latency). Prints one table row per backend: median and p90 milliseconds per image for one
image per call (the `predict_on_batch` call only; decoding the file is the same for all three and is
shown separately), plus the max |p - p_keras| on the images.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402


def demo_model(work: Path) -> Path:
    from happysad import demo, train

    data = demo.make_dataset(work / "data", n_per_class=100, seed=0)
    return train.train(data, arch="default", img_size=48, epochs=2, seed=0,
                       project=str(work / "runs"), name="bench", verbose=False).run_dir


def timed(fn, x: np.ndarray, repeats: int) -> tuple[float, float]:
    for i in range(10):  # warm-up (graph tracing, allocation)
        fn(x[i % len(x)][None])
    ms = []
    for i in range(repeats):
        xi = x[i % len(x)][None]
        t0 = time.perf_counter()
        fn(xi)
        ms.append((time.perf_counter() - t0) * 1000)
    return float(np.median(ms)), float(np.percentile(ms, 90))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="run folder (default: train a small demo model)")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, help="intra-op threads for onnxruntime and LiteRT (default: theirs)")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from happysad import bundle, demo, export, images, runtime

    tmp = Path(tempfile.mkdtemp(prefix="happysad-bench-"))
    run = Path(args.model) if args.model else demo_model(tmp)
    b = bundle.load(run)
    onnx_path = export.export(b, "onnx", tmp / "m.onnx")
    tfl_path = export.export(b, "tflite", tmp / "m.tflite")
    files = sorted(demo.make_dataset(tmp / "imgs", n_per_class=25, seed=7).rglob("*.*"))
    t0 = time.perf_counter()
    x = np.stack([images.load_for_model(f, b.image_size, b.color_mode) for f in files]).astype(np.float32)
    decode_ms = (time.perf_counter() - t0) * 1000 / len(files)

    backends = {"keras (predict_on_batch)": b.model,
                "onnxruntime": runtime.OnnxModel(onnx_path, args.threads),
                "LiteRT (ai-edge-litert)": runtime.LiteRTModel(tfl_path, args.threads)}
    ref = np.asarray(b.model.predict_on_batch(x))
    h, w = b.image_size
    print(f"model {run} ({b.meta.get('arch')}, {h}x{w} {b.color_mode}, {b.model.count_params():,} params); "
          f"{len(files)} images, {args.repeats} single-image calls each; TF {tf.__version__}, "
          f"Keras {keras.__version__}, {os.cpu_count()} CPUs")
    print(f"decode + resize one file (same for all): {decode_ms:.2f} ms\n")
    print("| backend | median ms/image | p90 ms/image | max abs diff vs Keras |")
    print("|---|---:|---:|---:|")
    for name, m in backends.items():
        med, p90 = timed(m.predict_on_batch, x, args.repeats)
        diff = float(np.abs(np.asarray(m.predict_on_batch(x)) - ref).max())
        print(f"| {name} | {med:.2f} | {p90:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
