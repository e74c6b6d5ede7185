import os
import pickle

import pytest
import torch

from vemo.checkpoint import Checkpoint, CheckpointError, atomic_save, load_checkpoint
from vemo.config import Config


class _RunsCode:
    """Unpickling this calls os.system (creating `mark`): what a hostile checkpoint would do."""

    def __init__(self, mark):
        self.mark = mark

    def __reduce__(self):
        return (os.system, (f"touch '{self.mark}'",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"model": _RunsCode(tmp_path / "pwned"), "config": {}}, fh)
    with pytest.raises(CheckpointError, match="evil.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(path)  # a bare pickle is not torch's format: torch reads no object out of it
    torch.save({"model": _RunsCode(tmp_path / "pwned"), "config": {}}, tmp_path / "evil2.pt")  # torch's format
    with pytest.raises(CheckpointError, match=r"evil2.pt: refused to load.*GLOBAL posix.system") as err:
        load_checkpoint(tmp_path / "evil2.pt")
    assert not (tmp_path / "pwned").exists()  # refused before any of its code ran
    assert "weights_only` set to `False`" not in str(err.value)  # torch's advice to load it unsafely: not passed on


def test_random_bytes_are_called_unreadable_not_dangerous(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(256)) * 12)  # no zip archive, no pickle a refused object could come from
    with pytest.raises(CheckpointError, match=r"noise.pt: not a readable PyTorch checkpoint \(corrupt") as err:
        load_checkpoint(path)
    assert "could run code" not in str(err.value)


def test_round_trip_and_architecture_mismatch(tmp_path):
    from vemo.models.registry import model_from_config

    cfg = Config()
    cfg.model.width = 8
    model = model_from_config(cfg.model, 6, cfg.prepare.size)
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": list("abcdef"), "stats": {}}
    atomic_save(ckpt, tmp_path / "ok.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ok.pt"]  # no temporary file left behind
    loaded = load_checkpoint(tmp_path / "ok.pt").build_model()
    x = torch.randn(2, 10, 48, 48)
    model.eval()
    assert torch.equal(loaded(x).logits, model(x).logits)

    ckpt["config"]["model"]["width"] = 16  # the weights no longer fit the architecture it names
    atomic_save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "bad.pt").build_model()


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
    from vemo.checkpoint import init_from, load_checkpoint
    from vemo.models.registry import build_model

    source = save_tiny_checkpoint(tmp_path / "six.pt")  # 6 labels
    saved = load_checkpoint(source).weights
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


def test_load_checkpoint_gives_a_typed_checkpoint_that_round_trips_through_save_and_load(tmp_path):
    from test_predict import save_tiny_checkpoint

    first = load_checkpoint(save_tiny_checkpoint(tmp_path / "m.pt", temperature=1.3))
    assert isinstance(first, Checkpoint) and first.path == tmp_path / "m.pt"
    assert isinstance(first.config, Config) and first.frame_size == 48 and first.frames == 10
    assert first.labels == ["angry", "disgust", "fear", "happy", "neutral", "sad"] and first.temperature == 1.3
    assert first.resume is None and first.epoch is None and first.extra == {}
    first.epoch, first.kind, first.resume = 3, "clips", {"stage": "joint", "history": [{"epoch": 1}]}
    first.extra["note"] = "kept"  # a key this vemo has no field for is written back as it was
    atomic_save(first.to_dict(), tmp_path / "again.pt")
    raw = torch.load(tmp_path / "again.pt", weights_only=True)  # plain values only: the file format is unchanged
    assert {"model", "config", "labels", "stats", "calibration", "resume", "note"} <= set(raw)
    assert isinstance(raw["config"], dict) and raw["kind"] == "clips"
    again = load_checkpoint(tmp_path / "again.pt")
    assert again.path == tmp_path / "again.pt"
    assert again.to_dict().keys() == first.to_dict().keys()
    assert again.config == first.config and again.stats == first.stats and again.calibration == first.calibration
    assert (again.epoch, again.kind, again.resume, again.extra) == (3, "clips", first.resume, {"note": "kept"})
    assert all(torch.equal(again.weights[k], v) for k, v in first.weights.items())


def test_apply_preprocessing_copies_how_clips_were_made_but_not_the_callers_machine_or_choices():
    from vemo.config import PrepareConfig

    trained = Config()
    trained.prepare.frames, trained.prepare.margin, trained.prepare.root = 10, 0.3, "/data/x"
    trained.prepare.workers, trained.prepare.cache_dir = 7, "/elsewhere"
    ckpt = Checkpoint(weights={}, config=trained, labels=["a"], stats={})
    cfg = Config()
    cfg.prepare.cache_dir, cfg.prepare.root = "my-cache", "/data/mine"
    assert ckpt.apply_preprocessing(cfg, keep=("root",)) is cfg.prepare
    assert (cfg.prepare.frames, cfg.prepare.margin, cfg.prepare.root) == (10, 0.3, "/data/mine")
    assert (cfg.prepare.workers, cfg.prepare.cache_dir) == (0, "my-cache")
    assert ckpt.apply_preprocessing(PrepareConfig()).frames == 10  # a prepare section alone works too
