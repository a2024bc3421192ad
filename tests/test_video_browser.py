"""The page's Live mode in a real headless Chromium whose fake camera plays a clip of real faces
(scikit-image's astronaut, demo.face_clip) from a .y4m file: the server (`happysad serve --model
fer-happy-sad`, a subprocess) tracks and labels the faces, the page draws labelled boxes over the video.

Skips, saying why, without chromium/chromium-driver/selenium (see test_serve_browser.py) or scikit-image.
"""

import re

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the camera clip is made from scikit-image's astronaut photo")

from test_serve_browser import browser, running_server  # noqa: E402

from happysad import demo  # noqa: E402


def write_y4m(frames, path, fps: int = 10):
    """Frames as an uncompressed YUV 4:2:0 stream (the format Chromium's fake camera reads)."""
    w, h = frames[0].size
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames:
            y, cb, cr = img.convert("YCbCr").split()
            fh.write(b"FRAME\n" + np.asarray(y).tobytes())
            for plane in (cb, cr):
                fh.write(np.asarray(plane.resize((w // 2, h // 2))).tobytes())
    return path


@pytest.fixture(scope="module")
def face_server(tmp_path_factory):
    yield from running_server("fer-happy-sad", tmp_path_factory.mktemp("serve-live") / "server.log")


def test_live_camera_draws_labelled_boxes(face_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    frames, _ = demo.face_clip((320, 240), 40)  # faces in the first two thirds, then none; the camera loops
    cam = write_y4m(frames, tmp_path / "camera.y4m")
    drv = browser(f"--use-file-for-fake-video-capture={cam}")
    try:
        drv.set_window_size(1200, 900)
        drv.get(face_server)
        WebDriverWait(drv, 30).until(lambda d: "happy, sad" in d.find_element(By.ID, "model-info").text)
        # Count frames in flight: the page may never send a frame before the previous answer came back.
        drv.execute_script("""
            window.inFlight = 0; window.maxInFlight = 0; window.answers = 0;
            const send = WebSocket.prototype.send;
            WebSocket.prototype.send = function (d) {
              window.inFlight++; window.maxInFlight = Math.max(window.maxInFlight, window.inFlight);
              return send.call(this, d);
            };
            const answer = window.onLiveAnswer;
            window.onLiveAnswer = function (d) { window.inFlight--; window.answers++; return answer(d); };""")
        toggle = drv.find_element(By.ID, "live-toggle")
        toggle.click()
        tag_re = re.compile(r"^#\d+ (happy|sad) \d+\.\d%$")

        def labelled_box(d):
            tags = [t.text for t in d.find_elements(By.CSS_SELECTOR, "#live .box .tag")]
            return tags if tags and all(tag_re.match(t) for t in tags) else False

        tags = WebDriverWait(drv, 60).until(labelled_box)
        assert toggle.get_attribute("aria-checked") == "true"
        # the box lies over the live video
        video = drv.find_element(By.ID, "live-video").rect
        box = drv.find_element(By.CSS_SELECTOR, "#live .box").rect
        assert video["width"] > 200
        assert video["x"] - 2 <= box["x"] and box["x"] + box["width"] <= video["x"] + video["width"] + 2
        assert video["y"] - 2 <= box["y"] and box["y"] + box["height"] <= video["y"] + video["height"] + 2
        WebDriverWait(drv, 30).until(lambda d: d.execute_script("return window.answers") >= 5)
        stats = drv.find_element(By.ID, "live-stats").text
        assert re.search(r"[\d.]+ frames/s · latency \d+ ms \(server [\d.]+ ms\)", stats), stats
        assert drv.execute_script("return window.maxInFlight") == 1
        drv.save_screenshot(str(tmp_path / "live.png"))

        # A hidden tab stops Live: camera off, boxes gone, switch off.
        drv.execute_script("""Object.defineProperty(document, 'hidden', {value: true, configurable: true});
                              document.dispatchEvent(new Event('visibilitychange'));""")
        assert toggle.get_attribute("aria-checked") == "false"
        assert not drv.find_element(By.ID, "live").is_displayed()
        assert drv.execute_script("return document.getElementById('live-video').srcObject") is None
        logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert logs == []
        assert tags
    finally:
        drv.quit()
