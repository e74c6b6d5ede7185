"""Several trained clip models read as one: the mean of their calibrated class probabilities.

Why: models trained apart (another seed, another width) make partly different mistakes, so averaging
their probabilities is right more often than any one of them, at the sum of their costs. Each member
keeps its own fitted temperature, so a member that is over-confident does not outvote the others, and
its own flip averaging. The ensemble's logits are the log of the averaged probabilities, so
softmax(logits) is that mean and a temperature fitted on top (`vemo calibrate`) works as for one model.

Built from checkpoints by `vemo.checkpoint.combine_checkpoints` (`vemo ensemble`); not in the model
registry, because it is made of trained models rather than from a config.
"""

from __future__ import annotations

import torch
from torch import nn

from vemo.models.base import ClipModel, ClipOutput


class Ensemble(ClipModel):
    """`members` are clip models for the same classes and the same input frames; `temperatures[i]`
    divides member i's logits before its softmax."""

    def __init__(self, members: list[ClipModel], temperatures: list[float]):
        super().__init__()
        if len(members) != len(temperatures) or not members:
            raise ValueError("an ensemble needs at least one member and one temperature per member")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32))

    @property
    def flip_average(self) -> bool:  # type: ignore[override]
        """On when every member averages each clip with its mirror image; setting it sets every member."""
        return all(m.flip_average for m in self.members)

    @flip_average.setter
    def flip_average(self, on: bool) -> None:
        for m in self.members:
            m.flip_average = on

    def forward(self, x: torch.Tensor) -> ClipOutput:
        """(B, T, S, S) -> logits = log(mean of the members' calibrated probabilities); the embedding is
        the members' embeddings side by side; attention the members' mean where all of them have it."""
        outs = [m(x) for m in self.members]
        probs = torch.stack([o.logits.div(t).softmax(-1) for o, t in zip(outs, self.temperatures, strict=True)]).mean(0)
        attention = [o.attention for o in outs]
        return ClipOutput(
            logits=probs.clamp_min(1e-12).log(),
            embedding=torch.cat([o.embedding for o in outs], dim=1),
            attention=None if any(a is None for a in attention) else torch.stack(attention).mean(0),
        )
