"""The one interface every clip model implements, so training, evaluation and prediction never probe
a model with `hasattr` or read per-model dict keys.

A clip model maps (B, T, S, S) normalised grayscale frames to a `ClipOutput`. Frame models (a CNN per
frame, then a temporal head) also expose `encode_frames`, which the trainer uses to pretrain the
encoder on single frames; models with an autoencoder bottleneck also `reconstruct` frames from codes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

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

    flip_average: bool = False  # eval mode: average over each clip and its mirror image (ModelConfig.flip_average)

    def forward(self, x: torch.Tensor) -> ClipOutput:
        """(B, T, S, S) -> ClipOutput. In eval mode with `flip_average`, the clip and its left-right mirror
        go through `forward_clips` as one batch of 2B and their outputs are averaged; training never
        mirrors here (its augmentation flips at random)."""
        if not self.flip_average or self.training:
            return self.forward_clips(x)
        both = self.forward_clips(torch.cat([x, x.flip(-1)]))
        # (2B, ...) -> (2, B, ...) -> mean: no batch size is baked in, so an ONNX export takes any batch
        return ClipOutput(*(None if v is None else v.unflatten(0, (2, -1)).mean(0) for v in astuple_shallow(both)))

    def forward_clips(self, x: torch.Tensor) -> ClipOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def astuple_shallow(out: ClipOutput) -> tuple:
    """The fields of a ClipOutput in order, without copying tensors (dataclasses.astuple deep-copies)."""
    return tuple(getattr(out, f.name) for f in fields(out))
