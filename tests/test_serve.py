"""The web API, through FastAPI's TestClient: every endpoint, every error, the page and docs assets."""

import asyncio
import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from happysad import serve  # noqa: E402
from happysad.bundle import load  # noqa: E402
from happysad.cli import main  # noqa: E402
from happysad.predict import Predictor  # noqa: E402


@pytest.fixture(scope="module")
def predictor(trained_run):
    _, res = trained_run
    return Predictor(load(res.run_dir))


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(serve.create_app(predictor)) as c:
        yield c


def png_bytes(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in 60 bytes: the shape of a decompression bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def error_of(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["status"] == status and err["message"]
    return err


def test_health_and_model_card(client, trained_run):
    _, res = trained_run
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    m = client.get("/api/model").json()
    assert m["name"] == "tiny" and r.json()["model"] == "tiny"  # the run's name, not its path on the server
    assert m["classes"] == ["circle", "square"]
    assert m["input"]["height"] == 32 and m["input"]["width"] == 32 and m["input"]["color_mode"] == "rgb"
    assert m["metrics"]["accuracy"] == res.metrics["accuracy"] and m["metrics"]["n"] == res.metrics["n"]
    assert m["limits"] == {"max_upload_mb": 10.0, "max_files": 16, "max_pixels": 50_000_000,
                           "max_inflight_mb": 200.0, "body_timeout_s": 60.0, "api_key": False}
    assert m["faces"] is False


def test_predict_matches_predict_json(client, predictor, trained_run):
    data, _ = trained_run
    paths = [data / "circle" / "circle_000.png", data / "square" / "square_001.png"]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    r = client.post("/api/predict", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = predictor.predict([str(p) for p in paths])
    assert [x["path"] for x in body["results"]] == [p.name for p in paths]
    for got, want in zip(body["results"], expected):
        # What `happysad predict --json` prints, plus the image size and the box the model looked at.
        assert set(want) <= set(got)
        assert got["label"] == want["label"]
        for c in predictor.classes:
            assert got["probabilities"][c] == pytest.approx(want["probabilities"][c], abs=1e-5)
        assert (got["width"], got["height"]) == (40, 40) and got["box"] == [0, 0, 40, 40]
        assert got["ms"] > 0 and "faces" not in got
    t = body["timing"]
    assert t["batch"] >= 2 and 0 < t["model_ms"] <= t["total_ms"] and t["decode_ms"] >= 0


def test_box_is_in_upright_coordinates(client, predictor):
    # A 60x40 JPEG stored sideways (EXIF orientation 6): people see it 40 wide and 60 high.
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    arr[:, :20] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    data = png_bytes(img, "JPEG", exif=exif.tobytes(), quality=95)
    r = client.post("/api/predict", files={"files": ("side.jpg", data, "image/jpeg")})
    got = r.json()["results"][0]
    assert (got["width"], got["height"]) == (40, 60) and got["box"] == [0, 0, 40, 60]
    # Rotated exactly once, as `happysad predict` does it.
    want = predictor.predict([data])[0]
    assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)


def test_photo_gets_the_same_answer_as_predict(client, predictor):
    # A JPEG bigger than the model input takes the same decoding path (JPEG draft mode) as `predict`.
    rng = np.random.default_rng(4)
    photo = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    data = png_bytes(photo, "JPEG", quality=85)
    got = client.post("/api/predict", files={"files": ("photo.jpg", data, "image/jpeg")}).json()["results"][0]
    want = predictor.predict([data])[0]
    assert got["probabilities"] == want["probabilities"] and got["box"] == [0, 0, 640, 480]


def test_unpadded_batches_give_the_same_numbers(predictor):
    x = np.random.default_rng(5).integers(0, 255, (3, 32, 32, 3)).astype(np.float32)
    assert np.allclose(predictor.predict_arrays(x, pad=False), predictor.predict_arrays(x), atol=1e-5)


def test_probe_reads_the_header_only():
    from happysad import images

    info = images.probe(png_header_only(8000, 6000), max_pixels=10**9)  # no pixel data to decode
    assert (info.format, info.width, info.height) == ("PNG", 8000, 6000)
    with pytest.raises(images.ImageError) as e:
        images.probe(png_header_only(8000, 8000))
    assert e.value.reason == "too_many_pixels"
    with pytest.raises(images.ImageError) as e:
        images.probe(b"GIF89a-not-really")
    assert e.value.reason in ("corrupt", "not_image")


@pytest.mark.parametrize("name,data,reason", [
    ("notes.txt", b"just some text\n", "not_image"),
    ("photo.jpg", b"<!doctype html><html><body>404</body></html>", "not_image"),  # the name is not believed
    ("empty.png", b"", "empty"),
    ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "not_image"),
])
def test_not_an_image_is_415(client, name, data, reason):
    err = error_of(client.post("/api/predict", files={"files": (name, data, "image/jpeg")}), 415)
    assert err["code"] == reason and err["file"] == name and name in err["message"]


def test_format_not_allowed_is_415(client):
    data = png_bytes(Image.new("RGB", (16, 16), "red"), "ICO")
    err = error_of(client.post("/api/predict", files={"files": ("x.ico", data, "image/x-icon")}), 415)
    assert err["code"] == "format_not_allowed"


def test_corrupt_image_is_400(client, trained_run):
    data, _ = trained_run
    good = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    for name, blob in [("cut.png", good[: len(good) // 2]),
                       ("cut.jpg", png_bytes(Image.new("RGB", (64, 64), "blue"), "JPEG")[:300])]:
        err = error_of(client.post("/api/predict", files={"files": (name, blob, "image/png")}), 400)
        assert err["code"] == "corrupt" and err["file"] == name


@pytest.mark.parametrize("w,h", [(8000, 8000), (60000, 60000)])  # over happysad's limit; over Pillow's too
def test_decompression_bomb_is_400(client, w, h):
    err = error_of(client.post("/api/predict", files={"files": ("bomb.png", png_header_only(w, h), "image/png")}),
                   400)
    assert err["code"] == "too_many_pixels" and err["file"] == "bomb.png"


def test_one_bad_file_fails_the_request_and_names_it(client, trained_run):
    data, _ = trained_run
    ok = (data / "circle" / "circle_000.png").read_bytes()
    r = client.post("/api/predict", files=[("files", ("a.png", ok, "image/png")),
                                           ("files", ("b.png", b"nope", "image/png"))])
    assert error_of(r, 415)["file"] == "b.png"


def test_limits_upload_size_and_file_count(predictor, trained_run):
    data, _ = trained_run
    img = (data / "circle" / "circle_000.png").read_bytes()
    big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)))
    assert len(big) > 100_000
    app = serve.create_app(predictor, max_upload_mb=0.05, max_files=2, warm_up=False)
    with TestClient(app) as c:
        err = error_of(c.post("/api/predict", files={"files": ("big.png", big, "image/png")}), 413)
        assert err["code"] == "upload_too_large" and "0.05 MB" in err["message"]
        # A chunked upload (no Content-Length) is counted as it arrives.
        boundary = "bnd"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
        chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
        r = c.post("/api/predict", content=chunks,
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in r.request.headers
        assert error_of(r, 413)["code"] == "upload_too_large"

        three = [("files", (f"{i}.png", img, "image/png")) for i in range(3)]
        err = error_of(c.post("/api/predict", files=three), 413)
        assert err["code"] == "too_many_files" and "limit is 2" in err["message"]
        assert c.post("/api/predict", files=three[:2]).status_code == 200


def test_bad_requests_are_json(client):
    err = error_of(client.post("/api/predict"), 422)
    assert "files" in err["message"]
    err = error_of(client.post("/api/predict", data={"other": "x"}), 422)
    assert error_of(client.get("/api/predict"), 405)["code"] == "method_not_allowed"
    assert error_of(client.post("/api/predict", headers={"content-length": "abc"}, content=b""), 400)


@pytest.mark.parametrize("path", ["/static/../serve.py", "/static/serve.py", "/static/%2e%2e/serve.py",
                                  "/static/..%2fserve.py", "/etc/passwd", "/static/app.js/..", "/static/",
                                  "/docs-static/index.html", "/src/happysad/serve.py"])
def test_no_server_file_is_reachable(client, path):
    assert error_of(client.get(path), 404)["code"] == "not_found"


def test_no_route_takes_a_path(client):
    app = serve.app_of(client.app)
    paths = [getattr(r, "path", "") for r in app.routes]
    assert "/api/predict" in paths and not [p for p in paths if "{" in p]


def test_page_and_assets_are_served_locally(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert 'src="/static/app.js"' in html and 'href="/static/app.css"' in html and "file-input" in html
    for path, kind in [("/static/app.js", "javascript"), ("/static/app.css", "text/css"),
                       ("/favicon.svg", "svg")]:
        a = client.get(path)
        assert a.status_code == 200 and kind in a.headers["content-type"] and len(a.content) > 100
    # Nothing is fetched from another host: no absolute URLs in the page or its script.
    for text in (html, client.get("/static/app.js").text, client.get("/static/app.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_docs_work_offline(client):
    html = client.get("/docs").text
    assert "/docs-static/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    js = client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs-static/swagger-ui.css").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/model", "/health"} <= set(spec["paths"])
    assert {"400", "413", "415"} <= set(spec["paths"]["/api/predict"]["post"]["responses"])


class SlowFake:
    """Stands in for a Predictor in the batching test: records batch sizes, answers x.mean per image."""

    def __init__(self):
        self.batches, self.gate = [], threading.Event()

    def predict_arrays(self, x, pad=True):
        assert pad is False  # the server runs exact batch sizes
        self.batches.append(len(x))
        if len(self.batches) == 1:
            self.gate.wait(5)  # hold the first call so the others queue up behind it
        m = x.reshape(len(x), -1).mean(1)
        return np.stack([m, -m], 1)


def test_batcher_batches_queued_requests_and_routes_answers():
    fake = SlowFake()
    b = serve.Batcher(fake, max_batch=4)

    async def go():
        first = asyncio.ensure_future(b.predict(np.full((1, 2, 2, 1), 100.0)))
        await asyncio.sleep(0.2)
        rest = [asyncio.ensure_future(b.predict(np.full((n, 2, 2, 1), float(v))))
                for v, n in [(1, 1), (2, 2), (3, 1), (4, 1), (5, 1)]]
        await asyncio.sleep(0.1)
        fake.gate.set()
        return await first, await asyncio.gather(*rest)

    try:
        (p0, t0), rest = asyncio.run(go())
    finally:
        b.stop()
    assert fake.batches[0] == 1 and sum(fake.batches) == 7 and max(fake.batches) == 4
    assert p0[0, 0] == 100.0 and t0["batch"] == 1
    for (p, t), v, n in zip(rest, [1, 2, 3, 4, 5], [1, 2, 1, 1, 1]):
        assert p.shape == (n, 2) and np.all(p[:, 0] == v)
    assert rest[0][1]["batch"] == 4 and rest[0][1]["queue_ms"] > 50  # waited behind the held call


def test_batcher_model_failure_answers_every_waiter():
    class Broken:
        def predict_arrays(self, x, pad=True):
            raise RuntimeError("boom")

    b = serve.Batcher(Broken())

    async def go():
        return await asyncio.gather(*(b.predict(np.zeros((1, 2, 2, 1))) for _ in range(3)),
                                    return_exceptions=True)

    try:
        out = asyncio.run(go())
    finally:
        b.stop()
    assert all(isinstance(e, RuntimeError) for e in out)


def test_concurrent_requests_all_answered(client, trained_run):
    data, _ = trained_run
    img = (data / "square" / "square_002.png").read_bytes()
    out = []

    def one():
        out.append(client.post("/api/predict", files={"files": ("s.png", img, "image/png")}).json())

    threads = [threading.Thread(target=one) for _ in range(12)]
    t = time.perf_counter()
    [th.start() for th in threads]
    [th.join(30) for th in threads]
    assert len(out) == 12 and time.perf_counter() - t < 30
    labels = {r["results"][0]["label"] for r in out}
    probs = {r["results"][0]["probabilities"]["square"] for r in out}
    assert len(labels) == 1 and max(probs) - min(probs) < 1e-5


def test_create_app_rejects_bad_limits(predictor):
    from happysad.errors import UsageError

    with pytest.raises(UsageError):
        serve.create_app(predictor, max_files=0)


def test_cli_serve_model_choice(capsys):
    import argparse

    from happysad import bundle, cli
    from happysad.errors import UsageError

    names = bundle.builtin_names()
    if "happy-sad" in names:  # without --model, the built-in photo model serves
        assert cli._model_ref(argparse.Namespace(model=None)) == "happy-sad"
    elif "fer-happy-sad" in names:  # or else the built-in face model
        assert cli._model_ref(argparse.Namespace(model=None)) == "fer-happy-sad"
    else:
        with pytest.raises(UsageError, match="no --model given"):
            cli._model_ref(argparse.Namespace(model=None))
    assert main(["serve", "--model", "/nonexistent/run"]) == 1
    assert "happysad serve: error: /nonexistent/run" in capsys.readouterr().err


def test_url_for():
    assert serve.url_for("0.0.0.0", 8000) == "http://127.0.0.1:8000/"
    assert serve.url_for("127.0.0.1", 9) == "http://127.0.0.1:9/"
