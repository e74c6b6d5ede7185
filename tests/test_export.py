"""ONNX export: onnxruntime gives the same probabilities as PyTorch, at any batch size and T."""

import json

import numpy as np
import pytest
import torch

from vemo.config import Config
from vemo.export import export_onnx
from vemo.models.registry import MODELS, build_model
from vemo.training.checkpoint import atomic_save, load_checkpoint, model_from_checkpoint

ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_matches_pytorch(name, tmp_path):
    cfg = Config()
    cfg.model.name, cfg.prepare.frames = name, 10
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = 8, 32, 16, 24
    torch.manual_seed(0)
    model = build_model(cfg.model, 7, 48)
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    stats = {"mean": 0.5, "std": 0.25}
    atomic_save(
        {"model": model.state_dict(), "config": cfg.to_dict(), "labels": labels, "stats": stats}, tmp_path / "m.pt"
    )
    path = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == labels and json.loads(meta["stats"]) == stats
    reference = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    for batch, t in ((1, 10), (5, 10), (3, 16)):
        x = torch.randn(batch, t, 48, 48)
        with torch.no_grad():
            want = torch.softmax(reference(x)["logits"], 1).numpy()
        got = session.run(None, {"clips": x.numpy()})[0]
        assert got.shape == (batch, 7) and np.abs(got - want).max() < 1e-4
