"""Clip-level augmentation on batches of normalised frames (B, T, S, S).

One random transform per clip, identical for all its frames, so augmentation never invents motion
that the temporal model could mistake for expression dynamics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_clips(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    max_shift: float = 0.05,
    max_rotate_deg: float = 6.0,
    max_scale: float = 0.06,
    max_gain: float = 0.15,
) -> torch.Tensor:
    """Random flip, shift, rotation, zoom and brightness/contrast per clip."""
    b, t, h, w = x.shape

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    angle = u(-max_rotate_deg, max_rotate_deg) * math.pi / 180
    scale = 1.0 + u(-max_scale, max_scale)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * flip, -sin, u(-max_shift, max_shift) * 2
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * flip, cos, u(-max_shift, max_shift) * 2
    theta = theta.repeat_interleave(t, dim=0)
    frames = x.reshape(b * t, 1, h, w)
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    out = F.grid_sample(frames, grid, padding_mode="border", align_corners=False).reshape(b, t, h, w)
    gain = (1.0 + u(-max_gain, max_gain)).view(b, 1, 1, 1)
    bias = u(-max_gain, max_gain).view(b, 1, 1, 1)
    return out * gain + bias
