"""Training and inference throughput of each model variant on random 48x48 clips (frames/s).

Run: `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python bench/train_speed.py`
Prints one line per variant; numbers depend on the machine, threads and allocator, all printed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from vemo.config import ModelConfig
from vemo.models.registry import MODELS, build_model, count_parameters


def bench(name: str, width: int, batch: int, frames: int, steps: int) -> tuple[float, float]:
    model = build_model(name, 6, 48, width=width).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(batch, frames, 48, 48), torch.randint(0, 6, (batch,))
    model.train()
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        out = model(x)
        loss = F.cross_entropy(out.logits, y)
        if model.has_autoencoder:
            codes = out.codes[:, :4].reshape(-1, out.codes.shape[-1])
            loss = loss + F.mse_loss(model.reconstruct(codes).squeeze(1), x[:, :4].reshape(-1, 48, 48))
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_fps = steps * batch * frames / (time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
    infer_fps = steps * batch * frames / (time.perf_counter() - start)
    return train_fps, infer_fps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=ModelConfig().width)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '-'}")
    print(f"batch {args.batch} clips x {args.frames} frames of 48x48, encoder width {args.width}")
    for name in sorted(MODELS):
        n = count_parameters(build_model(name, 6, 48, width=args.width))
        train_fps, infer_fps = bench(name, args.width, args.batch, args.frames, args.steps)
        print(
            f"{name:<18} {n / 1e6:5.2f}M params  train {train_fps:7.0f} frames/s  inference {infer_fps:7.0f} frames/s"
        )


if __name__ == "__main__":
    main()
