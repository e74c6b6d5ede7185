"""Clip-level augmentation on batches of normalised frames (B, T, S, S).

One random transform per clip, identical for all its frames, so augmentation never invents motion
that the temporal model could mistake for expression dynamics. The random numbers come from a CPU
generator and the pixel work runs where the batch is: a GPU is not held up by CPU-side image warping,
and a run draws the same transforms from its seed on either device (the arithmetic on a GPU is not
bit-identical to the CPU's, so only the CPU's runs repeat exactly).
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
    shift_x = u(-max_shift, max_shift) * 2
    shift_y = u(-max_shift, max_shift) * 2
    out = warp_clips(x, angle, scale, shift_x, shift_y, flip)
    gain = (1.0 + u(-max_gain, max_gain)).view(b, 1, 1, 1).to(x.device)
    bias = u(-max_gain, max_gain).view(b, 1, 1, 1).to(x.device)
    return out * gain + bias


def warp_clips(
    x: torch.Tensor,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shift_x: torch.Tensor,
    shift_y: torch.Tensor,
    flip: torch.Tensor,
) -> torch.Tensor:
    """Float clips (B, T, S, S) under one affine transform per clip, the same for all its frames: each
    argument is (B,); `angle` in radians, `scale` > 1 zooms in, shifts in normalised units (2 = the
    frame's side; positive samples from the right/below, so the content moves left/up), `flip` -1
    mirrors. Borders repeat the edge pixels (no black corners for the model to learn)."""
    b, t, h, w = x.shape
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * flip, -sin, shift_x
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * flip, cos, shift_y
    theta = theta.repeat_interleave(t, dim=0).to(x.device)
    frames = x.reshape(b * t, 1, h, w)
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    return F.grid_sample(frames, grid, padding_mode="border", align_corners=False).reshape(b, t, h, w)


def random_erase(
    x: torch.Tensor, prob: float, generator: torch.Generator | None = None, area: tuple[float, float] = (0.02, 0.25)
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020) per clip: with probability `prob`, one rectangle of 2-25% of the
    frame, aspect 1/3-3, is set to 0 (the data mean after normalisation) in every frame of the clip.

    Why: it hides part of the face (a hand, glasses, a crop edge), so the classifier cannot rely on any
    single region; on FER2013 it is one of the few augmentations that consistently helps."""
    b, t, h, w = x.shape
    if prob <= 0:
        return x
    rand = torch.rand(b, 5, generator=generator)
    frac = area[0] + (area[1] - area[0]) * rand[:, 0]
    aspect = torch.exp((rand[:, 1] * 2 - 1) * math.log(3.0))
    eh = (torch.sqrt(frac * aspect) * h).clamp(1, h).round()
    ew = (torch.sqrt(frac / aspect) * w).clamp(1, w).round()
    top = (rand[:, 2] * (h - eh + 1)).floor()
    left = (rand[:, 3] * (w - ew + 1)).floor()
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
    inside = inside & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1))
    inside = inside & (rand[:, 4] < prob).view(b, 1, 1)
    return x.masked_fill(inside.unsqueeze(1).to(x.device), 0.0)
