"""`vemo export --onnx`: a checkpoint as an ONNX graph for onnxruntime and other runtimes.

The graph takes normalised clips (B, T, S, S) float32 and returns class probabilities (B, C); batch
and T are dynamic. Normalisation statistics, labels and T are stored in the model's metadata so a
runtime needs nothing else from vemo.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from vemo.io import atomic_write
from vemo.training.checkpoint import load_checkpoint, model_from_checkpoint


class Probabilities(nn.Module):
    """The clip model reduced to one output, softmax probabilities (ONNX graphs return tensors, not dicts)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(clips)["logits"], dim=1)


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = 18) -> Path:
    import onnx

    ckpt = load_checkpoint(checkpoint)
    model = Probabilities(model_from_checkpoint(ckpt)).eval()
    prep = ckpt["config"]["prepare"]
    example = torch.zeros(2, prep["frames"], prep["size"], prep["size"])
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The exporter warns that LSTM graphs may break at other batch sizes; tests/test_export.py checks
        # that they do not (exported with batch 2, run with others).
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter, chosen on purpose
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        _export(model, example, tmp, opset)
    graph = onnx.load(str(tmp))

    tmp.unlink()
    meta = {"labels": json.dumps(ckpt["labels"]), "stats": json.dumps(ckpt["stats"]), "frames": str(prep["frames"])}
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    atomic_write(out, lambda fh: fh.write(graph.SerializeToString()))
    return out


def _export(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["clips"],
        output_names=["probabilities"],
        dynamic_axes={"clips": {0: "batch", 1: "frames"}, "probabilities": {0: "batch"}},
        opset_version=opset,
        dynamo=False,  # the TorchScript exporter handles the LSTM with dynamic T and needs no onnxscript
    )
