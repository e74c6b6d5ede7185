"""The one interface every clip model implements, so training, evaluation and prediction never probe
a model with `hasattr` or read per-model dict keys.

A clip model maps (B, T, S, S) normalised grayscale frames to a `ClipOutput`. Frame models (a CNN per
frame, then a temporal head) also expose `encode_frames`, which the trainer uses to pretrain the
encoder on single frames; models with an autoencoder bottleneck also `reconstruct` frames from codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ClipOutput:
    """What a clip model returns for a batch of B clips of T frames."""

    logits: torch.Tensor  # (B, C) unnormalised class scores
    embedding: torch.Tensor  # (B, E) clip embedding before the classifier (t-SNE/PCA figures)
    codes: torch.Tensor | None = None  # (B, T, D) per-frame codes the temporal head read (frame models)
    attention: torch.Tensor | None = None  # (B, T) attention weights over time, when the model has them


class ClipModel(nn.Module):
    """Base class of every registered variant: `forward(x) -> ClipOutput`.

    `has_frame_encoder`: the model encodes each frame separately (`encode_frames`, `code_dim`), so its
    encoder can be pretrained on frames. `has_autoencoder`: it can `reconstruct` frames from codes."""

    has_frame_encoder: bool = False

    @property
    def has_autoencoder(self) -> bool:
        return False

    @property
    def code_dim(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no per-frame codes")

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not encode frames one by one")

    def reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no autoencoder to reconstruct with")

    def forward(self, x: torch.Tensor) -> ClipOutput:  # pragma: no cover - abstract
        raise NotImplementedError
