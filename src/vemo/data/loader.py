"""Batches of clips straight from the prepared array, in the training process.

The prepared frames are small (CREMA-D: ~270 MB as uint8), so a split is loaded into memory once and
batches are sliced from it. That beats a DataLoader with worker processes on a 2-core machine, where
workers would compete with the model for the same cores. Normalisation happens per batch, in float32.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from vemo.data.prepare import Prepared


def load_split(prepared: Prepared, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T, S, S) uint8 frames and (N,) int64 targets of one split."""
    idx = prepared.indices(split)
    frames = prepared.frames()
    x = torch.from_numpy(np.ascontiguousarray(frames[idx])) if len(idx) else torch.empty(0, *frames.shape[1:])
    y = torch.from_numpy(prepared.targets()[idx])
    return x.to(torch.uint8), y


def normalize(x: torch.Tensor, stats: dict[str, float]) -> torch.Tensor:
    """uint8 (..., S, S) -> float32 standardised with the training split's statistics."""
    return (x.float() / 255.0 - stats["mean"]) / stats["std"]


def iterate(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 clips, targets) batches; the last, smaller batch is kept."""
    order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
    for start in range(0, len(x), batch_size):
        pick = order[start : start + batch_size]
        yield x[pick], y[pick]
