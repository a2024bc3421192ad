"""A web page and REST API for a model: ``happysad serve --model RUN``.

    GET  /              the page: drop or choose photos, or take a webcam snapshot
    POST /api/predict   multipart field ``files`` (one or more images) -> labels and probabilities
    GET  /api/model     classes, input size and the metrics from the model's meta.json
    POST /api/predict-video, WS /api/live   video and the page's live camera (see serve_video.py)
    GET  /health        liveness
    GET  /docs          OpenAPI docs (Swagger UI served from the fastapi-offline package, no CDN)

How a request is served: an API request without the server's key (when it has one) is refused first (401);
the body is then read whole by a size-limit middleware (413 past the limit, 503 past the in-flight cap of all
requests together, 408 when it has not arrived within the body time-out); each
upload is checked by :func:`images.probe` (format sniffed from the bytes, pixel limit against
decompression bombs, upright size) and prepared by ``Predictor.prepare`` exactly as ``happysad predict``
does (decoding, and for face models face detection and cropping), in a small thread pool; the model inputs then go to one inference thread that runs everything queued so
far as a single batch (greedy micro-batching: no waiting when idle, bigger batches under load). The event
loop never runs decoding or the model. Errors are JSON: ``{"error": {status, code, message, file?}}``. The page's files are read once at start-up and served from memory by
fixed routes, so no request can name a file on the server.

Each result is what ``happysad predict --json`` prints (path, label, probabilities, ms; for face models
also ``face_found`` and ``faces``: a list of {box, score, label, probabilities}) plus the image size and
``box`` [x, y, w, h]: the largest face, or the whole image when no face was found or the model is not a
face model. The page draws every face's box and label.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at run time, and
# they name types imported inside create_app.
import asyncio
import hmac
import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

import numpy as np

from . import __version__, images
from .errors import HappysadError, UsageError
from .predict import Predictor
from .serve_video import add_video_routes

# Defaults, in one place.
HOST = "127.0.0.1"
PORT = 8000
MAX_UPLOAD_MB = 10.0   # the whole request body (all files together)
MAX_FILES = 16         # images in one request
MAX_BATCH = 64         # images in one model call
MAX_PENDING = 256      # images accepted but not yet answered; past this a request gets 503
DECODE_WORKERS = 2     # threads decoding uploads (the machine this was tuned on has 2 cores)
MAX_NAME = 200         # uploaded file names are echoed back, cut to this length
# Slow or idle clients: every connection is closed by the server once it has waited this long.
KEEP_ALIVE_S = 5.0     # idle between two requests on one connection (uvicorn's timeout_keep_alive)
HEADER_TIMEOUT_S = 10.0  # from connecting (or the previous answer) until the request line and headers are in
BODY_TIMEOUT_S = 60.0  # from the headers until the whole body is in (10 MB at 1.4 Mbit/s)
MAX_INFLIGHT_MB = 200.0  # request bodies held in memory, all requests together; past this a request gets 503
API_KEY_MIN = 16       # characters: a shorter key is too easy to guess

STATIC_DIR = Path(__file__).parent / "static"
PAGE_FILES = {  # route -> (file in static/, media type): the complete list of files the server shows
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/key.js": ("key.js", "text/javascript; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")

# images.ImageError reason -> HTTP status: not a (permitted) image is 415, a broken or oversized one 400.
STATUS_FOR_REASON = {"empty": 415, "not_image": 415, "format_not_allowed": 415,
                     "too_many_pixels": 400, "corrupt": 400, "unreadable": 400}


class ApiError(Exception):
    """An expected failure of one request: becomes ``{"error": {status, code, message[, file]}}``."""

    def __init__(self, status: int, code: str, message: str, file: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.file = status, code, message, file

    def body(self) -> dict:
        err = {"status": self.status, "code": self.code, "message": self.message}
        if self.file is not None:
            err["file"] = self.file
        return {"error": err}


# --------------------------------------------------------------------------------------------- batching

class Batcher:
    """One thread owns the model. Callers submit (N, H, W, C) arrays from the event loop and await the
    probabilities; the thread stacks whatever is queued (up to ``max_batch`` images) into one call."""

    def __init__(self, predictor, max_batch: int = MAX_BATCH):
        self.predictor = predictor
        self.max_batch = int(max_batch)
        self._q: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="happysad-infer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._q.put(None)
                self._thread.join(timeout=10)
            self._thread = None

    def warm_up(self) -> None:
        """Run a few batch sizes once, so that no user pays for tracing: after two sizes Keras traces the
        batch dimension as unknown, and every later size runs without retracing."""
        n = 1
        while True:
            self.predictor.predict_arrays(self.predictor.example_rows(min(n, self.max_batch)))
            if n >= self.max_batch:
                break
            n *= 2

    async def predict(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """(N, H, W, C) -> ((N, K) probabilities, timing of the batch they ran in)."""
        self.start()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put((x, loop, fut, time.perf_counter()))
        return await fut

    def _take(self) -> list | None:
        first = self._q.get()
        if first is None:
            return None
        items, n = [first], len(first[0])
        while n < self.max_batch:
            try:
                nxt = self._q.get_nowait()
            except queue.Empty:
                break
            if nxt is None:  # stop after this batch
                self._q.put(None)
                break
            items.append(nxt)
            n += len(nxt[0])
        return items

    def _loop(self) -> None:
        while (items := self._take()) is not None:
            t0 = time.perf_counter()
            try:
                # No padding: warm_up has run several batch sizes, so Keras no longer retraces per size.
                probs = self.predictor.predict_arrays(np.concatenate([it[0] for it in items]), pad=False)
                err = None
            except Exception as e:  # a model failure must answer every waiter, not kill the thread
                probs, err = None, e
            t1 = time.perf_counter()
            n_total = sum(len(it[0]) for it in items)
            start = 0
            for x, loop, fut, t_in in items:
                timing = {"queue_ms": round((t0 - t_in) * 1000, 2), "model_ms": round((t1 - t0) * 1000, 2),
                          "batch": n_total}
                out = None if err is not None else (probs[start:start + len(x)], timing)
                start += len(x)
                loop.call_soon_threadsafe(_settle, fut, out, err)


def _settle(fut: asyncio.Future, result, err) -> None:
    if fut.cancelled():  # the client went away
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(result)


# --------------------------------------------------------------------------------------- body size limit

class BodyLimit:
    """ASGI middleware: read a request body whole, refusing it with 413 once it passes ``max_bytes``
    (checked on Content-Length first, then while reading, so a chunked upload cannot slip past), with 503
    once the bodies of all requests in flight together would pass ``max_inflight_bytes``, and with 408 when
    the body has not arrived ``body_timeout`` seconds after its headers."""

    def __init__(self, app, max_mb: float, max_inflight_mb: float = MAX_INFLIGHT_MB,
                 body_timeout: float = BODY_TIMEOUT_S):
        self.app, self.max_mb, self.max_bytes = app, max_mb, int(max_mb * 2**20)
        self.max_inflight_mb = max(max_inflight_mb, max_mb)  # one request of the largest size must fit
        self.max_inflight = int(self.max_inflight_mb * 2**20)
        self.body_timeout = body_timeout
        self.inflight = 0  # bytes of request bodies held now; touched only on the event loop

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _send_json(send, ApiError(400, "bad_request", "Content-Length is not a number"))
            if declared > self.max_bytes:
                return await _send_json(send, self._too_large())
            if self.inflight + declared > self.max_inflight:
                return await _send_json(send, self._busy())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        chunks, total = [], 0
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    return await _send_json(send, ApiError(
                        408, "body_timeout", f"the request body did not arrive within {self.body_timeout:g} s"))
                if msg["type"] == "http.disconnect":
                    return
                body = msg.get("body", b"")
                if total + len(body) > self.max_bytes:
                    return await _send_json(send, self._too_large())
                if self.inflight + len(body) > self.max_inflight:
                    return await _send_json(send, self._busy())
                total += len(body)
                self.inflight += len(body)
                chunks.append(body)
                if not msg.get("more_body", False):
                    break
            body, replayed = b"".join(chunks), False
            chunks.clear()

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            self.inflight -= total

    def _too_large(self) -> ApiError:
        return ApiError(413, "upload_too_large", f"request body is over the upload limit of {self.max_mb:g} MB "
                        "(all files together; the server's --max-upload-mb)")

    def _busy(self) -> ApiError:
        return ApiError(503, "busy", f"the server holds {self.max_inflight_mb:g} MB of uploads already "
                        "(--max-inflight-mb); retry shortly")


async def _send_json(send, err: ApiError, headers: tuple = ()) -> None:
    data = json.dumps(err.body()).encode()
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": data})


# ------------------------------------------------------------------------------------------------ API key

# What the key guards, with every WebSocket; the page, its files, /health and the docs hold no data.
API_PREFIX = "/api/"


def read_api_key(text: str | None = None, path: str | os.PathLike | None = None) -> str | None:
    """The server's API key from ``--api-key`` text or the first line of ``--api-key-file``; None for none.
    A key must be printable ASCII without spaces (it travels in a header) and at least API_KEY_MIN long."""
    if path is not None:
        if text is not None:
            raise UsageError("give --api-key or --api-key-file, not both")
        problem = images.regular_file_problem(path)
        if problem:
            raise HappysadError(f"{images.shown(path)}: cannot read the API key file: {problem[1]}")
        try:
            with open(path, "rb") as f:
                raw = f.read(4096)
        except OSError as e:
            raise HappysadError(f"{images.shown(path)}: cannot read the API key file ({e.strerror})") from None
        lines = raw.decode("ascii", "replace").strip().splitlines()
        text, where = (lines[0].strip() if lines else ""), f"{images.shown(path)}: the API key"
    elif text is None:
        return None
    else:
        where = "--api-key"
    if not text or len(text) < API_KEY_MIN or not all(33 <= ord(c) < 127 for c in text) or len(text) > 1024:
        raise UsageError(f"{where} must be {API_KEY_MIN} to 1024 printable characters without spaces (make one "
                         "with: python -c \"import secrets; print(secrets.token_urlsafe(32))\")")
    return text


class ApiKeyCheck:
    """ASGI middleware: an HTTP request to the API (``/api/...``) and every WebSocket must carry the key, as
    ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (a browser's WebSocket cannot send headers, so there
    ``?api_key=KEY`` too); anything else gets 401 before its body is read. The page gets the key once from
    the address ``http://HOST:PORT/#key=KEY`` (a fragment never reaches the server or its logs) or by asking,
    and keeps it in the tab's sessionStorage (static/key.js)."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    def _allowed(self, scope) -> bool:
        offered = []
        for name, value in scope.get("headers") or []:
            if name == b"x-api-key":
                offered.append(value.strip())
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                offered.append(value[7:].strip())
        if scope["type"] == "websocket":
            offered += [v.encode() for v in parse_qs(scope.get("query_string", b"").decode("latin-1"))
                        .get("api_key", [])]
        # compare_digest: how long a wrong key takes to refuse says nothing about the right one
        return any(hmac.compare_digest(k, self.key) for k in offered)

    async def __call__(self, scope, receive, send):
        guarded = scope["type"] == "websocket" or (scope["type"] == "http" and scope["path"].startswith(API_PREFIX))
        if not guarded or self._allowed(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})  # refused before the handshake
        await _send_json(send, ApiError(401, "unauthorized", "this server needs its API key: send "
                                        "'Authorization: Bearer KEY' or 'X-API-Key: KEY'"),
                         headers=((b"www-authenticate", b'Bearer realm="happysad"'),))


# ----------------------------------------------------------------------------------------- slow clients

def guarded_protocol(header_timeout: float = HEADER_TIMEOUT_S):
    """uvicorn's h11 protocol with a deadline for each request's line and headers: counted from the
    connection (or the previous answer), not from the last byte, so a client that sends a byte every few
    seconds cannot hold a connection (uvicorn's keep-alive time-out restarts on every byte). A request
    begun and not finished gets 408; a connection that sent nothing is just closed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timeout_body = b'{"error": {"status": 408, "code": "header_timeout", "message": "the request headers ' \
                   b'did not arrive in time"}}'
    timeout_answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: "
                      + str(len(timeout_body)).encode() + b"\r\nconnection: close\r\n\r\n" + timeout_body)

    class GuardedH11Protocol(H11Protocol):
        _header_timer = None
        _started = False  # bytes of the awaited request have come

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._started = self._started or bool(data)
            super().data_received(data)

        def handle_events(self) -> None:
            scope = self.scope
            super().handle_events()
            if self.scope is not scope:  # a request's headers are complete (or it became a WebSocket)
                self._disarm()

        def on_response_complete(self) -> None:
            scope = self.scope
            super().on_response_complete()
            if self.scope is scope and not self.transport.is_closing():  # now waiting for the next request
                self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._started = False
            self._header_timer = self.loop.call_later(header_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _timed_out(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                if self._started:
                    self.transport.write(timeout_answer)
                self.transport.close()

    return GuardedH11Protocol


def exposure_warning(host: str, has_key: bool) -> str | None:
    """What start-up says when the server can be reached from other machines."""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return None
    where = "every network this machine is on" if host in ("0.0.0.0", "::", "") else f"the network of {host}"
    if has_key:
        return (f"warning: listening on {host}: the page is open to {where}; the API needs the key, which "
                "travels unencrypted over plain HTTP (put a TLS proxy in front on untrusted networks)")
    return (f"warning: listening on {host}: anyone on {where} can use the page and the API (classify images, "
            "read the model card); pass --api-key-file FILE to require a key, or --host 127.0.0.1")


# ------------------------------------------------------------------------------------------------- app

def _read_page_files() -> dict[str, tuple[bytes, str]]:
    out = {}
    for route, (name, media) in PAGE_FILES.items():
        path = STATIC_DIR / name
        try:
            out[route] = (path.read_bytes(), media)
        except OSError as e:
            raise HappysadError(f"{path}: page file missing from the installed package ({e.strerror})") from None
    return out


def _swagger_files() -> dict[str, tuple[bytes, str]]:
    """Swagger UI 5's script and style as shipped in the fastapi-offline package (FastAPI itself would
    link them from a CDN, which many machines cannot reach). Empty when the package is missing."""
    try:
        import fastapi_offline
    except ImportError:
        return {}
    base = Path(fastapi_offline.__file__).parent / "static"
    files = {"/docs-static/swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
             "/docs-static/swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8")}
    out = {}
    for route, (name, media) in files.items():
        try:
            out[route] = ((base / name).read_bytes(), media)
        except OSError:
            return {}
    return out


def display_name(bundle) -> str:
    """A model's name without the server's folders: the run folder (or built-in) name, else the file stem."""
    p = Path(bundle.path)
    if p.parent.name == "weights":
        return p.parent.parent.name
    return p.parent.name if p.stem == "model" else p.stem  # model.keras, or its fast_runtime model.tflite


def create_app(model, *, max_upload_mb: float = MAX_UPLOAD_MB, max_files: int = MAX_FILES,
               max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING,
               decode_workers: int = DECODE_WORKERS, max_pixels: int = images.MAX_PIXELS, warm_up: bool = True,
               on_ready: Callable[[], None] | None = None, api_key: str | None = None,
               max_inflight_mb: float = MAX_INFLIGHT_MB, body_timeout: float = BODY_TIMEOUT_S):
    """The FastAPI app for ``model`` (a Predictor, a loaded Bundle, or a run folder / .keras / built-in
    name, loaded here once with Keras safe_mode), inside the body-limit middleware and, given an
    ``api_key``, the key check. ``on_ready`` is called once start-up is done."""
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if max_upload_mb <= 0 or max_files < 1 or max_batch < 1 or max_pending < 1 or decode_workers < 1 \
            or max_inflight_mb <= 0 or body_timeout <= 0:
        raise UsageError("max_upload_mb, max_files, max_batch, max_pending, decode_workers, max_inflight_mb "
                         "and body_timeout must be positive")
    if api_key is not None:
        api_key = read_api_key(api_key)
    max_pending = max(max_pending, max_files)  # a request of max_files images must be able to get in
    max_pixels = min(max_pixels, images.MAX_PIXELS)  # load_for_model refuses more anyway
    predictor = model if isinstance(model, Predictor) else Predictor(model, batch_size=max_batch)
    bundle = predictor.bundle
    model_name = display_name(bundle)  # never the path: a request learns nothing about the server's folders
    batcher = Batcher(predictor, max_batch)
    pool = ThreadPoolExecutor(decode_workers, thread_name_prefix="happysad-decode")
    page = _read_page_files()
    swagger = _swagger_files()
    pending = 0  # touched only on the event loop

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        if warm_up:
            await asyncio.get_running_loop().run_in_executor(pool, batcher.warm_up)
        if on_ready is not None:
            on_ready()
        yield
        batcher.stop()
        pool.shutdown(wait=False, cancel_futures=True)
        stop_video()

    app = FastAPI(title="happysad", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Classify images with a happysad model. Errors are JSON: "
                              '`{"error": {"status", "code", "message", "file"?}}`.')
    app.state.predictor, app.state.batcher = predictor, batcher
    limits = {"max_upload_mb": max_upload_mb, "max_files": max_files, "max_pixels": max_pixels,
              "max_inflight_mb": max(max_inflight_mb, max_upload_mb), "body_timeout_s": body_timeout,
              "api_key": api_key is not None}

    # ---- errors: one JSON shape for everything
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(ApiError(exc.status_code, codes.get(exc.status_code, "http_error"),
                                     str(exc.detail)).body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        return JSONResponse(ApiError(500, "internal", f"internal error ({type(exc).__name__}); see the server "
                                     "log").body(), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        msg = ("send one video as multipart/form-data field 'file'" if request.url.path == "/api/predict-video"
               else "send one or more images as multipart/form-data field 'files'")
        return JSONResponse(ApiError(422, "bad_request", f"{msg} ({where})").body(), status_code=422)

    # ---- page and docs: fixed routes over bytes read at start-up
    def page_route(route: str, data: bytes, media: str, csp: bool):
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if csp:
            headers["Content-Security-Policy"] = PAGE_CSP

        async def serve_file():
            return Response(data, media_type=media, headers=headers)

        app.add_api_route(route, serve_file, methods=["GET", "HEAD"], include_in_schema=False)

    for route, (data, media) in page.items():
        page_route(route, data, media, csp=route == "/")
    for route, (data, media) in swagger.items():
        page_route(route, data, media, csp=False)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        if swagger:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="happysad API",
                                       swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-static/swagger-ui.css",
                                       swagger_favicon_url="/favicon.svg")
        return HTMLResponse("<p>Swagger UI is not installed (pip install fastapi-offline); the API "
                            'description is at <a href="/openapi.json">/openapi.json</a>.</p>')

    # ---- API
    @app.get("/health", summary="Liveness: the model is loaded and the server answers")
    async def health():
        return {"status": "ok", "model": model_name, "version": __version__}

    @app.get("/api/model", summary="Classes, input size and metrics of the loaded model")
    async def model_info():
        meta = bundle.meta
        return {"name": model_name, "classes": bundle.classes,
                "input": meta.get("input", {}), "output": meta.get("output"), "arch": meta.get("arch"),
                "metrics": meta.get("metrics"), "versions": meta.get("versions"), "faces": predictor.faces,
                "kind": meta.get("kind", "model"),
                "limits": limits, "video": video_limits}

    def prepare(data: bytes):
        # Header checks first (format allowed, pixel limit) so that a bomb is refused before decoding;
        # then exactly what `happysad predict` does (face detection included), so both give the same answer.
        info = images.probe(data, max_pixels=max_pixels)
        return predictor.prepare(data), (info.width, info.height)

    error_responses = {s: {"description": d, "content": {"application/json": {"example": {"error": {
        "status": s, "code": c, "message": "..."}}}}} for s, c, d in (
        (400, "corrupt", "corrupt image or decompression bomb (too many pixels)"),
        (413, "upload_too_large", "request body over --max-upload-mb, or more than --max-files files"),
        (415, "not_image", "a file is not an image (judged by its bytes, not its name)"),
        (422, "bad_request", "no multipart field 'files'"),
        (503, "busy", "too many images waiting; retry shortly"))}

    @app.post("/api/predict", summary="Classify one or more images", responses=error_responses)
    async def predict(files: list[UploadFile] = File(..., description="one or more image files")):
        """Answers ``{"results": [...], "timing": {...}}``: one result per file, in order, each as
        ``happysad predict --json`` prints it (with ``face_found`` and ``faces`` for face models) plus
        ``width``, ``height`` and ``box`` [x, y, w, h] (the largest face, else the whole image)."""
        nonlocal pending
        t0 = time.perf_counter()
        if len(files) > max_files:
            raise ApiError(413, "too_many_files", f"{len(files)} files in one request; the limit is {max_files}")
        if pending + len(files) > max_pending:
            raise ApiError(503, "busy", f"{pending} images are waiting; retry shortly")
        pending += len(files)
        try:
            names = [(f.filename or f"file{i}")[-MAX_NAME:] for i, f in enumerate(files)]
            datas = [await f.read() for f in files]
            loop = asyncio.get_running_loop()
            prepared = await asyncio.gather(*(loop.run_in_executor(pool, prepare, d) for d in datas),
                                            return_exceptions=True)
            for name, p in zip(names, prepared):
                if isinstance(p, images.ImageError):
                    raise ApiError(STATUS_FOR_REASON.get(p.reason, 400), p.reason, f"{name}: {p.detail}", name)
                if isinstance(p, BaseException):
                    raise p
            t1 = time.perf_counter()
            probs, timing = await batcher.predict(np.concatenate([prep.x for prep, _ in prepared]))
        finally:
            pending -= len(files)
        per_row_ms = timing["model_ms"] / max(timing["batch"], 1)
        results, start = [], 0
        for name, (prep, (w, h)) in zip(names, prepared):
            r = predictor.finish(name, prep, probs[start:start + len(prep.x)])
            start += len(prep.x)
            r["ms"] = round(per_row_ms * len(prep.x), 2)
            # box: what decided the label, the largest face or else the whole image
            r.update(width=w, height=h, box=r["faces"][0]["box"] if r.get("faces") else [0, 0, w, h])
            results.append(r)
        timing.update(decode_ms=round((t1 - t0) * 1000, 2),
                      total_ms=round((time.perf_counter() - t0) * 1000, 2))
        return JSONResponse({"results": results, "timing": timing})  # plain dicts: skip FastAPI's re-encoding

    # ---- video: POST /api/predict-video and the page's live camera (WS /api/live)

    video_limits, stop_video = add_video_routes(app, predictor, ApiError)

    guarded = BodyLimit(app, max_upload_mb, max_inflight_mb, body_timeout)
    return guarded if api_key is None else ApiKeyCheck(guarded, api_key)


def app_of(asgi) -> Any:
    """The FastAPI app inside the middleware (for tests and tools that want ``.state``)."""
    while isinstance(asgi, (BodyLimit, ApiKeyCheck)):
        asgi = asgi.app
    return asgi


def uvicorn_config(app, host: str = HOST, port: int = PORT, *, log_level: str = "warning",
                   header_timeout: float = HEADER_TIMEOUT_S, keep_alive: float = KEEP_ALIVE_S):
    """uvicorn's settings for ``app``: slow or idle connections are closed (see guarded_protocol)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=5, timeout_keep_alive=keep_alive,
                          http=guarded_protocol(header_timeout))


def serve(model, host: str = HOST, port: int = PORT, *, log_level: str = "warning",
          header_timeout: float = HEADER_TIMEOUT_S, keep_alive: float = KEEP_ALIVE_S, **kw) -> None:
    """Load the model, then run the app on uvicorn until interrupted."""
    import uvicorn

    app = create_app(model, **kw)
    config = uvicorn_config(app, host, port, log_level=log_level, header_timeout=header_timeout,
                            keep_alive=keep_alive)
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind, after logging why
        raise HappysadError(f"could not listen on {host}:{port} (is the port in use?)") from None
    if not server.started:
        raise HappysadError(f"could not start the server on {host}:{port}")


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{shown}:{port}/"


__all__ = ["create_app", "serve", "app_of", "ApiError", "Batcher", "BodyLimit", "ApiKeyCheck", "url_for",
           "uvicorn_config", "guarded_protocol", "read_api_key", "exposure_warning",
           "HOST", "PORT", "MAX_UPLOAD_MB", "MAX_FILES"]
