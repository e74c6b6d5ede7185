"""`vemo serve` under load, on loopback only: upload latency and the server's memory across requests.

Run: `.venv/bin/python bench/serve.py [--checkpoint default] [--clip FILE] [--sequential 50] [--concurrent 4]`

Starts `vemo serve` (uvicorn) in a subprocess on 127.0.0.1, then
1. `--sequential` uploads of one ~2-s clip, one after another (POST /api/predict, no annotated video);
2. `--concurrent` clients uploading at once, `--rounds` times each (the server runs one analysis at a
   time; the others wait in its bounded queue, so their latency includes the wait);
and prints p50/p95 latency, the statuses and the server's resident memory (VmRSS) after start-up,
after the first request, after the sequential and after the concurrent part: memory that grew with
every request would show as a climb between the last three.
The clip is the first real CREMA-D clip in ../shared when present, else a synthetic 2-s face video.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CREMA = REPO.parent / "shared" / "data" / "crema-d-sample" / "VideoFlash"


def a_clip(folder: Path) -> Path:
    real = sorted(CREMA.glob("*.flv"))
    if real:
        return real[0]
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_video
    from vemo.config import Config
    from vemo.data.synth.render import render_clip

    return write_video(folder / "face.mp4", list(render_clip(Config().synth, 1001, "IEO", "HAP", "HI")), fps=15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def upload(url: str, data: bytes) -> tuple[int, float]:
    """POST data as the multipart field `file`; (HTTP status, seconds)."""
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip"\r\n\r\n'.encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    return status, time.perf_counter() - start


def start_server(checkpoint: str, port: int, queue: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vemo.cli", "serve", "--checkpoint", checkpoint, "--port", str(port)]
    server = subprocess.Popen([*cmd, "--queue", str(queue)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"vemo serve exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                json.load(r)
                return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    server.kill()
    raise SystemExit("vemo serve did not answer within 120 s")


def summary(name: str, results: list[tuple[int, float]], wall: float) -> None:
    seconds = np.array([t for _, t in results])
    statuses = {s: sum(1 for code, _ in results if code == s) for s in sorted({code for code, _ in results})}
    p50, p95 = np.percentile(seconds, [50, 95])
    print(
        f"{name}: {len(results)} uploads in {wall:.1f} s ({len(results) / wall:.2f}/s); latency p50 {p50:.2f} s, "
        f"p95 {p95:.2f} s, max {seconds.max():.2f} s; statuses {statuses}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--clip", type=Path, help="the video to upload (default: a CREMA-D sample clip or a synthetic one)")
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5, help="uploads per concurrent client")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or a_clip(Path(tmp))
        data = clip.read_bytes()
        port = free_port()
        server = start_server(args.checkpoint, port, queue=max(4, args.concurrent))
        url = f"http://127.0.0.1:{port}/api/predict"
        try:
            print(f"clip {clip.name} ({len(data) / 1e3:.0f} kB); server pid {server.pid} on 127.0.0.1:{port}")
            memory = {"after start-up": rss_mb(server.pid)}
            upload(url, data)
            memory["after 1 request"] = rss_mb(server.pid)
            start = time.perf_counter()
            sequential = [upload(url, data) for _ in range(args.sequential)]
            summary("sequential", sequential, time.perf_counter() - start)
            memory[f"after {args.sequential} sequential"] = rss_mb(server.pid)
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrent) as pool:
                concurrent = list(pool.map(lambda _: upload(url, data), range(args.concurrent * args.rounds)))
            summary(f"{args.concurrent} concurrent", concurrent, time.perf_counter() - start)
            memory[f"after {len(concurrent)} concurrent"] = rss_mb(server.pid)
            print("server RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in memory.items()))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
