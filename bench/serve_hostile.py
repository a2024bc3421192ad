"""Hostile clients against `happysad serve` (127.0.0.1 only): many idle connections, many uploads held
open just before their last byte. Prints how long the idle ones stay open and how much memory the held
bodies add, with the server's default limits (serve.HEADER_TIMEOUT_S, serve.MAX_INFLIGHT_MB, ...).

    python bench/serve_hostile.py [--idle 400] [--held 40] [--held-mb 9]

The server runs in this process (a thread), with an 8x8 model: memory is this process's resident size."""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tiny_model(root: Path) -> Path:
    import keras

    from happysad import bundle

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    bundle.save_keras(model, root / "model.keras")
    bundle.write_json(root / "meta.json", bundle.make_meta(classes=["happy", "sad"], img_size=(8, 8),
                                                           color_mode="grayscale", arch="tiny"))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=400, help="idle connections to open")
    ap.add_argument("--held", type=int, default=40, help="uploads held open before their last byte")
    ap.add_argument("--held-mb", type=float, default=9.0, help="size of each held upload")
    args = ap.parse_args()

    import uvicorn

    from happysad import serve

    with tempfile.TemporaryDirectory() as tmp:
        app = serve.create_app(str(tiny_model(Path(tmp))), warm_up=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(serve.uvicorn_config(app, "127.0.0.1", port))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)

        # 1. idle connections: how long until the server has closed them all
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
        t0 = time.monotonic()
        for c in conns:
            c.settimeout(120)
            c.recv(1)  # b"" once the server closes it
        print(f"{args.idle} idle connections: all closed by the server after {time.monotonic() - t0:.1f} s "
              f"(HEADER_TIMEOUT_S {serve.HEADER_TIMEOUT_S:g})")
        for c in conns:
            c.close()

        # 2. uploads held open just before their last byte
        size = int(args.held_mb * 2**20)
        before = rss_mb()
        head = (f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                f"Content-Length: {size}\r\n\r\n").encode()
        conns = []
        for _ in range(args.held):
            c = socket.create_connection(("127.0.0.1", port))
            try:
                c.sendall(head + b"\0" * (size - 1))
            except OSError:  # the server answered and closed while we were still sending
                pass
            conns.append(c)
        held, refused = [], 0
        for c in conns:  # still open and unanswered = held by the server
            c.settimeout(0.2)
            try:
                answer = c.recv(64)
            except socket.timeout:
                held.append(c)
                continue
            except OSError:
                answer = b""
            refused += answer.startswith(b"HTTP/1.1 503") or answer == b""
            c.close()
        time.sleep(1)
        print(f"{args.held} uploads of {args.held_mb:g} MB held open: {len(held)} held, {refused} refused (503); "
              f"server holds {app.inflight / 2**20:.0f} MB of bodies (cap {serve.MAX_INFLIGHT_MB:g} MB); "
              f"resident memory +{rss_mb() - before:.0f} MB")
        for c in held:
            c.close()
        server.should_exit = True


if __name__ == "__main__":
    main()
