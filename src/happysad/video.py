"""Video files and live camera frames: who is happy, when, and for how long.

    decode (PyAV, a stream: one frame in memory at a time) -> sample ``fps`` frames a second
    -> find faces (BlazeFace) -> classify the faces of a frame in one model call (the face model)
    -> track (stable IDs) -> smooth each track's probabilities over time -> one result per sampled
    frame, then one summary per track and one for the whole clip

Which model judges a face: a face model (``fer-happy-sad``) as it is; a photo model (``happy-sad``, the
default) through its face member. Where a model averages each face with its mirror image (the photo
model's face member, or ``tta``), video shows it the face and the mirror image on alternate frames
instead: the smoothing then averages both views at the cost of one. The photo model's scene member
(an EfficientNet-Lite, tens of ms a frame on 2 cores) is not run on video: it would cost five times the rest of
the pipeline, and a clip's question is about the people in it. Frames without a face say so.

Tracking: each track's next box is predicted from its last two (constant velocity); detections are
assigned to tracks by the Hungarian method (``scipy.optimize.linear_sum_assignment``) on the distance
between centres in face sizes, refused past ``MAX_JUMP`` face sizes or a size change over ``MAX_SCALE``x.
A track unseen for ``MAX_AGE`` seconds ends; a face that comes back later gets a new ID.
(``norfair``, the obvious library, pins NumPy < 2, which TensorFlow 2.21 does not run on.)

Smoothing: an exponential moving average over time, per track, with a half-life of ``HALF_LIFE``
seconds: ``p <- p + a (p_frame - p)`` with ``a = 1 - 0.5 ** (dt / HALF_LIFE)``, so the weight of the past
depends on seconds, not on the sampling rate. A track's label is the class of its smoothed probabilities.

Time: a sampled frame stands for the time it is on screen. With ``fps=0`` that is until the next frame;
with ``fps`` N, a frame is sampled at each multiple of 1/N seconds at which it is the one shown, and
stands for 1/N seconds per multiple (a frame held for a second, as in GIFs and screen recordings, is
analysed once and counts for the whole second). Summaries add these ``seconds`` up.
"""

from __future__ import annotations

import glob
import io
import math
import os
import queue as queues
import threading
import time
from array import array
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from . import faces as face_tools
from . import images
from .errors import HappysadError

FPS = 5.0            # sampled frames per second by default (0: every frame)
HALF_LIFE = 0.5      # seconds: how fast smoothed probabilities follow a change of expression
MAX_AGE = 1.0        # seconds a track may go unseen before it ends
MAX_JUMP = 1.5       # face sizes a face may move between two sampled frames and keep its track
MAX_SCALE = 2.0      # size ratio between two sampled frames beyond which it is another face
MAX_FACES = 32       # per frame, largest first
DETECTOR_TILE_ABOVE = math.inf  # no tiles on video frames: the whole frame only (tiles cost 3x, ~40 ms)
INSTALL_HINT = "pip install 'happysad[video]' (PyAV, which brings its own FFmpeg)"

# Leading bytes of the containers FFmpeg reads that are video (ISO-BMFF brands that are still images excluded).
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"jpeg"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts",
                  ".mts", ".m2ts", ".3gp", ".ogv", ".gif"}


class VideoError(HappysadError):
    """A file that cannot be read as a video: ``path``, what is wrong (``detail``) and a short ``reason``
    code: not_video, corrupt, too_long or too_many_pixels."""

    def __init__(self, path: str, detail: str, reason: str = "not_video"):
        self.path, self.detail, self.reason = path, detail, reason
        super().__init__(f"{path}: {detail}")


def _sniff_bytes(head: bytes) -> bool:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime, no ftyp
        return True
    return (head.startswith(b"\x1a\x45\xdf\xa3")                         # Matroska, WebM
            or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")          # AVI
            or head.startswith((b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3",  # FLV, Ogg, MPEG-PS/ES
                                b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"))   # ASF (WMV)
            or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47))  # MPEG-TS


def is_video(path: str | os.PathLike) -> bool:
    """True for a file whose bytes are a video container, or an animated GIF/WebP (more than one frame).
    Judged by content; the name's extension only decides for a file no reader recognises (a damaged
    ``clip.mp4`` then reports as a damaged video rather than as "not an image")."""
    if images.regular_file_problem(path) is not None:  # a FIFO or device would block or never end
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    if not head:  # empty: the image reader's message says so
        return False
    if _sniff_bytes(head):
        return True
    if head.startswith((b"GIF87a", b"GIF89a")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        try:
            with Image.open(path) as img:
                return bool(getattr(img, "is_animated", False))  # looks for a second frame only
        except Exception:
            return False
    if Path(path).suffix.lower() in VIDEO_SUFFIXES:
        try:
            images.probe(path, allowed_formats=None)
            return False  # a still image named like a video
        except images.ImageError:
            return True
    return False


def _av():
    try:
        import av
    except ImportError:
        raise HappysadError(f"video needs PyAV: {INSTALL_HINT}") from None
    return av


# ------------------------------------------------------------------------------------------ decoding

@dataclass
class VideoInfo:
    name: str
    width: int
    height: int
    rate: float           # the video's own frames per second
    duration: float | None  # seconds, as the container declares it (None when it does not)
    codec: str
    frames: int | None    # as the container declares it


@dataclass
class Frame:
    index: int            # frame number in the video, from 0
    time: float           # seconds
    image: Image.Image    # RGB
    seconds: float        # the time this sampled frame stands for


class VideoReader:
    """Decodes a video file (path or bytes) as a stream and yields the sampled frames.

    ``fps`` > 0 keeps the frame shown at each multiple of 1/fps seconds; 0 keeps every frame (see the
    module doc for the time each stands for).
    A stream that breaks off (a truncated or damaged file) ends the iteration with the frames decoded so
    far; ``problem`` then says what happened. ``max_seconds`` refuses longer videos (a server's limit)."""

    def __init__(self, source, fps: float = FPS, name: str | None = None, max_seconds: float | None = None,
                 max_pixels: int = images.MAX_PIXELS):
        av = _av()
        self.name = name or (os.fsdecode(source) if isinstance(source, (str, os.PathLike)) else "<video>")
        self.fps = float(fps)
        self.max_seconds = max_seconds
        self.problem: str | None = None
        self.decoded = 0
        src = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        try:
            self.container = av.open(src, mode="r")
        except FileNotFoundError:
            raise VideoError(self.name, "file not found") from None
        except IsADirectoryError:
            raise VideoError(self.name, "is a folder, not a video") from None
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoError(self.name, f"not a video FFmpeg can read, or damaged ({_why(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(self.name, "no video stream in this file")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # FFmpeg decodes on its own threads
        ctx = self.stream.codec_context
        rate = float(self.stream.average_rate or self.stream.guessed_rate or 0) or 25.0
        # The video stream's own length, else the container's (Matroska declares only that one, and it
        # may include a longer audio track: a truncation check allows it half a second more).
        duration, self._slack = None, 0.0
        if self.stream.duration is not None and self.stream.time_base is not None:
            duration = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration:
            duration, self._slack = self.container.duration / 1_000_000, 0.5
        self.info = VideoInfo(self.name, ctx.width, ctx.height, rate, duration, ctx.name,
                              self.stream.frames or None)
        if ctx.width * ctx.height > max_pixels:
            self.close()
            raise VideoError(self.name, f"frames of {ctx.width}x{ctx.height} are over the pixel limit", "too_many_pixels")
        if max_seconds is not None and duration is not None and duration > max_seconds:
            self.close()
            raise VideoError(self.name, f"{duration:.1f} s long; the limit is {max_seconds:g} s", "too_long")

    @property
    def rate(self) -> float:
        """Sampled frames per second: ``fps``, or the video's own rate when every frame is kept."""
        return min(self.fps, self.info.rate) if self.fps > 0 else self.info.rate

    @property
    def expected(self) -> int | None:
        """About how many frames will be sampled (for a progress bar), when the length is known."""
        if self.info.duration:
            return max(1, int(self.info.duration * self.rate + 0.5))
        return self.info.frames

    def __iter__(self) -> Iterator[Frame]:
        """Each decoded frame is held until the next one's time is known: only then is it known which
        sampling times it covers (one frame in memory besides the decoder's own)."""
        av = _av()
        held = None  # (index, start time, frame) of the last decoded frame
        start = None
        try:
            for frame in self.container.decode(self.stream):
                i = self.decoded
                self.decoded += 1
                t = float(frame.time) if frame.time is not None else i / self.info.rate
                start = t if start is None else start
                t -= start  # some containers start at a non-zero timestamp
                if self.max_seconds is not None and t > self.max_seconds:
                    raise VideoError(self.name, f"longer than the limit of {self.max_seconds:g} s", "too_long")
                if held is not None:
                    yield from self._sample(*held, t)
                held = (i, t, frame)
            if held is not None:
                i, t, frame = held
                shown = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
                end = t + (shown or 1.0 / self.info.rate)
                yield from self._sample(i, t, frame, end)
                declared = self.info.duration
                if declared and end + 0.5 / self.info.rate + self._slack < declared:
                    self.problem = (f"the video ends at {end:.2f} s of the {declared:.2f} s its header declares: "
                                    "truncated or damaged")
        except av.FFmpegError as e:
            self.problem = f"decoding stopped after {self.decoded} frame(s): damaged or truncated ({_why(e)})"
        except (MemoryError, OSError) as e:
            self.problem = f"decoding stopped after {self.decoded} frame(s) ({_why(e)})"
        finally:
            self.close()

    def _sample(self, i: int, t: float, frame, end: float) -> Iterator[Frame]:
        """The frame shown from ``t`` to ``end``, if a sampling time falls in that span."""
        end = max(end, t)
        if self.fps <= 0:
            yield Frame(i, round(t, 4), frame.to_image(), end - t)
            return
        step = 1.0 / self.fps
        eps = 0.25 / self.info.rate  # a quarter frame: timestamps are rounded to the time base
        first = math.ceil((t - eps) / step)  # sampling times k * step in [t - eps, end - eps)
        last = math.ceil((end - eps) / step)
        if last > first:
            yield Frame(i, round(t, 4), frame.to_image(), (last - first) * step)

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a broken container must not hide the first error
            pass


def _why(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return msg.split(": '")[0].strip().rstrip(":")


# ------------------------------------------------------------------------------------ classification

class FaceClassifier:
    """Finds and classifies the faces of single frames: the stateless part shared by every stream
    (files, live clients). Thread-safe; the faces of a frame go to the model in one call."""

    def __init__(self, predictor):
        face_model = getattr(predictor, "face", None)  # a photo model: its face member
        bundle = face_model.bundle if face_model is not None else predictor.bundle
        cfg = face_tools.face_settings(bundle.meta)
        if cfg is None:
            raise HappysadError(f"{bundle.path}: video needs a face or photo model (this one classifies whole "
                                "images); try --model fer-happy-sad")
        self.cfg = cfg
        # A photo model's face member was trained on crops averaged with their mirror image.
        self.mirror = (face_model if face_model is not None else predictor).tta in ("flip", "tencrop")
        # the same Predictor class (video sits below predict, so it is handed one rather than importing it)
        self.model = type(face_model if face_model is not None else predictor)(bundle, faces=False, tta=False)
        self.classes = list(bundle.classes)
        h, w = bundle.image_size
        self.size, self.mode = (w, h), bundle.pil_mode
        self.detector = face_tools.detector(cfg.get("detector", face_tools.DETECTOR), tile_above=DETECTOR_TILE_ABOVE)
        self._lock = threading.Lock()

    def __call__(self, img: Image.Image, view: int = 0) -> tuple[list, np.ndarray]:
        """-> (faces found, largest first; (n, classes) probabilities). ``view``: the frame's number in
        its stream; odd frames are classified mirrored when the model averages both views."""
        found = self.detector.detect(img)[:MAX_FACES]
        if not found:
            return [], np.zeros((0, len(self.classes)))
        x = face_tools.face_inputs(img, found, self.size, self.mode, self.cfg)
        if len(x) != len(found):  # the frame is itself a face crop: judged whole, as one face
            found = found[:1]
        if self.mirror and view % 2:
            x = x[:, :, ::-1]
        with self._lock:
            p = self.model.predict_arrays(x)
        return found, p


# ------------------------------------------------------------------------------------------ tracking

@dataclass
class Track:
    id: int
    box: np.ndarray               # x, y, w, h of the last detection
    velocity: np.ndarray          # centre pixels per second
    probs: np.ndarray             # smoothed probabilities
    first: float
    last: float
    samples: int = 1
    seconds: float = 0.0          # time on screen (the sampled frames' time)
    label_seconds: np.ndarray | None = None  # seconds labelled as each class (smoothed label)
    prob_sum: np.ndarray | None = None       # smoothed probabilities x seconds (for the time-weighted mean)
    # for the timeline plot: times and smoothed probabilities, flat (an hour at 30 frames/s is ~1 MB)
    history: array = field(default_factory=lambda: array("f"))

    @property
    def centre(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2

    @property
    def side(self) -> float:
        return float(np.sqrt(self.box[2] * self.box[3]))


class Tracker:
    """Gives each face a track ID that stays while the face stays, and smooths its probabilities.
    ``update(time, boxes, probs, seconds)`` -> the tracks, one per detection in order; ``seconds`` is
    the time the frame stands for (summaries add it up; ``dt`` when not given)."""

    def __init__(self, classes: list[str], dt: float, half_life: float = HALF_LIFE, max_age: float = MAX_AGE,
                 history: bool = True):
        self.classes, self.dt = list(classes), float(dt)
        self.half_life, self.max_age, self.keep_history = half_life, max(max_age, 1.5 * dt), history
        self.active: list[Track] = []
        self.ended: list[Track] = []
        self._next_id = 1

    def _cost(self, t: Track, box: np.ndarray, now: float) -> float:
        centre = t.centre + t.velocity * (now - t.last)
        side = math.sqrt(box[2] * box[3])
        scale = max(side, t.side) / max(min(side, t.side), 1e-6)
        dist = float(np.linalg.norm(box[:2] + box[2:] / 2 - centre)) / max((side + t.side) / 2, 1e-6)
        return math.inf if dist > MAX_JUMP or scale > MAX_SCALE else dist + math.log(scale)

    def update(self, now: float, boxes, probs: np.ndarray, seconds: float | None = None) -> list[Track]:
        from scipy.optimize import linear_sum_assignment

        for t in [t for t in self.active if now - t.last > self.max_age]:
            self.active.remove(t)
            self.ended.append(t)
        boxes = [np.asarray(b, np.float64) for b in boxes]
        out: list[Track | None] = [None] * len(boxes)
        if boxes and self.active:
            cost = np.array([[self._cost(t, b, now) for b in boxes] for t in self.active])
            rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e9))
            for r, c in zip(rows, cols):
                if np.isfinite(cost[r, c]):
                    out[c] = self._follow(self.active[r], boxes[c], probs[c], now)
        for i, b in enumerate(boxes):
            if out[i] is None:
                out[i] = self._start(b, probs[i], now)
        for t in out:
            self._count(t, now, self.dt if seconds is None else seconds)
        return out

    def _start(self, box, p, now) -> Track:
        k = len(self.classes)
        t = Track(self._next_id, box, np.zeros(2), np.asarray(p, np.float64).copy(), now, now,
                  label_seconds=np.zeros(k), prob_sum=np.zeros(k))
        self._next_id += 1
        self.active.append(t)
        return t

    def _follow(self, t: Track, box, p, now) -> Track:
        dt = max(now - t.last, 1e-6)
        a = 1.0 - 0.5 ** (dt / self.half_life)
        t.probs = t.probs + a * (np.asarray(p, np.float64) - t.probs)
        t.velocity = ((box[:2] + box[2:] / 2) - t.centre) / dt
        t.box, t.last = box, now
        t.samples += 1
        return t

    def _count(self, t: Track, now: float, seconds: float) -> None:
        t.label_seconds[int(np.argmax(t.probs))] += seconds
        t.seconds += seconds
        t.prob_sum += t.probs * seconds
        if self.keep_history:
            t.history.append(now)
            t.history.extend(t.probs)

    def tracks(self) -> list[Track]:
        return sorted(self.ended + self.active, key=lambda t: t.id)


# ------------------------------------------------------------------------------------------- results

def _probs(classes, p) -> dict:
    return {c: round(float(v), 6) for c, v in zip(classes, p)}


def frame_result(name: str, frame_index: int, t: float, found: list, raw: np.ndarray, tracks: list[Track],
                 classes: list[str]) -> dict:
    """One sampled frame: each face with its track, box, smoothed label and probabilities, and what this
    frame alone said (``unsmoothed``)."""
    faces = []
    for f, p, tr in zip(found, raw, tracks):
        faces.append({"track": tr.id, "box": list(f.box), "score": round(float(f.score), 4),
                      "label": classes[int(np.argmax(tr.probs))], "probabilities": _probs(classes, tr.probs),
                      "unsmoothed": _probs(classes, p)})
    return {"kind": "frame", "path": name, "frame": frame_index, "time": round(t, 3), "faces": faces}


def track_summary(name: str, t: Track, classes: list[str]) -> dict:
    seconds = max(t.seconds, 1e-9)  # frames with equal timestamps may stand for no time at all
    return {"kind": "track", "path": name, "track": t.id, "first_seen": round(t.first, 3),
            "last_seen": round(t.last, 3), "seconds": round(t.seconds, 3), "samples": t.samples,
            "label": classes[int(np.argmax(t.label_seconds))],
            "share": {c: round(float(s / seconds), 4) for c, s in zip(classes, t.label_seconds)},
            "mean_probabilities": _probs(classes, t.prob_sum / seconds)}


def clip_summary(name: str, reader_info: VideoInfo | None, tracks: list[Track], classes: list[str],
                 sampled: int, duration: float, with_faces: float, decoded: int, rate: float, seconds: float,
                 problem: str | None) -> dict:
    """The whole clip: how long, how many people, and how face-time splits between the classes."""
    face_seconds = np.sum([t.label_seconds for t in tracks], axis=0) if tracks else np.zeros(len(classes))
    total = float(face_seconds.sum())
    out = {"kind": "clip", "path": name, "duration": round(duration, 3), "frames_decoded": decoded,
           "frames_sampled": sampled, "sample_rate": round(rate, 3), "tracks": len(tracks),
           "seconds_with_faces": round(with_faces, 3),
           "label": classes[int(np.argmax(face_seconds))] if total else None,
           "face_seconds": {c: round(float(s), 3) for c, s in zip(classes, face_seconds)},
           "share": {c: round(float(s / total), 4) if total else 0.0 for c, s in zip(classes, face_seconds)},
           "processing_seconds": round(seconds, 2),
           "frames_per_second": round(sampled / seconds, 1) if seconds > 0 else None}
    if reader_info is not None:
        out.update(width=reader_info.width, height=reader_info.height, video_fps=round(reader_info.rate, 3))
    if problem:
        out["warning"] = problem
    return out


# --------------------------------------------------------------------------------------- whole files

def analyze(predictor, source, fps: float = FPS, name: str | None = None, annotate_to: str | Path | None = None,
            max_seconds: float | None = None, progress=None, classifier: FaceClassifier | None = None) -> Iterator[dict]:
    """Yield one result per sampled frame, then one summary per track, then the clip's summary (see
    the module doc). ``annotate_to``: a folder for the annotated video and one timeline PNG per track.
    ``progress(done, expected)`` is called after each sampled frame (``expected`` may be None).
    Raises :class:`VideoError` for a file that is not a readable video (at the start), or that breaks
    a limit or yields no frame at all (later)."""
    clf = classifier or FaceClassifier(predictor)
    reader = VideoReader(source, fps, name=name, max_seconds=max_seconds)
    name = reader.name
    tracker = Tracker(clf.classes, 1.0 / reader.rate, history=annotate_to is not None)
    writer = AnnotatedVideo(annotate_to, reader, clf.classes) if annotate_to is not None else None
    sampled, duration, with_faces = 0, 0.0, 0.0
    t0 = time.perf_counter()
    try:
        for fr in reader:
            found, probs = clf(fr.image, sampled)
            tracks = tracker.update(fr.time, [f.box for f in found], probs, fr.seconds)
            sampled += 1
            duration += fr.seconds
            with_faces += fr.seconds if found else 0.0
            res = frame_result(name, fr.index, fr.time, found, probs, tracks, clf.classes)
            if writer is not None:
                writer.write(fr.image, res)
            if progress is not None:
                progress(sampled, reader.expected)
            yield res
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    tracks = tracker.tracks()
    if writer is not None:
        writer.timelines(tracks, clf.classes)
    for t in tracks:
        yield track_summary(name, t, clf.classes)
    clip = clip_summary(name, reader.info, tracks, clf.classes, sampled, duration, with_faces, reader.decoded,
                        reader.rate, time.perf_counter() - t0, reader.problem)
    if writer is not None:
        clip["annotated"] = str(writer.path)
        clip["timelines"] = [str(p) for p in writer.timeline_paths]
    if sampled == 0 and reader.problem:
        raise VideoError(name, reader.problem, "corrupt")
    yield clip


# ---------------------------------------------------------------------------------- annotated output

# output container -> (encoder, pixel format); anything else is written as H.264 in MP4
_ENCODERS = {".mp4": ("libx264", "yuv420p"), ".mov": ("libx264", "yuv420p"), ".mkv": ("libx264", "yuv420p"),
             ".webm": ("libvpx", "yuv420p"), ".avi": ("mpeg4", "yuv420p"), ".gif": ("gif", "pal8")}
_OPTIONS = {"libx264": {"preset": "veryfast", "crf": "23"}, "libvpx": {"deadline": "realtime", "cpu-used": "8", "b": "1M"}}


class VideoWriter:
    """Encodes Pillow frames into ``path`` (the codec from its extension: ``_ENCODERS``), on a thread of
    its own so that encoding overlaps the next frame's analysis; at most ``queue`` frames wait.
    MP4/MOV files get their index at the front (a cut-off copy still plays)."""

    def __init__(self, path: str | Path, size: tuple[int, int], rate: float, queue: int = 8):
        av = _av()
        self.path = Path(path)
        codec, pix = _ENCODERS[self.path.suffix.lower()]
        opts = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".mov") else {}
        self.out = av.open(str(self.path), mode="w", options=opts)
        self.stream = self.out.add_stream(codec, rate=Fraction(rate).limit_denominator(1001))
        w, h = size
        self.size = (max(2, w // 2 * 2), max(2, h // 2 * 2)) if pix == "yuv420p" else (w, h)  # 4:2:0 needs even sides
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = pix
        self.stream.options = dict(_OPTIONS.get(codec, {}))
        self._frames: queues.Queue = queues.Queue(maxsize=queue)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="happysad-encode", daemon=True)
        self._thread.start()

    def add(self, img: Image.Image) -> None:
        if self._error is not None:
            raise self._error
        self._frames.put(img)

    def _run(self) -> None:
        av = _av()
        while (img := self._frames.get()) is not None:
            if self._error is not None:
                continue  # drain after a failure; close() reports it
            try:
                img = img.convert("RGB")
                if img.size != self.size:
                    img = img.crop((0, 0, *self.size))
                for packet in self.stream.encode(self._frame(av, img)):
                    self.out.mux(packet)
            except Exception as e:  # noqa: BLE001 -- handed to the caller by close()
                self._error = e

    def _frame(self, av, img: Image.Image):
        if self.stream.pix_fmt != "pal8":
            return av.VideoFrame.from_image(img)
        # GIF: FFmpeg's scaler cannot make palettes; Pillow picks 256 colours per frame
        pal = img.quantize(256)
        rgb = np.zeros((256, 3), np.uint8)
        used = np.asarray(pal.getpalette(), np.uint8).reshape(-1, 3)[:256]
        rgb[:len(used)] = used
        argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb], axis=1)
        return av.VideoFrame.from_ndarray((np.asarray(pal), argb), format="pal8")

    def close(self) -> None:
        self._frames.put(None)
        self._thread.join()
        try:
            if self._error is None:
                for packet in self.stream.encode():
                    self.out.mux(packet)
        finally:
            self.out.close()
        if self._error is not None:
            raise HappysadError(f"{self.path}: could not write the video ({_why(self._error)})")


def write_video(frames, path: str | Path, fps: float = 10) -> Path:
    """Encode Pillow frames as a video file (for tests and benchmarks)."""
    frames = iter(frames)
    first = next(frames)
    writer = VideoWriter(path, first.size, fps)
    writer.add(first)
    for img in frames:
        writer.add(img)
    writer.close()
    return writer.path


class AnnotatedVideo:
    """``folder/NAME.annotated.EXT``: the sampled frames with boxes, track IDs and labels drawn (same
    container family as the input, audio dropped), and ``NAME.track<ID>.png`` timelines."""

    def __init__(self, folder: str | Path, reader: VideoReader, classes: list[str]):
        self.classes = classes
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        suffix = Path(reader.name).suffix.lower()
        suffix = suffix if suffix in _ENCODERS else ".mp4"
        stem = self.stem = Path(reader.name).stem or "video"
        n = 1
        while any(self.folder.glob(f"{glob.escape(self.stem)}.annotated.*")):  # never overwrite: NAME-2, ...
            n += 1
            self.stem = f"{stem}-{n}"
        self.writer = VideoWriter(self.folder / f"{self.stem}.annotated{suffix}",
                                  (reader.info.width, reader.info.height), reader.rate)
        self.path = self.writer.path
        self.timeline_paths: list[Path] = []

    def write(self, image: Image.Image, result: dict) -> None:
        self.writer.add(face_tools.annotate(image, result, self.classes) if result["faces"] else image)

    def close(self) -> None:
        self.writer.close()

    def timelines(self, tracks: list[Track], classes: list[str]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for t in tracks:
            if not t.history:
                continue
            rows = np.asarray(t.history).reshape(-1, 1 + len(classes))
            times, probs = rows[:, 0], rows[:, 1:]
            fig, ax = plt.subplots(figsize=(6, 1.8), dpi=100)
            for k, c in enumerate(classes):
                ax.plot(times, probs[:, k], label=c, color=face_tools.PALETTE[k % len(face_tools.PALETTE)])
            ax.set_ylim(0, 1)
            ax.set_xlabel("seconds")
            ax.set_title(f"{self.stem}: person #{t.id} (smoothed)", fontsize=9)
            ax.legend(loc="upper right", fontsize=7)
            fig.tight_layout()
            path = self.folder / f"{self.stem}.track{t.id}.png"
            fig.savefig(path)
            plt.close(fig)
            self.timeline_paths.append(path)


# ---------------------------------------------------------------------------------------- live frames

class LiveStream:
    """One live camera (a web page's): frames arrive one at a time with their arrival time; each gets
    the same detection, classification, tracking and smoothing as a video file's frames."""

    def __init__(self, classifier: FaceClassifier, dt: float = 0.2):
        self.classifier = classifier
        self.tracker = Tracker(classifier.classes, dt, history=False)
        self.t0 = time.monotonic()
        self.frames = 0

    def frame(self, img: Image.Image, now: float | None = None) -> dict:
        now = (time.monotonic() if now is None else now) - self.t0
        found, probs = self.classifier(img, self.frames)
        tracks = self.tracker.update(now, [f.box for f in found], probs)
        res = frame_result("live", self.frames, now, found, probs, tracks, self.classifier.classes)
        self.frames += 1
        del self.tracker.ended[:]  # a live stream has no summary: ended tracks are not kept
        res.update(width=img.width, height=img.height)
        return res

