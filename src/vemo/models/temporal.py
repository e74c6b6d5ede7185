"""Temporal heads: a sequence of per-frame codes (B, T, D) -> clip logits (B, C)."""

from __future__ import annotations

import torch
from torch import nn

from vemo.models.base import ClipOutput


class AttentionPool(nn.Module):
    """Additive (Bahdanau-style) attention over time: a softmax weight per frame, summing to 1.

    Lets the classifier weight the apex of an expression more than neutral onset frames; the weights
    are returned so they can be plotted.
    """

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.score(h).squeeze(-1), dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, h), weights


class LSTMHead(nn.Module):
    """LSTM over frame codes, then the last step (or attention over all steps), then dense layers."""

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        n_classes: int,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.3,
        attention: bool = False,
    ):
        super().__init__()
        self.bidirectional = bidirectional
        self.hidden = hidden
        self.lstm = nn.LSTM(
            in_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        out_dim = hidden * (2 if bidirectional else 1)
        self.attention = AttentionPool(out_dim) if attention else None
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(out_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, codes: torch.Tensor) -> ClipOutput:
        out, _ = self.lstm(codes)
        weights = None
        if self.attention is not None:
            pooled, weights = self.attention(out)
        elif self.bidirectional:  # forward direction's last step, backward direction's first
            pooled = torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden :]], dim=1)
        else:
            pooled = out[:, -1]
        return ClipOutput(logits=self.classifier(pooled), embedding=pooled, attention=weights)
