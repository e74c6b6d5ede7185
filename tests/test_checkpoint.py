import os
import pickle

import pytest
import torch

from vemo.config import Config
from vemo.training.checkpoint import CheckpointError, atomic_save, load_checkpoint, model_from_checkpoint


class _RunsCode:
    """Unpickling this calls os.system: what a hostile checkpoint would do."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"model": _RunsCode(), "config": {}}, fh)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)


def test_round_trip_and_architecture_mismatch(tmp_path):
    from vemo.models.registry import model_from_config

    cfg = Config()
    cfg.model.width = 8
    model = model_from_config(cfg.model, 6, cfg.prepare.size)
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": list("abcdef"), "stats": {}}
    atomic_save(ckpt, tmp_path / "ok.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ok.pt"]  # no temporary file left behind
    loaded = model_from_checkpoint(load_checkpoint(tmp_path / "ok.pt"))
    x = torch.randn(2, 10, 48, 48)
    model.eval()
    assert torch.equal(loaded(x).logits, model(x).logits)

    ckpt["config"]["model"]["width"] = 16  # the weights no longer fit the architecture it names
    atomic_save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(load_checkpoint(tmp_path / "bad.pt"))


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_label_sets_are_matched_by_name_or_refused_clearly():
    from vemo.evaluation.evaluate import label_mapping

    fer = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    crema = ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    m = label_mapping(fer, crema)
    assert m == {"evaluated": crema, "data_only": [], "model_only": ["surprise"]}
    assert label_mapping(crema, ["happy", "bored"])["data_only"] == ["bored"]
    with pytest.raises(CheckpointError, match="no class in common"):
        label_mapping(crema, ["bored", "calm"])


def test_init_from_copies_matching_weights_names_the_fresh_ones_and_refuses_a_stranger(tmp_path):
    from test_predict import save_tiny_checkpoint
    from vemo.models.registry import build_model
    from vemo.training.checkpoint import init_from, load_checkpoint

    source = save_tiny_checkpoint(tmp_path / "six.pt")  # 6 labels
    saved = load_checkpoint(source)["model"]
    torch.manual_seed(1)
    seven = build_model("cnn_ae_lstm", 7, width=8, feature_dim=32, bottleneck_dim=16, hidden=24)
    lines = []
    init_from(seven, source, log=lines.append)
    own = seven.state_dict()
    head = [k for k in own if own[k].shape != saved[k].shape]  # the 7-way classifier cannot come from a 6-way one
    assert head and all(k.startswith("temporal.") for k in head)
    assert all(torch.equal(own[k], saved[k]) for k in own if k not in head)
    assert all(not torch.equal(own[k], saved[k]) for k in head if own[k].dim() > 1)
    assert head[0] in lines[0] and f"of {len(own)}" in lines[0]
    with pytest.raises(CheckpointError, match="none of its weights fit"):
        init_from(build_model("c3d", 6, width=8), source, log=lines.append)
