"""Batched inference over prepared clips: class probabilities and clip embeddings."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from vemo.checkpoint import Checkpoint, CheckpointError
from vemo.data.loading.loader import model_inputs
from vemo.data.loading.prepare import Prepared


def check_frame_size(ckpt: Checkpoint, prepared: Prepared) -> None:
    """Refuse data prepared at another frame size than the checkpoint's model takes."""
    size = ckpt.frame_size
    if prepared.settings.size != size:
        raise CheckpointError(
            f"the checkpoint expects {size}x{size} frames but the data was prepared at "
            f"{prepared.settings.size}; prepare again with prepare.size={size}"
        )


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    stats: dict[str, float],
    batch_size: int = 64,
    temperature: float = 1.0,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """x: (N, T, S, S) uint8 clips -> logits (N, C), probs (N, C) = softmax(logits / temperature),
    embedding (N, E), attention (N, T) if present. `progress`: a bar over the clips (a test split through
    a large model takes minutes on a CPU)."""
    model.eval()
    device = next(model.parameters()).device  # batches go where the model is (`evaluate --device`)
    parts: dict[str, list[torch.Tensor]] = {}
    bar = tqdm(total=len(x), desc="inference", unit="clip", disable=not progress)
    for start in range(0, len(x), batch_size):
        out = model(model_inputs(x[start : start + batch_size], stats).to(device))
        bar.update(len(out.logits))
        logits = out.logits.cpu()
        parts.setdefault("logits", []).append(logits)
        parts.setdefault("probs", []).append(torch.softmax(logits / temperature, dim=1))
        parts.setdefault("embedding", []).append(out.embedding.cpu())
        if out.attention is not None:
            parts.setdefault("attention", []).append(out.attention.cpu())
    bar.close()
    return {k: torch.cat(v) for k, v in parts.items()}
