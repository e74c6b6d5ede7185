"""Batches of clips straight from the prepared array, in the training process.

The prepared frames are small (CREMA-D: ~270 MB as uint8), so a split is loaded into memory once and
batches are sliced from it. That beats a DataLoader with worker processes on a 2-core machine, where
workers would compete with the model for the same cores. Normalisation happens per batch, in float32.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from vemo.data.loading.prepare import Prepared
from vemo.data.preprocessing.stills import to_sequences


def load_split(prepared: Prepared, split: str, expand: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T, S, S) uint8 frames and (N,) int64 targets of one split ("all": every item).

    Stills datasets are stored as (N, 1, S, S); `expand` turns them into T-frame sequences with the
    fixed evaluation protocol of `vemo.data.preprocessing.stills`. Training passes expand=False and draws fresh
    trajectories per batch instead (`expand_batch`).
    """
    idx = prepared.indices(split)
    frames = prepared.frames()
    x = torch.from_numpy(np.ascontiguousarray(frames[idx])) if len(idx) else torch.empty(0, *frames.shape[1:])
    x = x.to(torch.uint8)
    if expand and prepared.kind == "stills":
        x = to_sequences(x, prepared.settings.frames)
    return x, torch.from_numpy(prepared.targets()[idx])


def expand_batch(xb: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    """Training batches of stills (B, 1, S, S) -> fresh random sequences (B, T, S, S); clips pass through."""
    return to_sequences(xb, t, generator) if xb.shape[1] == 1 and t > 1 else xb


def model_inputs(x: torch.Tensor, stats: dict[str, float]) -> torch.Tensor:
    """uint8 clips -> what the model takes (normalised with the training statistics). Used wherever a
    trained model is applied."""
    return normalize(x, stats)


def normalize(x: torch.Tensor, stats: dict[str, float]) -> torch.Tensor:
    """uint8 (..., S, S) -> float32 standardised with the training split's statistics."""
    return (x.float() / 255.0 - stats["mean"]) / stats["std"]


def iterate(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 clips, targets) batches; the last, smaller batch is kept.

    `shard=(rank, world)`: this process's share of the order (every world-th sample). The order is cut
    to a multiple of `world` first, so every process makes the same number of steps.
    """
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    rank, world = shard
    if world > 1:
        order = order[: len(order) - len(order) % world][rank::world]
    for start in range(0, len(order), batch_size):
        pick = order[start : start + batch_size]
        yield x[pick], y[pick]
