"""`vemo export --onnx`: a checkpoint as a self-contained ONNX graph for onnxruntime and other runtimes.

The graph takes face crops as they come out of `vemo.data.preprocessing.face.crop_square`, pixel values 0-255 as
float32 (a uint8 array `.astype("float32")`), shaped (B, T, S, S); it normalises them with the training
statistics and returns calibrated class probabilities softmax(logits / temperature), (B, C): exactly
what `vemo predict` reports as `p_<class>` for the same crops (tests/test_export.py). Batch and T are
dynamic. The metadata says what a runtime needs to make the crops and read the output: `labels`
(JSON list, output order), `frames` (T), `size` (S), `margin` (the crop's margin around the detected
face box), `temperature`, `stats` (already applied in the graph), `input` (this contract in words).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from vemo.checkpoint import load_checkpoint
from vemo.io import atomic_write, check_writable, remove_stale_temps


class ExportError(RuntimeError):
    """The export cannot run here (an optional dependency is missing); the message says what to install."""


class Probabilities(nn.Module):
    """The clip model as `vemo predict` applies it, in one graph: 0-255 pixels -> normalised ->
    model -> softmax(logits / temperature). ONNX graphs return tensors, not dataclasses."""

    def __init__(self, model: nn.Module, stats: dict[str, float], temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.mean, self.std, self.temperature = float(stats["mean"]), float(stats["std"]), float(temperature)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = (clips / 255.0 - self.mean) / self.std  # = vemo.data.loading.loader.normalize, in the graph
        return torch.softmax(self.model(x).logits / self.temperature, dim=1)


INPUT_CONTRACT = (
    "clips: float32 (batch, T, S, S) grayscale face crops, pixel values 0-255 (not normalised); "
    "output probabilities: (batch, len(labels)), calibrated"
)


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = 18) -> Path:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the `onnx` package: pip install 'vemo[export]'") from None
    if Path(out).is_dir():
        raise ExportError(f"{out}: is a folder; give the file to write, e.g. {Path(out) / 'model.onnx'}")
    check_writable(Path(out).parent)  # before the model is loaded and traced
    ckpt = load_checkpoint(checkpoint)
    temperature = ckpt.temperature
    model = Probabilities(ckpt.build_model(), ckpt.stats, temperature).eval()
    prep = ckpt.preprocessing
    example = torch.full((2, prep.frames, prep.size, prep.size), 128.0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent, out.name)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.onnx.tmp")  # `vemo.io` naming: stale ones are removed
    with warnings.catch_warnings():
        # The exporter warns that LSTM graphs may break at other batch sizes; tests/test_export.py checks
        # that they do not (exported with batch 2, run with others).
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter, chosen on purpose
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        try:
            _export(model, example, tmp, opset)
            graph = onnx.load(str(tmp))
        finally:
            tmp.unlink(missing_ok=True)
    meta = {
        "labels": json.dumps(ckpt.labels),
        "frames": str(prep.frames),
        "size": str(prep.size),
        "margin": str(prep.margin),
        "temperature": str(temperature),
        "stats": json.dumps(ckpt.stats),
        "input": INPUT_CONTRACT,
    }
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
