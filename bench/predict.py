"""Inference speed: the model alone (PyTorch and ONNX Runtime) and the whole `vemo predict` pipeline.

Run: `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python bench/predict.py`
     [--checkpoint default] [--videos ../shared/data/crema-d-sample/VideoFlash] [--long-minutes 10]

1. model only: frames/s on 48x48 clips of T frames, batches of 32 clips, `--threads` threads (PyTorch
   as `vemo predict` runs it, the same without conv+BN folding, ONNX Runtime);
2. pipeline: frames/s of real video through decode + face detection + model (`predict_frames`),
   the sample clips repeated `--repeat` times;
3. memory: peak RSS growth while predicting a `--long-minutes` video made by looping the sample clips.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vemo.checkpoint import load_checkpoint
from vemo.models.registry import to_channels_last
from vemo.predict.run import Predictor, predict_frames
from vemo.predict.stream import video_frames


def _calls_per_s(fn, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def model_speed(
    predictor: Predictor, checkpoint: str, onnx_path: Path | None, batch: int, seconds: float
) -> dict[str, float]:
    """Frames/s of the model as `vemo predict` runs it, of the same without conv+BN folding (what
    folding buys, measured minutes apart on the same machine), and through ONNX Runtime."""
    t, s = predictor.frames, predictor.size
    x = torch.randn(batch, t, s, s)
    unfolded = to_channels_last(load_checkpoint(checkpoint).build_model())
    out = {}
    with torch.inference_mode():
        out["pytorch"] = _calls_per_s(lambda: predictor.model(x), seconds) * batch * t
        out["pytorch, batch norm not folded"] = _calls_per_s(lambda: unfolded(x), seconds) * batch * t
    if onnx_path is not None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        out["onnxruntime"] = _calls_per_s(lambda: sess.run(None, {"clips": xn}), seconds) * batch * t
    return out


def pipeline_speed(predictor: Predictor, videos: list[Path], repeat: int) -> tuple[float, int]:
    counted = []
    start = time.perf_counter()
    for _ in range(repeat):
        for v in videos:
            predict_frames(video_frames(v), predictor, on_frame=lambda f, c: counted.append(1))
    return len(counted) / (time.perf_counter() - start), len(counted)


def long_video(videos: list[Path], minutes: float, path: Path) -> Path:
    """Loop the sample clips (gray, as decoded) into one `minutes`-long 30 fps video."""
    import av

    clips = [[f.gray for f in video_frames(v)] for v in videos]
    n = int(minutes * 60 * 30)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.height, stream.width = clips[0][0].shape
        stream.pix_fmt = "yuv420p"
        k = 0
        while k < n:
            for clip in clips:
                for g in clip:
                    if k >= n:
                        break
                    frame = av.VideoFrame.from_ndarray(np.repeat(g[..., None], 3, 2), format="rgb24")
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    k += 1
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--videos", default="../shared/data/crema-d-sample/VideoFlash")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--long-minutes", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor(args.checkpoint)
    print(
        f"machine: {os.cpu_count()} cores, torch {torch.__version__}, threads {args.threads}, "
        f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}"
    )
    print(f"model: {args.checkpoint}, T={predictor.frames}, {predictor.size}x{predictor.size}")
    with tempfile.TemporaryDirectory() as tmp:
        from vemo.export import export_onnx

        onnx_path = export_onnx(args.checkpoint, Path(tmp) / "m.onnx")
        for engine, fps in model_speed(predictor, args.checkpoint, onnx_path, 32, args.seconds).items():
            print(f"model only ({engine}): {fps:,.0f} frames/s")
        videos = sorted(p for p in Path(args.videos).iterdir() if p.suffix in (".flv", ".mp4"))
        if not videos:
            print(f"no videos in {args.videos}: pipeline figures skipped")
            return
        fps, n = pipeline_speed(predictor, videos, args.repeat)
        h, w = next(video_frames(videos[0])).gray.shape
        print(f"predict pipeline on {len(videos)} real {w}x{h} clips x{args.repeat} ({n} frames): {fps:,.0f} frames/s")
        if args.long_minutes > 0:
            path = long_video(videos, args.long_minutes, Path(tmp) / "long.mp4")
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            start = time.perf_counter()
            rows = predict_frames(video_frames(path), predictor)
            secs = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{args.long_minutes:g}-minute video: {len(rows)} windows in {secs:.0f} s; "
                f"peak RSS {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB)"
            )


if __name__ == "__main__":
    main()
