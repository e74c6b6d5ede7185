"""Stills -> short sequences: the documented, deterministic protocol for image datasets (FER2013).

A sequence model needs T frames; a photo has one. Repeating the photo T times would give the LSTM
nothing to look at, so each still becomes a *simulated head-and-camera motion*: a smooth trajectory
from one random pose to another, sampled at T time points. A pose is

    shift x, y   uniform in +-`max_shift` of the image side
    rotation     uniform in +-`max_rotate` degrees
    zoom         uniform in 1 +- `max_zoom`
    brightness   gain uniform in 1 +- `max_gain`

and frame t uses the pose interpolated at s = smoothstep(t / (T - 1)) (ease in, ease out, like a real
head turn). Borders are filled by edge replication, the result is rounded back to uint8.

For evaluation each still's trajectory is seeded by `EVAL_SEED` and a checksum (CRC-32) of its
pixels, so an image gets the same sequence on every run, in any split, subset, order or batch size.
Training draws fresh trajectories every epoch: the protocol doubles as augmentation. Training may also
give a sequence a neutral onset (`with_onsets`), as posed and acted expressions start from neutral. Numbers on these
sequences are *not* strictly comparable to FER2013 image benchmarks (the model sees T jittered views
of the one test image, a form of test-time augmentation); README says so next to every FER2013 figure.
"""

from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F

EVAL_SEED = 20130  # fixed seed of the evaluation trajectories (part of the protocol; do not tune)
MAX_SHIFT = 0.04
MAX_ROTATE = 8.0
MAX_ZOOM = 0.05
MAX_GAIN = 0.10


def poses(stills: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(n, 2, 5) start and end poses in [-1, 1]: fresh from `generator`, or fixed per image (evaluation)."""
    if generator is not None:
        return torch.rand(len(stills), 2, 5, generator=generator) * 2 - 1
    flat = stills.reshape(len(stills), -1).numpy()
    seeds = [EVAL_SEED + zlib.crc32(row.tobytes()) for row in flat]
    return torch.stack([torch.rand(2, 5, generator=torch.Generator().manual_seed(s)) for s in seeds]) * 2 - 1


def trajectories(u: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine matrices (n, t, 2, 3) and brightness gains (n, t) from (n, 2, 5) start and end poses."""
    s = torch.linspace(0, 1, t) if t > 1 else torch.zeros(1)
    s = (s * s * (3 - 2 * s)).view(1, t, 1)  # smoothstep
    pose = u[:, 0].unsqueeze(1) * (1 - s) + u[:, 1].unsqueeze(1) * s  # (n, t, 5)
    dx, dy = pose[..., 0] * MAX_SHIFT * 2, pose[..., 1] * MAX_SHIFT * 2  # affine_grid units span 2
    angle = pose[..., 2] * MAX_ROTATE * math.pi / 180
    zoom = 1 + pose[..., 3] * MAX_ZOOM
    gain = 1 + pose[..., 4] * MAX_GAIN
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, dx], -1), torch.stack([sin, cos, dy], -1)], -2)
    return theta, gain


def render(stills: torch.Tensor, theta: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """(n, 1, S, S) uint8 stills + trajectories -> (n, t, S, S) uint8 sequences."""
    n, _, h, w = stills.shape
    t = theta.shape[1]
    src = stills.float().expand(n, t, h, w).reshape(n * t, 1, h, w)
    grid = F.affine_grid(theta.reshape(n * t, 2, 3), [n * t, 1, h, w], align_corners=False)
    out = F.grid_sample(src, grid, padding_mode="border", align_corners=False).view(n, t, h, w)
    return (out * gain.view(n, t, 1, 1)).round().clamp(0, 255).to(torch.uint8)


def to_sequences(
    stills: torch.Tensor, t: int, generator: torch.Generator | None = None, chunk: int = 1024
) -> torch.Tensor:
    """Sequences of T frames for (n, 1, S, S) uint8 stills. No generator: the fixed evaluation protocol."""
    theta, gain = trajectories(poses(stills, generator), t)
    parts = [
        render(stills[i : i + chunk], theta[i : i + chunk], gain[i : i + chunk]) for i in range(0, len(stills), chunk)
    ]
    return torch.cat(parts) if parts else torch.empty(0, t, *stills.shape[2:], dtype=torch.uint8)


ONSET_MAX = 0.7  # a neutral onset covers 1 .. 70% of the sequence: at least the last 30% shows the expression


def with_onsets(seqs: torch.Tensor, labels: torch.Tensor, neutral: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Training sequences where, with probability `p`, an expressive one starts from neutral.

    A real expression sequence (posed neutral-to-apex, an acted clip) begins with neutral frames; a
    sequence made from one still shows the expression in every frame, so a model trained only on those
    reads neutral frames as evidence against the expression (FER2013 val: accuracy 0.69 -> 0.41 when the
    first 7 of 10 frames are neutral, `bench/onset.py`). Here the first k frames (k uniform in 1 ..
    ONSET_MAX * T) of a chosen non-neutral sequence are replaced by the first k frames of a neutral
    sequence from the same batch; the label stays the expression. The neutral face is another person's:
    the identity changes at frame k, which a real onset never does, and is why this is a training
    option, measured in the model card, not part of the evaluation protocol. (B, T, S, S) in and out.
    """
    donors = torch.nonzero(labels == neutral).flatten()
    t = seqs.shape[1]
    if p <= 0 or len(donors) == 0 or t < 2:
        return seqs
    chosen = torch.nonzero((torch.rand(len(seqs), generator=gen) < p) & (labels != neutral)).flatten()
    if len(chosen) == 0:
        return seqs
    out = seqs.clone()
    ks = torch.randint(1, max(1, int(ONSET_MAX * t)) + 1, (len(chosen),), generator=gen)
    picks = donors[torch.randint(len(donors), (len(chosen),), generator=gen)]
    for i, k, d in zip(chosen.tolist(), ks.tolist(), picks.tolist(), strict=True):
        out[i, :k] = seqs[d, :k]
    return out
