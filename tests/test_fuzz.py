"""Fuzzing the decode and predict path: whatever the bytes, a result or a clear ImageError, never a crash."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from happysad import images

# (mode, formats that can store it)
MODES = {
    "1": ["PNG", "BMP", "TIFF"], "L": ["PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"], "P": ["PNG", "GIF", "BMP"],
    "RGB": ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"], "RGBA": ["PNG", "TIFF", "WEBP"],
    "CMYK": ["JPEG", "TIFF"], "LA": ["PNG"], "I;16": ["PNG", "TIFF"], "I": ["TIFF"], "F": ["TIFF"],
}


@st.composite
def valid_images(draw):
    mode = draw(st.sampled_from(sorted(MODES)))
    fmt = draw(st.sampled_from(MODES[mode]))
    w, h = draw(st.integers(1, 120)), draw(st.integers(1, 120))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    img = Image.new(mode, (w, h))
    bands = len(img.getbands())
    if mode in ("I;16", "I"):
        img = Image.fromarray(rng.integers(0, 65535, (h, w)).astype(np.uint16 if mode == "I;16" else np.int32))
        assert img.mode == mode
    elif mode == "F":
        img = Image.fromarray(rng.random((h, w)).astype(np.float32) * 1000, "F")
    elif mode == "1":
        img = Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool))
    else:
        raw = rng.integers(0, 256, h * w * bands, dtype=np.uint8).tobytes()
        img = Image.frombytes(mode, (w, h), raw)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue(), (w, h), mode, fmt


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_images(), st.sampled_from(["rgb", "grayscale"]), st.integers(16, 64))
def test_any_valid_image_decodes(case, color_mode, side):
    data, (w, h), mode, fmt = case
    img, info = images.decode(data, "RGB")
    assert img.mode == "RGB" and img.size == (w, h) and info.format in (fmt, "MPO")
    arr = images.load_for_model(data, (side, side), color_mode)
    assert arr.shape == (side, side, 1 if color_mode == "grayscale" else 3) and arr.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data):
    try:
        images.load_for_model(data, (32, 32), "rgb")
    except images.ImageError as e:
        assert e.reason in images.REASONS and str(e)


@settings(max_examples=100, deadline=None)
@given(valid_images(), st.integers(0, 4000), st.binary(max_size=64))
def test_damaged_valid_images_never_crash(case, cut, junk):
    data = case[0]
    damaged = data[: cut % max(len(data), 1)] + junk
    try:
        images.load_for_model(damaged, (32, 32), "grayscale")
    except images.ImageError as e:
        assert e.reason in images.REASONS


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=512), valid_images().map(lambda c: c[0])), min_size=1, max_size=6))
def test_predict_always_answers(trained_run, sources):
    from happysad.predict import Predictor

    _, res = trained_run
    p = _predictor(res.run_dir)
    out = p.predict(sources)
    assert len(out) == len(sources)
    for r in out:
        assert ("error" in r) != ("label" in r)
        if "label" in r:
            assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


_cache = {}


def _predictor(run_dir):
    from happysad.predict import Predictor

    if run_dir not in _cache:
        _cache[run_dir] = Predictor(run_dir)
    return _cache[run_dir]


def test_damaged_multipage_header_is_corrupt_not_a_crash():
    """Found by the fuzz test above on a fresh clone: a damaged TIFF whose next-page pointer leads to
    garbage made Pillow's frame count raise TypeError before decoding began."""
    buf = io.BytesIO()
    Image.new("I;16", (1, 1)).save(buf, "TIFF")
    junk = (b"\xffv\\\xcf@\xe5OaC^\xc1h\x07v=#`P\xfa\xd4\xbe\x9d\xffbE\x00\x894\xb5R)\xa9\xb2?\x01\xc77"
            b"\x1c>\xa8[\xba\xd5\x19\xdbX\xf4\x1b|$\x03")
    damaged = buf.getvalue()[:78] + junk
    for call in (lambda: images.load_for_model(damaged, (32, 32), "grayscale"), lambda: images.probe(damaged)):
        with pytest.raises(images.ImageError) as err:
            call()
        assert err.value.reason == "corrupt"
