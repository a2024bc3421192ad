"""The demo: a synthetic smile/frown dataset drawn procedurally, some realistic junk planted in it,
and the whole pipeline run over it (clean -> split -> train -> evaluate -> predict).

No download is needed: the faces are drawn with Pillow and vary in size, position, skin and background
color, rotation, line width, eyes, brows and noise, so a model has to learn the mouth, not a shortcut.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import clean, evaluate, places, predict, split, train
from .errors import UsageError

CLASSES = ("happy", "sad")
SIZE = 96  # side of the saved images
SCALE = 3  # drawn at 3x then downsampled, for smooth lines


def draw_face(rng: np.random.Generator, happy: bool, size: int = SIZE) -> Image.Image:
    """One face: a smiling mouth (arc curving up) or a frowning one (curving down)."""
    S = size * SCALE
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    img = Image.new("RGB", (S, S), bg)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.28, 0.44) * S
    cx = rng.uniform(r * 0.9, S - r * 0.9)
    cy = rng.uniform(r * 0.9, S - r * 0.9)
    base = np.array([rng.uniform(120, 255), rng.uniform(80, 210), rng.uniform(50, 190)])
    skin = tuple(int(v) for v in base)
    ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    lw = max(4, int(rng.uniform(0.08, 0.12) * r))
    d.ellipse([cx - r, cy - r * rng.uniform(1.0, 1.15), cx + r, cy + r], fill=skin, outline=ink, width=lw)
    # Eyes (dots, rings or lines) and optional brows.
    ex, ey, er = r * rng.uniform(0.28, 0.42), cy - r * rng.uniform(0.15, 0.35), r * rng.uniform(0.07, 0.14)
    style = rng.integers(0, 3)
    for sx in (-1, 1):
        x = cx + sx * ex
        if style == 0:
            d.ellipse([x - er, ey - er, x + er, ey + er], fill=ink)
        elif style == 1:
            d.ellipse([x - er, ey - er, x + er, ey + er], outline=ink, width=lw)
        else:
            d.line([x - er, ey, x + er, ey], fill=ink, width=lw)
        if rng.random() < 0.5:
            tilt = rng.uniform(-0.08, 0.08) * r
            d.line([x - er * 1.4, ey - er * 2.2 + sx * tilt, x + er * 1.4, ey - er * 2.2 - sx * tilt],
                   fill=ink, width=lw)
    if rng.random() < 0.5:  # nose
        d.line([cx, cy - r * 0.05, cx - r * 0.06, cy + r * 0.15], fill=ink, width=max(1, lw // 2))
    # Mouth: an arc below the centre; smile curves up (bottom of an ellipse), frown curves down.
    mw = r * rng.uniform(0.45, 0.7)
    mh = r * rng.uniform(0.3, 0.5)
    my = cy + r * rng.uniform(0.3, 0.5)
    filled = rng.random() < 0.5  # an open mouth (filled chord) or a plain curved line
    if happy:
        box = [cx - mw, my - mh, cx + mw, my + mh * 0.6]
        (d.chord(box, 0, 180, fill=ink) if filled else d.arc(box, 15, 165, fill=ink, width=lw))
    else:
        box = [cx - mw, my, cx + mw, my + mh * 1.6]
        (d.chord(box, 180, 360, fill=ink) if filled else d.arc(box, 195, 345, fill=ink, width=lw))
    img = img.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR, center=(cx, cy), fillcolor=bg)
    img = img.resize((size, size), Image.LANCZOS)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0, rng.uniform(0, 14), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_dataset(out: str | os.PathLike, n_per_class: int = 320, seed: int = 0, size: int = SIZE) -> Path:
    """Write ``out/happy/*.jpg|png`` and ``out/sad/*``; a mix of JPEG and PNG like real downloads."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (out / label).mkdir(parents=True, exist_ok=True)
    for i in range(n_per_class):
        for label in CLASSES:
            img = draw_face(rng, label == "happy", size)
            if rng.random() < 0.8:
                img.save(out / label / f"{label}_{i:04d}.jpg", quality=int(rng.integers(70, 96)))
            else:
                img.save(out / label / f"{label}_{i:04d}.png")
    return out


def plant_junk(data: str | os.PathLike, seed: int = 0) -> list[str]:
    """Realistic junk as found in web downloads. Returns the planted files' relative paths."""
    data = Path(data)
    planted = []
    good = sorted((data / "happy").glob("happy_*.jpg"))[0].read_bytes()
    (data / "sad" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (data / "happy" / "empty_download.jpg").write_bytes(b"")
    (data / "sad" / "not_really.jpg").write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>\n")
    dup_src = sorted((data / "sad").glob("sad_*.jpg"))[1]
    (data / "sad" / "copy_of_a_sad_face.jpg").write_bytes(dup_src.read_bytes())
    planted += ["happy/empty_download.jpg", "sad/not_really.jpg", "sad/truncated.jpg",
                "sad/copy_of_a_sad_face.jpg"]
    return planted


WORKDIR = "demo"
EPOCHS = 20


def run_demo(workdir: str | os.PathLike = WORKDIR, n_per_class: int = 400, epochs: int = EPOCHS,
             img_size: int = 48, seed: int = 0, verbose: bool = True) -> dict:
    """The whole pipeline on generated data. Returns where everything went and the key figures."""
    def say(msg):
        if verbose:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    work = Path(workdir)
    data = work / "data"
    marker = work / ".happysad-demo"
    places.output_folder(work, "--workdir", make=False)
    if work.exists() and any(work.iterdir()):
        if not marker.exists():
            raise UsageError(f"{work}: folder exists and was not made by the demo; choose another --workdir")
        shutil.rmtree(work)  # only ever a folder the demo made itself (it holds the marker file)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by happysad demo; safe to delete\n")
    say(f"1/6 generating {2 * n_per_class} synthetic faces in {data} ...")
    make_dataset(data, n_per_class, seed)
    unseen = make_dataset(work / "unseen", 40, seed + 1000)
    junk = plant_junk(data, seed)
    say(f"    planted {len(junk)} junk files: {', '.join(junk)}")
    say("2/6 clean ...")
    # Exact duplicates only: these drawings share one layout, so perceptual hashes call ~2% of them
    # near-duplicates; on photos the pHash rule is the right one (see README, "Cleaning web downloads").
    rep = clean.clean(data, near_dup_distance=0,
                      on_reject=lambda e: say(f"    {e['path']}: {e['reason']} ({e['detail']})"))
    say(f"    kept {rep.kept}, quarantined {len(rep.rejected)} -> {rep.quarantine}")
    say("3/6 split ...")
    manifest = work / "split.csv"
    rows, _ = split.split_folder(data, manifest, seed=seed)
    say(f"    {manifest}: " + ", ".join(f"{s} {sum(r.split == s for r in rows)}" for s in split.SPLITS))
    say("4/6 train (default architecture) ...")
    res = train.train(data, split=str(manifest), arch="default", img_size=img_size, epochs=epochs,
                      seed=seed, project=str(work / "runs" / "train"), name="demo", verbose=verbose)
    say("5/6 evaluate on 80 newly generated faces ...")
    ev = evaluate.evaluate(unseen, res.run_dir)
    say(f"    accuracy {ev['accuracy']:.3f} on {ev['n']} unseen images")
    say("6/6 predict ...")
    samples = [str(p) for p in sorted((work / "unseen" / "happy").iterdir())[:2]] + \
              [str(p) for p in sorted((work / "unseen" / "sad").iterdir())[:2]]
    preds = predict.predict(samples, res.run_dir)
    for p in preds:
        say(f"    {p['path']}: {p['label']} ({max(p['probabilities'].values()):.2f})")
    return {"workdir": str(work), "data": str(data), "quarantine": str(rep.quarantine),
            "quarantined": len(rep.rejected), "rejected": {e["path"]: e["reason"] for e in rep.rejected},
            "split": str(manifest), "run": str(res.run_dir),
            "test_accuracy": res.metrics["accuracy"], "unseen_accuracy": ev["accuracy"],
            "predictions": preds, "seconds": round(time.perf_counter() - t0, 1)}


# ---- a test clip from a real face photo (scikit-image's astronaut): for the video tests and bench/video.py

def face_clip(size: tuple[int, int] = (256, 192), frames: int = 60) -> tuple[list[Image.Image], list[tuple[bool, bool]]]:
    """Frames of a clip with real faces, and which of them each frame shows: (first face, second face).

    The first face (the astronaut) crosses the left two thirds while growing and tilting from -10 to +10
    degrees; in the middle third a second face (the same photo mirrored, smaller) stands on the right; the
    last third shows no face. Needs scikit-image (the ``dev`` extra)."""
    try:
        from skimage import data
    except ImportError:
        raise RuntimeError("the face clip needs scikit-image: pip install scikit-image") from None
    w, h = size
    head = Image.fromarray(data.astronaut()).crop((140, 30, 310, 230))  # 170 x 200, the face with hair and neck
    ys, xs = np.mgrid[0:h, 0:w]
    bg = np.stack([60 + 80 * xs / w, 70 + 40 * ys / h, 110 - 50 * xs / w], axis=-1).astype(np.uint8)
    background = Image.fromarray(bg)
    unit = h / 200  # the head is as tall as the frame at scale 1
    first, second = 2 * frames // 3, frames // 3
    out, truth = [], []
    for i in range(frames):
        img = background.copy()
        a, b = i < first, second <= i < first
        if a:
            u = i / max(first - 1, 1)
            scale = unit * (0.55 + 0.2 * u)
            patch = head.resize((round(170 * scale), round(200 * scale)), Image.BILINEAR).convert("RGBA")
            patch = patch.rotate(-10 + 20 * u, Image.BILINEAR, expand=True)
            x = round((0.02 + 0.35 * u) * w)
            img.paste(patch, (x, round(0.08 * h)), patch)
        if b:
            scale = unit * 0.45
            patch = head.transpose(Image.FLIP_LEFT_RIGHT).resize((round(170 * scale), round(200 * scale)), Image.BILINEAR)
            img.paste(patch, (round(0.98 * w) - patch.width, round(0.4 * h)))
        out.append(img)
        truth.append((a, b))
    return out, truth
