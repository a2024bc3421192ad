"""Server limits over real sockets: slow or idle connections are closed, bodies held by all requests
together are capped, and a server given an API key answers its API to no one without it. Time-outs are
configured short so that each test takes a second or two."""

import io
import json
import socket
import threading
import time
from contextlib import contextmanager

import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from happysad import bundle, cli, serve  # noqa: E402
from happysad.errors import HappysadError, UsageError  # noqa: E402
from happysad.predict import Predictor  # noqa: E402

KEY = "k" * 8 + "-0123456789abcdef"


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(bundle.load(tiny_model))


@contextmanager
def running(app, **config):
    """uvicorn with happysad's settings on a free local port, in a thread; yields the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(serve.uvicorn_config(app, "127.0.0.1", port, **config))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert t.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        t.join(10)


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a time-out here fails the test)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def closed_within(s: socket.socket, seconds: float) -> tuple[bytes, float]:
    t0 = time.monotonic()
    s.settimeout(seconds)
    data = read_all(s)
    return data, time.monotonic() - t0


def status_and_error(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "PNG")
    return buf.getvalue()


def multipart(data: bytes, name: str = "x.png") -> tuple[bytes, str]:
    body = (f'--b\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n--b--\r\n"
    return body, "multipart/form-data; boundary=b"


def post_head(length: int, extra: str = "") -> bytes:
    return (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


# ---------------------------------------------------------------------------------------------- time-outs

def test_idle_slow_and_stalled_connections_are_closed(predictor):
    app = serve.create_app(predictor, warm_up=False, body_timeout=1.0)
    with running(app, header_timeout=1.0, keep_alive=0.5) as port:
        idle = connect(port)  # connects and says nothing
        data, waited = closed_within(idle, 5)
        assert data == b"" and waited < 3

        trickle = connect(port)  # a byte at a time: uvicorn's keep-alive alone restarts on every byte
        t0 = time.monotonic()
        with pytest.raises(OSError):
            for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 200:
                trickle.send(bytes([b]))
                time.sleep(0.05)
        data = read_all(trickle)
        assert time.monotonic() - t0 < 4
        assert status_and_error(data) == (408, {"status": 408, "code": "header_timeout",
                                                "message": "the request headers did not arrive in time"})

        body, _ = multipart(png())
        stalled = connect(port)  # headers on time, then half the body and silence
        stalled.sendall(post_head(len(body)) + body[: len(body) // 2])
        data, waited = closed_within(stalled, 5)
        status, err = status_and_error(data)
        assert status == 408 and err["code"] == "body_timeout" and "1 s" in err["message"] and waited < 3

        kept = connect(port)  # an answered request, then idle: closed after the keep-alive time
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data, waited = closed_within(kept, 5)
        assert data.startswith(b"HTTP/1.1 200") and waited < 3

        # and the server still answers a normal client
        fresh = connect(port)
        fresh.sendall(post_head(len(body), "Connection: close\r\n") + body)
        data = read_all(fresh)
        assert data.startswith(b"HTTP/1.1 200") and b'"label"' in data


# ------------------------------------------------------------------------------------- in-flight bytes

def test_bodies_held_by_all_requests_together_are_capped(predictor):
    app = serve.create_app(predictor, warm_up=False, max_upload_mb=0.5, max_inflight_mb=1.0, body_timeout=20)
    assert app.max_inflight == 2**20
    with running(app) as port:
        held = []
        for _ in range(3):  # three uploads of 0.4 MB, each stopped just before its last byte
            s = connect(port)
            s.sendall(post_head(400_000) + b"\0" * (400_000 - 1))
            held.append(s)
        deadline = time.monotonic() + 10
        while app.inflight < 2 * 400_000 - 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.inflight <= app.max_inflight  # the third could not get in
        late = connect(port)
        late.sendall(post_head(400_000))
        status, err = status_and_error(read_all(late))
        assert status == 503 and err["code"] == "busy" and "--max-inflight-mb" in err["message"]
        for s in held:
            s.close()
        deadline = time.monotonic() + 10
        while app.inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.inflight == 0  # released when the clients went away
        body, _ = multipart(png())
        ok = connect(port)
        ok.sendall(post_head(len(body), "Connection: close\r\n") + body)
        assert read_all(ok).startswith(b"HTTP/1.1 200")


# ------------------------------------------------------------------------------------------------ API key

def test_the_api_needs_the_key_and_the_page_does_not(predictor):
    import httpx

    app = serve.create_app(predictor, warm_up=False, api_key=KEY)
    assert serve.app_of(app).state.predictor is predictor
    with running(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        for path in ("/", "/static/key.js", "/static/app.js", "/health", "/docs"):
            assert c.get(path).status_code == 200, path
        files = {"files": ("x.png", png(), "image/png")}
        for headers in ({}, {"X-API-Key": "wrong" * 4}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": f"Bearer {KEY}x"}):
            r = c.post("/api/predict", files=files, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/api/model").status_code == 401
        assert c.get("/api/model", params={"api_key": KEY}).status_code == 401  # only WebSockets use the query
        r = c.post("/api/predict", files=files, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and r.json()["results"][0]["label"] in ("happy", "sad")
        info = c.get("/api/model", headers={"X-API-Key": KEY}).json()
        assert info["limits"]["api_key"] is True and "KEY" not in json.dumps(info)
        # A refused upload is refused before its body is read: a huge declared length gets 401 at once.
        s = connect(port)
        s.sendall(post_head(10**9))
        assert status_and_error(read_all(s))[0] == 401


def test_page_takes_the_key_from_the_address_fragment_or_asks():
    js = (serve.STATIC_DIR / "key.js").read_text()
    assert "#key=" in js and "sessionStorage" in js and "history.replaceState" in js and "prompt(" in js
    app_js = (serve.STATIC_DIR / "app.js").read_text()
    assert 'fetch("/api/' not in app_js  # every API call goes through apiFetch
    html = (serve.STATIC_DIR / "index.html").read_text()
    assert html.index("/static/key.js") < html.index("/static/app.js")


def test_api_keys_are_checked_before_start(tmp_path):
    assert serve.read_api_key(None, None) is None
    assert serve.read_api_key(KEY) == KEY
    f = tmp_path / "key.txt"
    f.write_text(f"  {KEY}\n# a note\n")
    assert serve.read_api_key(path=f) == KEY
    for bad in ("short", "with space inside 123456", "\u00e9" * 20, ""):
        with pytest.raises(UsageError, match=f"at least|{serve.API_KEY_MIN} to 1024"):
            serve.read_api_key(bad)
    with pytest.raises(HappysadError, match="cannot read the API key file"):
        serve.read_api_key(path=tmp_path / "missing")
    with pytest.raises(HappysadError, match="cannot read the API key file: is a folder"):
        serve.read_api_key(path=tmp_path)


def test_cli_key_options_and_the_exposure_warning(tmp_path, capsys):
    a = cli.build_parser().parse_args(["serve", "--api-key-file", "k.txt", "--max-inflight-mb", "50"])
    assert (a.api_key_file, a.api_key, a.max_inflight_mb) == ("k.txt", None, 50.0)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--api-key", KEY, "--api-key-file", "k.txt"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli.main(["serve", "--api-key", "short", "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("happysad serve: error: --api-key must be 16 to 1024") and "\n" not in err
    assert serve.exposure_warning("127.0.0.1", False) is None and serve.exposure_warning("::1", False) is None
    open_warning = serve.exposure_warning("0.0.0.0", False)
    assert "anyone on every network" in open_warning and "--api-key-file" in open_warning
    assert "unencrypted" in serve.exposure_warning("0.0.0.0", True)


def test_every_websocket_needs_the_key_too():
    import asyncio

    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])

    guard = serve.ApiKeyCheck(inner, KEY)

    def connect_ws(path, query=b"", headers=()):
        sent = []

        async def send(msg):
            sent.append(msg)

        scope = {"type": "websocket", "path": path, "query_string": query, "headers": list(headers)}
        asyncio.run(guard(scope, None, send))
        return sent

    assert connect_ws("/ws/camera") == [{"type": "websocket.close", "code": 1008}] and reached == []
    assert connect_ws("/ws/camera", b"api_key=nope") == [{"type": "websocket.close", "code": 1008}]
    assert connect_ws("/ws/camera", f"x=1&api_key={KEY}".encode()) == [] and reached == ["/ws/camera"]
    assert connect_ws("/api/live", headers=[(b"x-api-key", KEY.encode())]) == [] and reached[-1] == "/api/live"


def test_the_page_works_with_a_key_in_chromium(predictor, tmp_path):
    from test_serve_browser import browser, upload_and_wait

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    img = tmp_path / "face.png"
    img.write_bytes(png())
    with running(serve.create_app(predictor, warm_up=False, api_key=KEY)) as port:
        drv = browser()
        try:
            base = f"http://127.0.0.1:{port}/"
            drv.get(base + f"#key={KEY}")  # as start-up prints it
            WebDriverWait(drv, 30).until(lambda d: "happy, sad" in d.find_element(By.ID, "model-info").text)
            assert drv.current_url == base  # the key left the address bar
            assert drv.execute_script("return sessionStorage.getItem('happysad-api-key')") == KEY
            card = upload_and_wait(drv, img, 0)
            assert card.find_element(By.CSS_SELECTOR, "h3.label").text in ("happy", "sad")

            drv.execute_script("sessionStorage.clear()")  # no key: the page asks once, then works
            drv.get(base)
            WebDriverWait(drv, 20).until(lambda d: _alert(d))
            alert = drv.switch_to.alert
            assert "API key" in alert.text
            alert.send_keys(KEY)
            alert.accept()
            WebDriverWait(drv, 30).until(lambda d: "happy, sad" in d.find_element(By.ID, "model-info").text)
            assert upload_and_wait(drv, img, 0).find_element(By.CSS_SELECTOR, "h3.label").text in ("happy", "sad")
        finally:
            drv.quit()


def _alert(drv):
    try:
        return drv.switch_to.alert
    except Exception:
        return False
