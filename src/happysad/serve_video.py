"""The server's video routes, added to ``serve``'s app by :func:`add_video_routes`:

    POST /api/predict-video   multipart field ``file`` (one short video) -> {"frames", "tracks", "clip"},
                              each as ``happysad predict --json`` prints them for a video
    WS   /api/live            the page's Live mode: the client sends one JPEG frame (binary message) and
                              waits for its answer before sending the next; each answer is a frame result
                              (faces with track IDs, smoothed labels) plus the frame's size and server time

Both use :mod:`happysad.video`: the same face finding, one model call per frame, tracker and smoothing
as ``happysad predict clip.mp4``. Each live connection has its own tracker. Limits, in the style of
``/api/predict``: the request body (``--max-upload-mb``, the server's size-limit middleware), the video's
length (``max_video_seconds``), the sampling rate (``max_video_fps``), videos waiting (503 past
``max_video_pending``), live clients (``max_live``) and the size of one live frame.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from . import images, video
from .errors import HappysadError

MAX_VIDEO_SECONDS = 60.0   # longest video accepted by /api/predict-video
MAX_VIDEO_FPS = 10.0       # highest sampling rate a request may ask for
MAX_VIDEO_PENDING = 2      # videos being analysed or waiting; past this 503
MAX_LIVE = 4               # live camera connections at once
LIVE_MAX_BYTES = 2 * 2**20  # one live frame
LIVE_MAX_PIXELS = 1920 * 1080

VIDEO_STATUS = {"not_video": 415, "corrupt": 400, "too_long": 413, "too_many_pixels": 400}


def add_video_routes(app, predictor, api_error, *, max_video_seconds: float = MAX_VIDEO_SECONDS,
                     max_video_fps: float = MAX_VIDEO_FPS, max_video_pending: int = MAX_VIDEO_PENDING,
                     max_live: int = MAX_LIVE) -> dict:
    """Add the routes to the FastAPI ``app`` serving ``predictor``; ``api_error`` is the server's JSON error
    (``serve.ApiError``). Returns (the limits, for ``/api/model``; a function that stops the threads)."""
    from fastapi import File, Query, UploadFile, WebSocket
    from fastapi.responses import JSONResponse
    from starlette.websockets import WebSocketDisconnect

    state = {"classifier": None, "videos": 0, "live": 0}
    # Videos take seconds each: one thread of their own, so that photos and live frames never wait on them.
    video_pool = ThreadPoolExecutor(1, thread_name_prefix="happysad-video")
    live_pool = ThreadPoolExecutor(2, thread_name_prefix="happysad-live")

    def classifier() -> video.FaceClassifier:
        if state["classifier"] is None:
            try:
                state["classifier"] = video.FaceClassifier(predictor)
            except HappysadError as e:
                raise api_error(400, "not_a_face_model", str(e).split(": ", 1)[-1]) from None
        return state["classifier"]

    def analyse(data: bytes, name: str, fps: float) -> dict:
        out = {"frames": [], "tracks": [], "clip": None}
        for r in video.analyze(predictor, data, fps, name=name, max_seconds=max_video_seconds,
                               classifier=classifier()):
            if r["kind"] == "clip":
                out["clip"] = r
            else:
                out["frames" if r["kind"] == "frame" else "tracks"].append(r)
        return out

    @app.post("/api/predict-video", summary="Faces in a short video: tracked, labelled, summarised",
              responses={s: {"description": c} for c, s in VIDEO_STATUS.items()} | {503: {"description": "busy"}})
    async def predict_video(file: UploadFile = File(..., description="one video file (mp4, webm, mov, ...)"),
                            fps: float = Query(video.FPS, gt=0, le=max_video_fps,
                                               description="frames sampled per second")):
        """``{"frames": [...], "tracks": [...], "clip": {...}}``: one result per sampled frame (faces with
        ``track``, ``box``, smoothed ``label`` and ``probabilities``), one summary per person (first and
        last seen, share of time per class) and one for the clip."""
        if state["videos"] >= max_video_pending:
            raise api_error(503, "busy", f"{state['videos']} videos are being analysed; retry shortly")
        state["videos"] += 1
        try:
            name = (file.filename or "video")[-200:]
            data = await file.read()
            classifier()  # before the pool: a whole-image model is refused at once
            loop = asyncio.get_running_loop()
            try:
                out = await loop.run_in_executor(video_pool, analyse, data, name, fps)
            except video.VideoError as e:
                raise api_error(VIDEO_STATUS.get(e.reason, 400), e.reason, f"{name}: {e.detail}", name) from None
        finally:
            state["videos"] -= 1
        return JSONResponse(out)

    def live_frame(stream: video.LiveStream, data: bytes) -> dict:
        t0 = time.perf_counter()
        img, _ = images.decode(data, "RGB", max_pixels=LIVE_MAX_PIXELS)
        res = stream.frame(img)
        res["server_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return res

    @app.websocket("/api/live")
    async def live(ws: WebSocket):
        await ws.accept()
        if state["live"] >= max_live:
            await ws.send_json(api_error(503, "busy", f"{max_live} live cameras are connected; retry later").body())
            await ws.close(code=1013)
            return
        try:
            clf = classifier()
        except api_error as e:
            await ws.send_json(e.body())
            await ws.close(code=1003)
            return
        state["live"] += 1
        stream = video.LiveStream(clf)
        loop = asyncio.get_running_loop()
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is None:
                    err = api_error(400, "bad_request", "send each camera frame as one binary message (JPEG or PNG)")
                elif len(data) > LIVE_MAX_BYTES:
                    err = api_error(413, "frame_too_large", f"a live frame is limited to {LIVE_MAX_BYTES // 2**20} MB")
                else:
                    try:
                        await ws.send_json(await loop.run_in_executor(live_pool, live_frame, stream, data))
                        continue
                    except images.ImageError as e:
                        err = api_error(400, e.reason, f"frame: {e.detail}")
                await ws.send_json(err.body())
        except WebSocketDisconnect:
            pass
        finally:
            state["live"] -= 1

    def close():
        for pool in (video_pool, live_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    return {"max_video_seconds": max_video_seconds, "max_video_fps": max_video_fps, "max_live": max_live}, close
