"""The clip classifier, composed of named parts: frame encoder -> [autoencoder bottleneck] -> temporal head.

Every CNN+sequence variant is this one class with different parts; the registry decides which.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from vemo.models.autoencoder import Bottleneck, FrameDecoder
from vemo.models.base import ClipModel, ClipOutput
from vemo.models.temporal import LSTMHead


class FrameSequenceClassifier(ClipModel):
    """(B, T, S, S) normalised frames -> ClipOutput(logits, embedding, codes[, attention]).

    `codes` (B, T, D) are the per-frame inputs of the temporal head: the autoencoder's code when there
    is one, the CNN features otherwise. The trainer decodes a few of them for the reconstruction loss,
    so frames are encoded once per step.
    """

    def __init__(
        self,
        encoder: nn.Module,
        temporal: LSTMHead,
        bottleneck: Bottleneck | None = None,
        decoder: FrameDecoder | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.bottleneck = bottleneck
        self.decoder = decoder
        self.temporal = temporal

    has_frame_encoder = True

    @property
    def code_dim(self) -> int:
        """Size of the per-frame code the temporal head reads."""
        return self.temporal.lstm.input_size

    @property
    def has_autoencoder(self) -> bool:
        return self.decoder is not None

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, S, S) or (N, 1, S, S) -> (N, D) per-frame codes."""
        if frames.dim() == 3:
            frames = frames.unsqueeze(1)
        h = self.encoder(frames)
        return self.bottleneck(h) if self.bottleneck is not None else h

    def reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, D) codes -> (N, 1, S, S) reconstructed frames (autoencoder variants only)."""
        if self.decoder is None:
            return super().reconstruct(codes)
        return self.decoder(codes)

    def forward_clips(self, x: torch.Tensor) -> ClipOutput:
        b, t = x.shape[:2]
        codes = self.encode_frames(x.reshape(b * t, *x.shape[2:])).view(b, t, -1)
        return replace(self.temporal(codes), codes=codes)
