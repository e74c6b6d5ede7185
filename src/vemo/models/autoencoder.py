"""The autoencoder bottleneck: compresses each frame's CNN features to a short code and, through a
decoder head, reconstructs the clean frame from it.

Why reconstruct pixels rather than the CNN features: a feature-space target moves with the encoder,
and the encoder can make it trivial to reconstruct (e.g. collapse it). Reconstructing the clean frame
from a noisy input (a denoising autoencoder) forces the code to keep what describes the face and drop
the noise; it also lets the encoder be pretrained on frames without labels.
"""

from __future__ import annotations

import torch
from torch import nn

from vemo.models.blocks import UpStage


class Bottleneck(nn.Module):
    """feature_dim -> code_dim (the code fed to the LSTM)."""

    def __init__(self, feature_dim: int, code_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, code_dim), nn.LayerNorm(code_dim), nn.ReLU())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class FrameDecoder(nn.Module):
    """code -> (1, S, S) frame: a linear map to a (C, S/8, S/8) grid, then three 2x upsampling stages."""

    def __init__(self, code_dim: int, frame_size: int, width: int = 32):
        super().__init__()
        if frame_size % 8:
            raise ValueError(f"frame size must be a multiple of 8 for the decoder (got {frame_size})")
        self.grid = frame_size // 8
        self.width = width
        self.fc = nn.Sequential(nn.Linear(code_dim, 4 * width * self.grid**2), nn.ReLU())
        self.up = nn.Sequential(
            UpStage(4 * width, 2 * width),
            UpStage(2 * width, width),
            UpStage(width, width // 2),
            nn.Conv2d(width // 2, 1, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, 4 * self.width, self.grid, self.grid)
        return self.up(x)
