"""Robustness: accuracy as the input degrades (noise, blur, occlusion), the denoising autoencoder's test.

Perturbations act on the uint8 clips, before normalisation, with a fixed seed, identically for every
model evaluated, so curves of different variants are directly comparable. Levels:
- noise: Gaussian pixel noise, std = level x 255 (0.1 = a clearly grainy picture);
- blur: Gaussian blur, sigma = level x frame size (0.04 of 48 px = ~2 px);
- occlusion: a grey square covering `level` of the frame area at a random place per clip (same place
  in every frame of the clip, like a hand or a microphone).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_LEVELS = {
    "noise": [0.0, 0.05, 0.1, 0.2, 0.3],
    "blur": [0.0, 0.02, 0.04, 0.06, 0.08],
    "occlusion": [0.0, 0.1, 0.2, 0.3, 0.4],
}
SEED = 1234


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def perturb(x: torch.Tensor, kind: str, level: float, seed: int = SEED) -> torch.Tensor:
    """(N, T, S, S) uint8 clips -> perturbed uint8 clips (level 0 returns the input)."""
    if level <= 0:
        return x
    gen = torch.Generator().manual_seed(seed)
    n, t, h, w = x.shape
    f = x.float()
    if kind == "noise":
        f = f + torch.randn(f.shape, generator=gen) * level * 255
    elif kind == "blur":
        k = _gaussian_kernel(level * h)
        flat = f.reshape(n * t, 1, h, w)
        pad = len(k) // 2
        flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="replicate"), k.view(1, 1, -1, 1))
        f = flat.reshape(n, t, h, w)
    elif kind == "occlusion":
        side = max(1, round(math.sqrt(level) * h))
        ys = torch.randint(0, h - side + 1, (n,), generator=gen)
        xs = torch.randint(0, w - side + 1, (n,), generator=gen)
        f = f.clone()
        for i in range(n):
            f[i, :, ys[i] : ys[i] + side, xs[i] : xs[i] + side] = 128.0
    else:
        raise ValueError(f"unknown perturbation {kind!r}; use one of {', '.join(DEFAULT_LEVELS)}")
    return f.round().clamp(0, 255).to(torch.uint8)
