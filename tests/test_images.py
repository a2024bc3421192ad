import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from happysad import images


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_sniffs_content_not_extension(tmp_path):
    p = tmp_path / "photo.png"  # really a WebP
    p.write_bytes(_bytes(Image.new("RGB", (40, 30), (10, 200, 30)), "WEBP"))
    img, info = images.decode(p)
    assert info.format == "WEBP" and img.size == (40, 30) and img.mode == "RGB"


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"<!DOCTYPE html><html><body>hi</body></html>", "not_image"),
    (b"just some text\n", "not_image"),
    (b"\x00\x01\x02\x03" * 100, "not_image"),
])
def test_not_images_have_reasons(data, reason):
    with pytest.raises(images.ImageError) as e:
        images.decode(data)
    assert e.value.reason == reason


def test_html_named_jpg_says_html(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("<html><head></head><body>403</body></html>")
    with pytest.raises(images.ImageError) as e:
        images.decode(p)
    assert "HTML" in str(e.value) and str(p) in str(e.value)


def test_truncated_jpeg_is_corrupt():
    rng = np.random.default_rng(0)
    data = _bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(images.ImageError) as e:
        images.decode(data[: len(data) // 2])
    assert e.value.reason == "corrupt"


@pytest.mark.parametrize("signature, seed", [(b"\xff\xd8\xff\xe0", 121), (b"\x89PNG\r\n\x1a\n", 0),
                                             (b"GIF89a", 0), (b"II*\x00", 0)])
def test_a_known_signature_with_a_garbage_header_is_corrupt_not_another_kind_of_file(signature, seed):
    """Pillow cannot even identify these (its own verdict checked first), but their first bytes say
    JPEG, PNG, GIF or TIFF: a damaged image, whatever random bytes follow."""
    from PIL import UnidentifiedImageError

    data = signature + np.random.default_rng(seed).bytes(300)
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data))
    with pytest.raises(images.ImageError) as e:
        images.decode(data)
    assert e.value.reason == "corrupt" and "header cannot be parsed" in str(e.value)


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(images.ImageError) as e:
        images.decode(_png_header_only(100_000, 100_000))
    assert e.value.reason == "too_many_pixels"


def test_modes_become_rgb():
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    rgb, _ = images.decode(_bytes(cmyk, "JPEG"))
    r, g, b = rgb.getpixel((10, 10))
    assert r > 200 and g < 60 and b < 60

    arr16 = np.full((10, 10), 65535, dtype=np.uint16)
    png16 = _bytes(Image.fromarray(arr16), "PNG")
    gray, _ = images.decode(png16, "L")
    assert gray.getpixel((5, 5)) == 255  # scaled, not clipped garbage

    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    pal.info["transparency"] = 0
    out, _ = images.decode(_bytes(pal, "PNG", transparency=0))
    assert out.getpixel((5, 5)) == (255, 255, 255)  # fully transparent -> white

    la = Image.new("LA", (10, 10), (0, 255))
    out, _ = images.decode(_bytes(la, "PNG"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (0, 0, 0)


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out, info = images.decode(_bytes(img, "JPEG", exif=exif))
    assert out.size == (20, 60) and (info.width, info.height) == (60, 20)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out, info = images.decode(buf.getvalue())
    assert info.frames == 2
    assert out.getpixel((8, 8))[0] > 200


def test_load_for_model_shapes_and_sources():
    img = Image.new("RGB", (100, 50), (120, 130, 140))
    a = images.load_for_model(_bytes(img, "PNG"), (32, 24), "rgb")
    assert a.shape == (32, 24, 3) and a.dtype == np.uint8
    g = images.load_for_model(np.asarray(img), (16, 16), "grayscale")
    assert g.shape == (16, 16, 1)
    same = images.load_for_model(img, (32, 24), "rgb")
    assert np.array_equal(a, same)


def test_unreadable_and_folder(tmp_path):
    with pytest.raises(images.ImageError) as e:
        images.decode(tmp_path / "missing.jpg")
    assert e.value.reason == "unreadable"
    with pytest.raises(images.ImageError) as e:
        images.decode(tmp_path)
    assert e.value.reason == "unreadable"


def test_iter_files_skips_hidden_and_link_loops(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "x.png").write_bytes(b"1")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"1")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    files = images.iter_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/deep/x.png"]
