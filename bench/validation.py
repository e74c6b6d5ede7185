"""What the validation-only benches share: their arguments and the checkpoint and prepared cache they
read, checked to fit one another (same frame size) before any inference. Imported by the bench scripts
(run as `.venv/bin/python bench/NAME.py`, which puts this folder on the path); not a bench itself."""

from __future__ import annotations

import argparse

from torch import nn

from vemo.checkpoint import Checkpoint, load_checkpoint
from vemo.data.loading.prepare import Prepared, load_prepared
from vemo.evaluation.inference import check_frame_size


def arguments(doc: str) -> argparse.ArgumentParser:
    """--checkpoint, --data and --split (val or train: these benches never read a test split)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--data", required=True, help="the prepared cache folder the checkpoint was trained on")
    ap.add_argument("--split", default="val", choices=["val", "train"])
    return ap


def load(checkpoint: str, data: str) -> tuple[Checkpoint, nn.Module, Prepared]:
    """The checkpoint, its model and the prepared cache; refused when their frame sizes differ."""
    prepared = load_prepared(data)
    ckpt = load_checkpoint(checkpoint)
    check_frame_size(ckpt, prepared)
    return ckpt, ckpt.build_model(), prepared
