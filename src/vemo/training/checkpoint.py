"""Checkpoints: written atomically, read without executing code.

A checkpoint holds only tensors and plain values (config as a dict, label names, normalisation
statistics), so `torch.load(weights_only=True)` can read it: a checkpoint from a stranger cannot run
code on load. Writes go to a temporary file that is fsynced and renamed, so a crash mid-write never
leaves a truncated file under the real name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vemo.config import config_from_dict
from vemo.io import atomic_write
from vemo.models.registry import build_model


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why."""


def atomic_save(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SHIPPED = {"default": "fer2013_cnn_ae_lstm.pt"}  # name -> file in vemo/weights (see its MODEL_CARD.md)


def resolve_checkpoint(name: str | Path) -> Path:
    """`default` (or another shipped name) -> the weights inside the package; anything else is a path."""
    if str(name) in SHIPPED:
        path = WEIGHTS / SHIPPED[str(name)]
        if not path.exists():
            raise CheckpointError(f"the shipped model {name!r} is missing from this install ({path})")
        return path
    return Path(name)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it contains Python objects beyond tensors and plain values, which "
            f"could run code when unpickled (vemo only loads with weights_only=True). Details: {err}"
        ) from err
    except Exception as err:  # torch raises many types for non-checkpoint bytes (KeyError, EOFError, ...)
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not a vemo checkpoint (missing 'model' or 'config')")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture the checkpoint describes and load its weights."""
    cfg = config_from_dict(ckpt["config"])
    model = build_model(cfg.model, len(ckpt["labels"]), cfg.prepare.size)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint weights do not fit the {cfg.model.name!r} architecture it names: {str(err)[:300]}"
        ) from err
    return model.eval()


def ship_checkpoint(src: str | Path, out: str | Path, data: str | Path | None = None, match_sharpness: bool = False):
    """A checkpoint for distribution: weights, config, labels and statistics only (no optimiser or RNG
    state); with `match_sharpness`, the median sharpness of the training split of `data` (the prepared
    cache it was trained on) is recorded, so inference blurs sharper inputs to it (vemo.data.sharpness)."""
    ckpt = load_checkpoint(src)
    ckpt.pop("resume", None)
    if match_sharpness:
        if data is None:
            raise CheckpointError("--match-sharpness needs --data: the prepared cache the model was trained on")
        from vemo.data.loader import load_split
        from vemo.data.prepare import load_prepared
        from vemo.data.sharpness import sharpness_of

        x, _ = load_split(load_prepared(data), "train", expand=False)
        ckpt["stats"] = {**ckpt["stats"], "sharpness": sharpness_of(x)}
    ckpt["shipped_from"] = str(src)
    atomic_save(ckpt, out)
    return ckpt
