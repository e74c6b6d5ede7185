"""A 3D CNN over the whole clip: space and time convolved together, instead of CNN per frame + LSTM.

C3D-style: 3x3x3 convolutions, pooling space early and time late (short clips have only T=10-20
frames, so time is halved only twice), global average pooling, dense classifier. It sees motion
directly (a raised brow is a change between frames), at the cost of no per-frame features to
pretrain or to reconstruct.
"""

from __future__ import annotations

import torch
from torch import nn

from vemo.models.base import ClipModel, ClipOutput


def conv3d_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class Stage3d(nn.Sequential):
    """Two 3x3x3 conv-BN-ReLU layers, then max-pooling by `pool` (time, height, width)."""

    def __init__(self, cin: int, cout: int, pool: tuple[int, int, int]):
        super().__init__(conv3d_bn_relu(cin, cout), conv3d_bn_relu(cout, cout), nn.MaxPool3d(pool, ceil_mode=True))


class C3D(ClipModel):
    """(B, T, S, S) normalised frames -> ClipOutput(logits, embedding)."""

    def __init__(self, n_classes: int, width: int = 16, embed_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            Stage3d(1, w, (1, 2, 2)),
            Stage3d(w, 2 * w, (1, 2, 2)),
            Stage3d(2 * w, 4 * w, (2, 2, 2)),
            Stage3d(4 * w, 8 * w, (2, 2, 2)),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(8 * w, embed_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.classifier = nn.Linear(embed_dim, n_classes)

    def forward_clips(self, x: torch.Tensor) -> ClipOutput:
        h = self.embed(self.features(x.unsqueeze(1)))
        return ClipOutput(logits=self.classifier(h), embedding=h)
