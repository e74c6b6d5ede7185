"""Peak memory of `prepare` on one long 640x480 clip (2 and 10 minutes): bounded, whatever the length.

Run: `.venv/bin/python bench/prepare_memory.py [--minutes 2 10] [--fps 30]`
Each clip is written to a temporary folder (MPEG-4, a face-like ellipse moving over a gradient) and
prepared in a fresh process, whose peak resident memory (ru_maxrss) is printed, beside the same for a
2-second clip (the floor: Python, NumPy, OpenCV, PyAV) and for decoding the 2-minute clip whole, as
prepare did before it kept only the frames it samples.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, seconds: float, fps: int, width: int = 640, height: int = 480) -> Path:
    """A synthetic clip streamed to disk frame by frame (never held in memory)."""
    y, x = np.mgrid[0:height, 0:width]
    background = (40 + 80 * x / width + 40 * y / height).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(int(seconds * fps)):
            cx, cy = width / 2 + 60 * np.sin(i / 40), height / 2 + 30 * np.cos(i / 55)
            face = ((x - cx) / 90) ** 2 + ((y - cy) / 120) ** 2 < 1
            gray = np.where(face, 170 + (i % 30), background).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, axis=2), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _prepare(root: str, cache: str) -> tuple[float, float, int]:
    from vemo.config import PrepareConfig
    from vemo.data.loading.prepare import prepare

    start = time.perf_counter()
    cfg = PrepareConfig(dataset="folder", root=root, cache_dir=cache, workers=1)
    prepared = prepare(cfg, progress=False, log=lambda *_: None)
    return _peak_mb(), time.perf_counter() - start, prepared.items[0]["n_frames"]


def _decode_whole(path: str) -> tuple[float, float, int]:
    from vemo.data.sources.video import decode_gray

    start = time.perf_counter()
    frames = decode_gray(path)
    return _peak_mb(), time.perf_counter() - start, len(frames)


def in_fresh_process(fn, *args) -> tuple[float, float, int]:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 10])
    p.add_argument("--fps", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for minutes in [2 / 60, *args.minutes]:
            root = Path(tmp) / f"{minutes:g}min"
            (root / "happy").mkdir(parents=True)
            clip = write_clip(root / "happy" / "clip.mp4", minutes * 60, args.fps)
            peak, seconds, n = in_fresh_process(_prepare, str(root), str(Path(tmp) / "cache"))
            rows.append((f"prepare, {minutes * 60:g} s clip ({n} frames of 640x480)", peak, seconds))
            if minutes == 2:
                peak, seconds, n = in_fresh_process(_decode_whole, str(clip))
                rows.append((f"decode all {n} frames of the 2-minute clip (what prepare did before)", peak, seconds))
    for what, peak, seconds in rows:
        print(f"{what:<72} peak RSS {peak:7.0f} MB  {seconds:6.1f} s")


if __name__ == "__main__":
    main()
