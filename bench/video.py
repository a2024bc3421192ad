"""End-to-end video speed: frames per second for a 640x480 clip, every frame (target: >= 15 on 2 cores).

    python bench/video.py [--seconds 10] [--model happy-sad] [--fps 0] [--no-fer]

The clip is made from scikit-image's astronaut photo (happysad.demo.face_clip) at 30 frames/s, H.264 in
MP4: one face moving, growing and tilting all along, a second face in the second half. Timed: what
`happysad predict clip.mp4 --fps 0 --save-annotated out/` does after start-up (decode, find faces,
classify, track, smooth, draw, encode the annotated video, plot the timelines), on at most 2 cores
(CPU affinity). A short clip is run first so that no model tracing is timed. Besides frames/s, the CPU
time per frame (all threads): on a busy machine it says more than the wall time (1000 / CPU ms is about
what one free core would do; two do better).

Beside it, when installed, the `fer` package's own video pipeline on the same file (fer.Video.analyze
with FER's default OpenCV face detector, annotated video written, no frame images): `make bench` and
`pip install --no-deps fer==22.4.0`. fer calls cv2.waitKey, which the headless OpenCV wheel lacks: it is
replaced by a no-op here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

RATE = 30
SIZE = (640, 480)


def make_clip(folder: Path, seconds: float) -> tuple[Path, int]:
    from happysad import demo, video

    n = int(seconds * RATE)
    # face_clip's last third has no face: keep the first two thirds, where there always is one
    frames, _ = demo.face_clip(SIZE, n * 3 // 2)
    frames = frames[:n]
    return video.write_video(frames, folder / "clip.mp4", RATE), n


def timed(fn):
    """(wall seconds, CPU seconds of this process, all threads, result of fn())."""
    w0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    return time.perf_counter() - w0, time.process_time() - c0, res


def time_happysad(path: Path, warm: Path, out: Path, model: str, fps: float):
    from happysad.predict import Predictor

    pred = Predictor(model)
    for _ in pred.predict_video(warm, fps=fps, annotate_to=out / "warm"):
        pass
    return timed(lambda: list(pred.predict_video(path, fps=fps, annotate_to=out)))


def time_fer(path: Path, out: Path):
    try:
        import cv2
        from fer import FER, Video
    except ImportError as e:
        return f"not installed ({e.name}): make bench; pip install --no-deps fer==22.4.0"
    import contextlib
    import logging

    # headless OpenCV has no window functions; fer calls them per frame and at the end
    cv2.waitKey, cv2.destroyAllWindows = (lambda *a: -1), (lambda *a: None)
    logging.getLogger("fer").setLevel(logging.WARNING)
    det = FER()  # its default: OpenCV's Haar cascade face detector, mini-Xception classifier
    det.detect_emotions(cv2.imread(str(out / "warm.png")) if (out / "warm.png").exists() else
                        __import__("numpy").zeros((480, 640, 3), "uint8"))
    v = Video(str(path), outdir=str(out))
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):  # its progress bar
        return timed(lambda: v.analyze(det, display=False, save_frames=False, save_video=True,
                                       annotate_frames=True, zip_images=False, output="pandas"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--model", default="happy-sad")
    ap.add_argument("--fps", type=float, default=0, help="sampling rate (0: every frame, the target's case)")
    ap.add_argument("--no-fer", action="store_true")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 2:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ.setdefault("HAPPYSAD_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip, n = make_clip(tmp, args.seconds)
        (tmp / "warm").mkdir()
        warm, _ = make_clip(tmp / "warm", 1)
        print(f"clip: {SIZE[0]}x{SIZE[1]}, {n} frames at {RATE}/s, H.264; {cores} cores; load average "
              f"{os.getloadavg()[0]:.2f} at start", flush=True)
        secs, cpu, lines = time_happysad(clip, warm, tmp / "happysad", args.model, args.fps)
        frames = sum(r["kind"] == "frame" for r in lines)
        print(f"happysad ({args.model}, --fps {args.fps:g}): {frames} frames in {secs:.1f} s = "
              f"{frames / secs:.1f} frames/s end to end ({lines[-1]['tracks']} tracks); CPU "
              f"{1000 * cpu / frames:.0f} ms a frame", flush=True)
        if not args.no_fer:
            res = time_fer(clip, tmp / "fer")
            if isinstance(res, str):
                print(f"fer package: {res}")
            else:
                secs, cpu, rows = res
                print(f"fer package (Video.analyze, OpenCV detector): {n} frames in {secs:.1f} s = "
                      f"{n / secs:.1f} frames/s ({len(rows)} frames with a face); CPU {1000 * cpu / n:.0f} ms a frame")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
