"""The real thing: `happysad serve` as a subprocess on a free local port, spoken to over HTTP, and the page
driven in Debian's headless Chromium (Selenium + chromium-driver; no browser download).

The browser test skips, saying why, when chromium, chromium-driver or selenium is missing; `.ci/run`
installs the first two and the `dev` extra the third.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")

SRC = Path(__file__).resolve().parents[1] / "src"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    """`python -m happysad serve` on 127.0.0.1:<free port>; yields its base URL."""
    _, res = trained_run
    yield from running_server(str(res.run_dir), tmp_path_factory.mktemp("serve") / "server.log")


def running_server(model: str, log_path: Path):
    """Start `happysad serve --model MODEL` on a free port, yield its URL once healthy, then stop it
    and check that its log has no traceback (a generator for fixtures)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "happysad", "serve", "--model", model,
                                 "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"server not healthy after 120 s:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text()


def test_real_server_over_http(server, trained_run):
    data, _ = trained_run
    img = data / "circle" / "circle_003.png"
    with httpx.Client(base_url=server, timeout=30) as c:
        assert c.get("health").json()["status"] == "ok"
        r = c.post("api/predict", files={"files": (img.name, img.read_bytes(), "image/png")})
        assert r.status_code == 200
        res = r.json()["results"][0]
        assert res["path"] == img.name and res["label"] in ("circle", "square") and res["box"] == [0, 0, 40, 40]
        # The size limit holds on a real socket too (11 MB > the default 10 MB).
        r = c.post("api/predict", files={"files": ("big.png", b"\0" * (11 * 2**20), "image/png")})
        assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"


def test_cli_port_in_use_is_one_line_error(trained_run):
    _, res = trained_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        p = subprocess.run([sys.executable, "-m", "happysad", "serve", "--model", str(res.run_dir),
                            "--port", str(port)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert f"happysad serve: error: could not listen on 127.0.0.1:{port}" in p.stderr
    assert "Traceback" not in p.stderr


def browser(*extra_flags: str):
    """A headless Debian Chromium via Selenium, or a skip that says what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run does this)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for f in CHROMIUM_FLAGS + list(extra_flags):
        opts.add_argument(f)
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


def upload_and_wait(drv, path: Path, n_before: int):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.find_element(By.ID, "file-input").send_keys(str(path))
    WebDriverWait(drv, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) > n_before)
    return drv.find_elements(By.CSS_SELECTOR, "#results .result")[0]  # newest first


def test_page_in_chromium(server, trained_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data, _ = trained_run
    img = data / "square" / "square_004.png"
    with httpx.Client(base_url=server, timeout=30) as c:
        want = c.post("api/predict", files={"files": (img.name, img.read_bytes(), "image/png")}).json()["results"][0]

    drv = browser()
    try:
        drv.set_window_size(1200, 900)
        drv.get(server)
        WebDriverWait(drv, 30).until(lambda d: "circle, square" in d.find_element(By.ID, "model-info").text)

        card = upload_and_wait(drv, img, 0)
        WebDriverWait(drv, 10).until(lambda d: card.find_element(By.CSS_SELECTOR, ".frame img")
                                     .get_property("naturalWidth") > 0)
        label = card.find_element(By.CSS_SELECTOR, "h3.label").text
        tag = card.find_element(By.CSS_SELECTOR, ".box .tag").text
        p = want["probabilities"][want["label"]]
        assert label == want["label"]
        assert tag == f"{want['label']} {100 * p:.1f}%"
        # The box frames the region the model saw (the whole image), on top of the image.
        box = card.find_element(By.CSS_SELECTOR, ".box").rect
        shown = card.find_element(By.CSS_SELECTOR, ".frame img").rect
        for k in ("x", "y", "width", "height"):
            assert abs(box[k] - shown[k]) <= 2, (k, box, shown)
        assert shown["width"] >= 150  # a 40 px image is shown enlarged, not as a speck
        bars = card.find_elements(By.CSS_SELECTOR, ".bars .cls")
        assert sorted(b.text for b in bars) == ["circle", "square"]
        assert "ms" in card.find_element(By.CSS_SELECTOR, ".timing").text
        drv.save_screenshot(str(tmp_path / "page-desktop.png"))

        # A file that is not an image gets the server's message, not a broken card.
        txt = tmp_path / "notes.jpg"
        txt.write_text("not a photo")
        err = upload_and_wait(drv, txt, 1)
        assert "error" in err.get_attribute("class") and "not an image" in err.text
        assert "error 415" in drv.find_element(By.ID, "status").text

        # Webcam snapshot (Chromium's fake camera): the frame is sent and labelled like a file.
        drv.find_element(By.ID, "camera-open").click()
        WebDriverWait(drv, 20).until(lambda d: d.execute_script("return document.getElementById('camera-video')"
                                                                ".videoWidth") > 0)
        drv.find_element(By.ID, "camera-snap").click()
        WebDriverWait(drv, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .result")) > 2)
        snap = drv.find_elements(By.CSS_SELECTOR, "#results .result")[0]
        assert "webcam-" in snap.text and snap.find_element(By.CSS_SELECTOR, ".box .tag").text
        drv.find_element(By.ID, "camera-close").click()

        # Ready for face detection: a result with a `faces` list gets one labelled box per face.
        drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const c = document.createElement('canvas'); c.width = 200; c.height = 100;
            c.getContext('2d').fillRect(0, 0, 200, 100);
            c.toBlob((b) => {
              showResult({path: 'two.png', label: 'circle', probabilities: {circle: .7, square: .3}, ms: 1,
                          width: 200, height: 100, box: [0, 0, 200, 100],
                          faces: [{box: [20, 30, 40, 50], label: 'circle', probabilities: {circle: .9, square: .1}},
                                  {box: [120, 10, 60, 60], label: 'square', probabilities: {circle: .2, square: .8}}]},
                         new File([b], 'two.png', {type: 'image/png'}), {batch: 1, total_ms: 2}, 3);
              done();
            });""")
        faces = drv.find_elements(By.CSS_SELECTOR, "#results .result")[0]
        WebDriverWait(drv, 10).until(lambda d: faces.find_element(By.CSS_SELECTOR, ".frame img")
                                     .get_property("naturalWidth") > 0)
        tags = [t.text for t in faces.find_elements(By.CSS_SELECTOR, ".box .tag")]
        assert tags == ["circle 90.0%", "square 80.0%"] and "2 faces" in faces.text
        assert [t.text for t in faces.find_elements(By.CSS_SELECTOR, ".bars .sub")] == ["face 1", "face 2"]
        shown = faces.find_element(By.CSS_SELECTOR, ".frame img").rect
        first = faces.find_elements(By.CSS_SELECTOR, ".box")[0].rect
        scale = shown["width"] / 200
        assert abs(first["x"] - shown["x"] - 20 * scale) <= 2 and abs(first["width"] - 40 * scale) <= 2

        # Phone width: the result card stacks and nothing scrolls sideways.
        drv.set_window_size(390, 844)
        time.sleep(0.3)
        assert drv.execute_script("return document.documentElement.scrollWidth") <= \
            drv.execute_script("return window.innerWidth")
        drv.save_screenshot(str(tmp_path / "page-phone.png"))
        assert (tmp_path / "page-desktop.png").stat().st_size > 5000
        # The API docs render from the server's own copy of Swagger UI.
        drv.set_window_size(1200, 900)
        drv.get(server + "docs")
        WebDriverWait(drv, 30).until(lambda d: "/api/predict" in d.find_element(By.TAG_NAME, "body").text)
        drv.save_screenshot(str(tmp_path / "docs.png"))
        logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert [e for e in logs if "notes.jpg" not in e["message"] and "415" not in e["message"]] == []
    finally:
        drv.quit()
