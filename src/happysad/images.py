"""The one way happysad opens an image, for cleaning, training, prediction and serving alike.

The format is sniffed from the bytes (Pillow), never from the file name; the image is decoded in full
(so a truncated file fails here and not in the middle of training); EXIF rotation is applied; any mode
(CMYK, 16-bit, palette with transparency, LA, ...) becomes plain RGB or L; animations give their first
frame. Because training and prediction both call :func:`load_for_model`, the pixels a model sees at
prediction time are made exactly as they were at training time.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import HappysadError

# Defaults, in one place.
# The one rule of clean, train, predict, evaluate, explain and serve: photo formats (AVIF where this Pillow
# decodes it); icons (ICO), Photoshop files and Pillow's other formats are refused by all of them alike.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "MPO", "AVIF")
MAX_PIXELS = 50_000_000  # about 7000 x 7000; larger files are treated as decompression bombs
# A 50-megapixel (MAX_PIXELS) 8-bit RGB BMP or TIFF is 150 MB; anything bigger is not a photo we can use,
# and reading it whole could eat the memory (a link to /dev/zero never ends).
MAX_FILE_BYTES = 256 * 2**20
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif")

Source = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


class ImageError(HappysadError):
    """A file that cannot be used as an image. ``reason`` is a short code (see ``REASONS``)."""

    def __init__(self, path: str, reason: str, detail: str):
        self.path, self.reason, self.detail = path, reason, detail
        super().__init__(f"{path}: {detail}")


REASONS = {
    "empty": "file is empty (0 bytes)",
    "unreadable": "file cannot be read",
    "not_image": "not an image",
    "format_not_allowed": "image format not allowed",
    "too_many_pixels": "too many pixels (decompression bomb guard)",
    "corrupt": "image data is corrupt or truncated",
    "not_a_file": "not a regular file (named pipe, device, socket)",
    "too_large": "file is larger than the image size limit",
}


@dataclass(frozen=True)
class ImageInfo:
    """What the decoder learned about a file: its real format, size and how it was read."""

    format: str
    width: int
    height: int
    mode: str
    frames: int


def shown(path: str | os.PathLike) -> str:
    """A path as printable text: bytes that are not UTF-8 (a name from a foreign file system) appear as
    ``\\xff`` escapes instead of making print or json fail. For messages only, never to open the file."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _name(src: Source) -> str:
    return shown(src) if isinstance(src, (str, os.PathLike)) else "<image>"


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"


def regular_file_problem(path: str | os.PathLike) -> tuple[str, str] | None:
    """(reason, detail) when ``path`` (links followed) is not a regular file, else None. Never opens it:
    opening a FIFO for reading blocks until a writer comes."""
    try:
        st = os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            return "unreadable", f"broken link ({e.strerror or e})"
        return "unreadable", f"cannot read file ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "unreadable", "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not_a_file", f"{_kind(st.st_mode)}, not an image file"
    return None


def read_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (default :data:`MAX_FILE_BYTES`): a FIFO, device
    or socket (also behind a link) is refused before it is opened, and a file too large for an image is
    refused before it is read. Raises :class:`ImageError` (``unreadable``, ``not_a_file``, ``too_large``)."""
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    name = _name(path)
    problem = regular_file_problem(path)
    if problem:
        raise ImageError(name, *problem)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    # O_NONBLOCK: if the file was swapped for a FIFO since the check, open returns at once.
    flags |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise ImageError(name, "unreadable", "is a folder, not a file") from None
    except OSError as e:
        raise ImageError(name, "unreadable", f"cannot read file ({e.strerror or e})") from None
    with open(fd, "rb", closefd=True) as f:
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # swapped between the check and the open
                raise ImageError(name, "not_a_file", f"{_kind(st.st_mode)}, not an image file")
            if st.st_size > max_bytes:
                raise ImageError(name, "too_large", f"{st.st_size:,} bytes is over the limit of "
                                 f"{max_bytes:,} bytes for an image file")
            # The size it has now (a read buffer of max_bytes for every file would be wasteful), then
            # on up to the limit if it grew meanwhile (or is a /proc-like file that says 0 bytes).
            want = st.st_size + 1
            data = f.read(want)
            if len(data) == want:
                data += f.read(max_bytes + 1 - len(data))
        except OSError as e:
            raise ImageError(name, "unreadable", f"cannot read file ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise ImageError(name, "too_large", f"over the limit of {max_bytes:,} bytes for an image file")
    return data


def _sniff_text(head: bytes) -> str:
    """A better word than 'not an image' for the usual web-download impostors."""
    h = head.lstrip().lower()
    if h.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in h[:512]:
        return "not an image: HTML page"
    if h.startswith(b"<svg") or (h.startswith(b"<?xml") and b"<svg" in h[:1024]):
        return "not an image: SVG (vector) file"
    if h.startswith((b"{", b"[")):
        return "not an image: JSON/text"
    try:
        head[:1024].decode("utf-8")
        return "not an image: text file"
    except UnicodeDecodeError:
        return "not an image: unknown binary format"


# The first bytes of the formats happysad reads: a file that starts like one of them but that Pillow
# cannot identify is a damaged image ("corrupt"), not some other kind of file.
SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
              (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def claimed_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for sig, fmt in SIGNATURES if head.startswith(sig)), None)


def _open(src: Source) -> tuple[Image.Image, str]:
    name = _name(src)
    if isinstance(src, Image.Image):
        return src, name
    if isinstance(src, np.ndarray):
        arr = src
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(arr), name
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        data = read_file(src)
    if not data:
        raise ImageError(name, "empty", REASONS["empty"])
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        fmt = claimed_format(data[:16])
        if fmt:
            raise ImageError(name, "corrupt", f"starts like a {fmt} file, but its header cannot be parsed") from None
        raise ImageError(name, "not_image", _sniff_text(data[:2048])) from None
    except Image.DecompressionBombError as e:
        raise ImageError(name, "too_many_pixels", f"too many pixels ({e})") from None
    except Exception as e:  # Pillow plugins raise many types on garbage headers
        raise ImageError(name, "corrupt", f"cannot parse image header ({e})") from None
    return img, name


def _to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit and float pixels scaled to 0..255 instead of clipped (Pillow's convert clips at 255,
    so a float image in 0..1 would be all black): 16-bit by its full range; 32-bit and float by the range
    they use (0..1, 0..255, 0..65535), or else stretched from their darkest to their brightest pixel."""
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
    if mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    elif lo >= 0 and hi <= 1 and mode == "F":
        lo, hi = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    elif lo >= 0 and hi <= 65535:
        lo, hi = 0.0, 65535.0
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((arr - lo) * scale, 0, 255).round().astype(np.uint8)


def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow mode to 'RGB' or 'L' the way a person would expect to see it."""
    m = img.mode
    if m in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img, m = Image.fromarray(_to_8bit(np.asarray(img, dtype=np.float64), m), "L"), "L"
    if m == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        m = img.mode
    if m in ("RGBA", "LA", "PA", "La", "RGBa"):
        # Transparent pixels become white, as most viewers show them on a light page.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
        m = "RGB"
    return img if m == mode else img.convert(mode)


def _open_checked(src: Source, allowed_formats: tuple[str, ...] | None, max_pixels: int):
    """Open lazily (header only) and apply the format and pixel-limit rules before any decoding."""
    img, name = _open(src)
    fmt = (img.format or "ARRAY").upper()
    if allowed_formats is not None and fmt != "ARRAY" and fmt not in allowed_formats:
        raise ImageError(name, "format_not_allowed", f"image format {fmt} not allowed "
                         f"(allowed: {', '.join(allowed_formats)})")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(name, "too_many_pixels",
                         f"{w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                         "(possible decompression bomb)")
    return img, name, fmt


def _frame_count(img: Image.Image, name: str) -> int:
    # Counting frames walks a multi-page file (TIFF, GIF), so a damaged one can fail here already.
    try:
        return int(getattr(img, "n_frames", 1) or 1)
    except Exception as e:
        raise ImageError(name, "corrupt", f"image data is corrupt or truncated ({e})") from None


def decode(
    src: Source,
    mode: str = "RGB",
    *,
    allowed_formats: tuple[str, ...] | None = ALLOWED_FORMATS,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> tuple[Image.Image, ImageInfo]:
    """Fully decode ``src`` into an upright Pillow image in ``mode`` ('RGB' or 'L').

    Raises :class:`ImageError` with a reason code for anything that is not a usable image.
    ``draft_size`` lets JPEG decoding skip detail that a later downscale would throw away.
    """
    img, name, fmt = _open_checked(src, allowed_formats, max_pixels)
    w, h = img.size
    frames = _frame_count(img, name)
    try:
        if frames > 1:
            img.seek(0)
        if draft_size is not None and fmt == "JPEG":
            side = max(draft_size)
            img.draft("RGB" if mode == "RGB" else "L", (side, side))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        out = _to_mode(img, mode)
        out.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(name, "too_many_pixels", f"too many pixels ({e})") from None
    except Exception as e:  # truncated / corrupt data surfaces as OSError, SyntaxError, ValueError...
        raise ImageError(name, "corrupt", f"image data is corrupt or truncated ({e})") from None
    return out, ImageInfo(fmt, w, h, img.mode, frames)


def probe(src: Source, *, allowed_formats: tuple[str, ...] | None = ALLOWED_FORMATS,
          max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Read only the header: the real format and the size *as shown* (EXIF rotation applied, so width and
    height may be swapped against :func:`decode`'s info), with decode's format and pixel-limit checks but
    no pixel decoding. A server uses it to refuse a file cheaply and to report boxes in the coordinates
    that viewers show; the pixels still come from :func:`load_for_model`."""
    img, name, fmt = _open_checked(src, allowed_formats, max_pixels)
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF: decode ignores it too
        orientation = 1
    if orientation in (5, 6, 7, 8):  # the transposing and 90-degree rotations
        w, h = h, w
    return ImageInfo(fmt, w, h, img.mode, _frame_count(img, name))


def load_for_model(src: Source, size: tuple[int, int], color_mode: str = "rgb") -> np.ndarray:
    """Decode and resize to a model input: uint8 array of shape (height, width, 1 or 3).

    Resizing squashes to ``size`` with bilinear filtering (as Keras' image_dataset_from_directory
    does); the model itself scales pixels to 0..1 with a Rescaling layer.
    """
    h, w = int(size[0]), int(size[1])
    mode = "L" if color_mode == "grayscale" else "RGB"
    img, _ = decode(src, mode, draft_size=(w, h))
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def is_image_name(path: str | os.PathLike) -> bool:
    """True for names with a common image extension (used only to *list* files, never to judge them)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def iter_files(root: str | os.PathLike, *, images_only: bool = False, on_skip=None) -> list[Path]:
    """Regular files below ``root`` (links followed), sorted, skipping hidden files and folders and not
    following links to folders (a link loop cannot hang the walk).

    FIFOs, devices, sockets and folders that cannot be read are left out (reading a FIFO or /dev/zero
    never ends); ``on_skip(path, reason, detail)`` is told about each one, so a caller can report it.
    Broken links stay in the list: reading them fails with a clear message."""
    out: list[Path] = []

    def folder_error(e: OSError):
        if on_skip is not None:
            on_skip(Path(e.filename if e.filename is not None else root), "unreadable",
                    f"folder cannot be read ({e.strerror or e}); its files were not checked")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=folder_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            if images_only and not is_image_name(fn):
                continue
            p = Path(dirpath) / fn
            problem = regular_file_problem(p)
            if problem and problem[0] == "not_a_file":
                if on_skip is not None:
                    on_skip(p, *problem)
                continue
            out.append(p)
    return out
