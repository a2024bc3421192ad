"""Formats at the edges: float and 32-bit pixels are scaled, not clipped to black; clean, predict and serve
follow one rule for which formats are images (AVIF yes, ICO no); a Keras file that does not load is one
line."""

import io

import numpy as np
import pytest
from PIL import Image, features

from happysad import clean, cli, images
from happysad.predict import Predictor

RAMP = np.tile(np.linspace(0, 1, 64), (16, 1))  # dark to bright, left to right


def tiff(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, "TIFF")
    return buf.getvalue()


@pytest.mark.parametrize("arr, mode", [
    (RAMP.astype(np.float32), "F"),                         # the usual float convention, 0..1
    ((RAMP * 255).astype(np.float32), "F"),                 # floats holding 8-bit values
    ((RAMP * 1000 - 200).astype(np.float32), "F"),          # any other range: stretched
    ((RAMP * 65535).astype(np.int32), "I"),                 # 32-bit integers holding 16-bit values
    ((RAMP * 4e6).astype(np.int32), "I"),                   # beyond 16 bits: stretched
])
def test_wide_pixels_keep_their_picture(arr, mode):
    gray, info = images.decode(tiff(arr, mode), "L")
    px = np.asarray(gray)
    assert info.format == "TIFF" and px[:, 0].max() <= 1 and px[:, -1].min() >= 254  # the full range is used
    assert np.all(np.diff(px[0].astype(int)) >= 0)  # and the ramp is still a ramp


def test_float_pixels_that_are_not_numbers_do_not_spoil_the_rest():
    arr = RAMP.astype(np.float32)
    arr[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    px = np.asarray(images.decode(tiff(arr, "F"), "L")[0])
    assert px[:, -1].min() >= 254 and px[1, 0] == 0


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 60, 40)).save(buf, fmt)
    return buf.getvalue()


def test_one_format_rule_for_clean_predict_and_serve(tmp_path, tiny_model):
    from fastapi.testclient import TestClient

    from happysad import serve

    formats = {"ICO": False}
    if features.check("avif"):  # Pillow built with libavif: a photo format like the others
        formats["AVIF"] = True
    assert ("AVIF" in images.ALLOWED_FORMATS) and "ICO" not in images.ALLOWED_FORMATS
    predictor = Predictor(tiny_model)
    with TestClient(serve.create_app(predictor, warm_up=False)) as client:
        for fmt, allowed in formats.items():
            data = _encoded(fmt)
            path = tmp_path / f"x.{fmt.lower()}"
            path.write_bytes(data)
            checked = clean.check_file(path, path.name, "a")
            answered = predictor.predict([str(path)])[0]
            r = client.post("/api/predict", files={"files": (path.name, data, "image/x")})
            if allowed:
                assert checked.ok and checked.format == fmt
                assert "error" not in answered and r.status_code == 200
            else:
                assert checked.reason == "format_not_allowed"
                assert answered["error"].startswith(f"image format {fmt} not allowed")
                assert r.status_code == 415 and r.json()["error"]["code"] == "format_not_allowed"


def test_a_model_file_that_is_not_keras_is_one_line(tmp_path, tiny_model, capsys):
    bad = tmp_path / "m"
    bad.mkdir()
    (bad / "meta.json").write_bytes((tiny_model / "meta.json").read_bytes())
    (bad / "model.keras").write_bytes(np.random.default_rng(0).bytes(3000))
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    assert cli.main(["predict", str(img), "--model", str(bad), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"happysad predict: error: {bad / 'model.keras'}: cannot load "
                                                  "Keras model (")
