"""ONNX export: the graph is self-contained (0-255 crops in, calibrated probabilities out) and gives what
PyTorch and `vemo.predict` give, at any batch size and T."""

import json

import numpy as np
import pytest
import torch

from test_predict import face_frames, save_tiny_checkpoint
from vemo.checkpoint import atomic_save, load_checkpoint
from vemo.config import Config
from vemo.data.loading.loader import model_inputs
from vemo.export import export_onnx
from vemo.models.registry import MODELS, model_from_config
from vemo.predict.run import Predictor

ort = pytest.importorskip("onnxruntime")


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name, flip", [*((name, False) for name in sorted(MODELS)), ("cnn_ae_lstm", True)])
def test_onnx_matches_pytorch(name, flip, tmp_path):
    cfg = Config()
    cfg.model.name, cfg.prepare.frames, cfg.model.flip_average = name, 10, flip
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = 8, 32, 16, 24
    torch.manual_seed(0)
    model = model_from_config(cfg.model, 7, 48)
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    stats = {"mean": 0.45, "std": 0.2}
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": labels, "stats": stats}
    atomic_save({**ckpt, "calibration": {"temperature": 1.7}}, tmp_path / "m.pt")
    path = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    sess = session(path)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == labels and json.loads(meta["stats"]) == stats
    assert (int(meta["frames"]), int(meta["size"]), float(meta["temperature"])) == (10, 48, 1.7)
    reference = load_checkpoint(tmp_path / "m.pt").build_model()
    generator = torch.Generator().manual_seed(0)
    for batch, t in ((1, 10), (5, 10), (3, 16)):
        crops = torch.randint(0, 256, (batch, t, 48, 48), generator=generator, dtype=torch.uint8)
        with torch.no_grad():
            want = torch.softmax(reference(model_inputs(crops, stats)).logits / 1.7, 1).numpy()
        got = sess.run(None, {"clips": crops.numpy().astype(np.float32)})[0]
        assert got.shape == (batch, 7) and np.abs(got - want).max() < 1e-4


def test_onnx_equals_vemo_predict_on_the_same_face_crops(tmp_path):
    """End to end: the crops `vemo.predict` classified, through the ONNX graph, give its p_ columns."""
    import vemo

    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", temperature=2.5)
    predictor = Predictor(ckpt)
    seen = []
    classify = predictor.probabilities
    predictor.probabilities = lambda clips: (seen.append(clips.copy()), classify(clips))[1]
    df = vemo.predict(np.stack(face_frames(2)), checkpoint=predictor, fps=15, hop=1.0)
    ok = df[df.status == "ok"]
    assert len(ok) == len(seen) >= 2
    got = session(export_onnx(ckpt, tmp_path / "m.onnx")).run(None, {"clips": np.concatenate(seen).astype(np.float32)})
    want = ok[[f"p_{lab}" for lab in predictor.labels]].to_numpy()
    assert np.abs(got[0] - want).max() < 1e-4


def test_an_output_that_is_a_folder_is_named_as_such(tmp_path):
    from vemo.export import ExportError

    with pytest.raises(ExportError, match=f"{tmp_path}: is a folder; give the file to write"):
        export_onnx(save_tiny_checkpoint(tmp_path / "m.pt"), tmp_path)
