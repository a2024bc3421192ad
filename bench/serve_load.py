"""Load test for ``happysad serve``, against this machine only (127.0.0.1 / ::1).

    python bench/serve_load.py                     # trains a tiny 48x48 model first (about 15 s)
    python bench/serve_load.py --model runs/train/exp --requests 2000 --concurrency 16

Starts the server as a subprocess on a free loopback port, sends ``--requests`` POST /api/predict
requests (one image each) from ``--concurrency`` keep-alive connections for each test image (a 48x48 face
PNG and a 640x480 JPEG photo), and prints throughput, p50/p95/p99/max latency and the error count.
The load is bounded: a fixed number of requests and a wall-clock limit, then the server is stopped.

The client is a few lines of asyncio that send one pre-built request over and over: it shares the CPU
with the server, and a full HTTP library would spend more of it than the server does per request.
A response counts as an error unless it is HTTP 200 with one result in its JSON body.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TIME_LIMIT_S = 600  # the whole load phase of one image stops by itself after this


def free_port(host: str) -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_loopback(host: str) -> str:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise SystemExit(f"serve_load: {host} is not a loopback address; this test only loads this machine")
    return "127.0.0.1" if host == "localhost" else host


def tiny_model(workdir: Path) -> Path:
    """A 2-class 48x48 model trained for 2 epochs on generated faces: enough to serve, not to be right."""
    from happysad import demo, train

    data = demo.make_dataset(workdir / "data", n_per_class=100, seed=0, size=48)
    res = train.train(data, arch="default", img_size=48, epochs=2, batch_size=32,
                      project=str(workdir / "runs"), name="tiny", verbose=False)
    return res.run_dir


def test_images() -> dict[str, tuple[str, bytes, str]]:
    """name -> (file name, bytes, content type): a 48x48 face and a 640x480 photo with a face in it."""
    from PIL import Image

    from happysad import demo

    rng = np.random.default_rng(1)
    face = demo.draw_face(rng, True, 48)
    buf = io.BytesIO()
    face.save(buf, "PNG")
    out = {"face 48x48 PNG": ("face48.png", buf.getvalue(), "image/png")}
    yy, xx = np.mgrid[0:480, 0:640]
    bg = np.stack([xx * 255 / 640, yy * 255 / 480, np.full_like(xx, 120)], -1)
    bg = np.clip(bg + rng.normal(0, 12, bg.shape), 0, 255).astype(np.uint8)
    photo = Image.fromarray(bg)
    photo.paste(demo.draw_face(rng, True, 200), (220, 120))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    out["photo 640x480 JPEG"] = ("photo640.jpg", buf.getvalue(), "image/jpeg")
    return out


def build_request(host: str, port: int, filename: str, data: bytes, ctype: str) -> bytes:
    boundary = "happysadbench7b1c"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
            f"boundary={boundary}\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    return status, await reader.readexactly(length)


async def worker(host, port, request, todo: list, latencies: list, errors: list, deadline: float, batches: list):
    reader = writer = None
    while todo and time.perf_counter() < deadline:
        todo.pop()
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            status, body = await read_response(reader)
            answer = json.loads(body) if status == 200 else {}
            ok = status == 200 and len(answer["results"]) == 1
            if ok:
                batches.append((answer["timing"]["batch"], answer["timing"]["model_ms"]))
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
            ok, status = False, type(e).__name__
            if writer is not None:
                writer.close()
            reader = writer = None
        latencies.append(time.perf_counter() - t0)
        if not ok:
            errors.append(status)
    if writer is not None:
        writer.close()


async def load(host, port, request, n, concurrency, time_limit=TIME_LIMIT_S) -> dict:
    todo, latencies, errors, batches = list(range(n)), [], [], []
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(host, port, request, todo, latencies, errors, t0 + time_limit, batches)
                           for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "concurrency": concurrency, "seconds": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1), "errors": len(errors),
            "error_kinds": sorted({str(e) for e in errors}), "unfinished": n - len(latencies),
            # as the requests saw it: the size of the model call each rode in, and that call's time
            "mean_batch": round(float(np.mean([b for b, _ in batches])), 1) if batches else 0,
            "mean_model_ms": round(float(np.mean([m for _, m in batches])), 1) if batches else 0}


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc.poll() is not None:
            raise SystemExit(f"serve_load: the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("serve_load: the server did not become healthy in time")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="run folder or .keras file (default: train a tiny 48x48 model first)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per test image (default 2000)")
    ap.add_argument("--concurrency", type=int, default=16, help="connections in parallel (default 16)")
    ap.add_argument("--warmup", type=int, default=100, help="requests sent first and not counted")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to serve on (127.0.0.1 or ::1)")
    ap.add_argument("--only", choices=["face", "photo"], help="run one of the two images only")
    ap.add_argument("--json", action="store_true", help="print one JSON object per image at the end")
    args = ap.parse_args(argv)
    host = check_loopback(args.host)
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 256):
        raise SystemExit("serve_load: --requests must be 1..100000 and --concurrency 1..256")

    with tempfile.TemporaryDirectory(prefix="happysad-serve-load-") as tmp:
        model = args.model
        if model is None:
            t = time.perf_counter()
            print("training a tiny 48x48 model on generated faces...", file=sys.stderr, flush=True)
            model = str(tiny_model(Path(tmp)))
            print(f"  done in {time.perf_counter() - t:.0f} s: {model}", file=sys.stderr)
        port = free_port(host)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "happysad", "serve", "--model", model, "--host", host, "--port", str(port)]
        log = open(Path(tmp) / "server.log", "w+")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        try:
            try:
                wait_healthy(url, proc)
            except SystemExit:
                log.seek(0)
                print(log.read()[-3000:], file=sys.stderr)
                raise
            results = {}
            for name, (fn, data, ctype) in test_images().items():
                if args.only and not name.startswith(args.only):
                    continue
                req = build_request(host, port, fn, data, ctype)
                asyncio.run(load(host, port, req, args.warmup, args.concurrency))
                r = asyncio.run(load(host, port, req, args.requests, args.concurrency))
                results[name] = r
                print(f"{name:<20} {r['requests']} requests at {r['concurrency']} concurrent: "
                      f"{r['throughput_rps']} req/s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
                      f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms, errors {r['errors']} "
                      f"(mean batch {r['mean_batch']}, model call {r['mean_model_ms']} ms)"
                      + (f" {r['error_kinds']}" if r["errors"] else ""), flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    print(f"(server: {' '.join(cmd[1:3])} serve --model MODEL on {host}; client: this process, "
          f"{os.cpu_count()} CPUs shared)")
    if args.json:
        for name, r in results.items():
            print(json.dumps({"image": name, **r}))
    return 1 if any(r["errors"] or r["unfinished"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
