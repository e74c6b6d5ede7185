import math

import pytest
import torch

from vemo.config import Config
from vemo.training.trainer import _pick_frames, check_train_config


def test_pick_frames_distinct_in_range_clip_major():
    gen = torch.Generator().manual_seed(0)
    b, t, k, first = 5, 16, 4, 8
    flat = _pick_frames(b, t, k, gen, first=first).view(b, k)
    for clip in range(b):
        frames = flat[clip] - clip * t  # indices of clip `clip` come in its own block, in order of clips
        assert len(set(frames.tolist())) == k
        assert frames.min() >= first and frames.max() < t
    assert sorted(_pick_frames(2, 3, 10, gen).tolist()) == list(range(6))  # k larger than the clip: every frame once


@pytest.mark.parametrize("key, value", [("epochs", 0), ("patience", 0), ("pretrain_from", 1.0), ("pretrain_frames", 0)])
def test_nonsense_training_settings_are_refused(key, value):
    cfg = Config()
    setattr(cfg.train, key, value)
    with pytest.raises(ValueError, match=key.split("_")[0]):
        check_train_config(cfg)


def test_every_variant_trains_through_the_trainer(tiny_synth, tmp_path, monkeypatch):
    """One pretraining and one joint epoch per variant, channels-last on (c3d needs its 3D layout)."""
    from pathlib import Path

    from vemo.config import PrepareConfig, load_config
    from vemo.data.loading.prepare import prepare
    from vemo.models.registry import MODELS
    from vemo.training import trainer
    from vemo.training.trainer import train

    converted = []
    real = trainer.to_channels_last
    monkeypatch.setattr(trainer, "to_channels_last", lambda model: converted.append(model) or real(model))
    repo = Path(__file__).resolve().parents[1]
    pcfg = PrepareConfig(root=str(tiny_synth), cache_dir=str(tmp_path / "cache"), frames=10, workers=1)
    pcfg.val_fraction = pcfg.test_fraction = 0.25
    prepared = prepare(pcfg, progress=False, log=lambda *_: None)
    for name in sorted(MODELS):
        cfg = load_config(
            repo / "configs/tiny.yaml", [f"model.name={name}", "train.epochs=1", "train.channels_last=true"]
        )
        result = train(cfg, prepared, tmp_path / name, progress=False, log=lambda *_: None)
        assert result.best_checkpoint.exists() and result.epochs_run == 1
        assert len(converted) == sorted(MODELS).index(name) + 1  # the layout was applied to this variant


def test_a_frozen_encoder_that_was_never_pretrained_is_refused(tiny_synth, tmp_path):
    from vemo.config import load_config
    from vemo.data.loading.prepare import prepare
    from vemo.training.trainer import train

    cfg = load_config(None, ["train.pretrain_epochs=0", "train.freeze_encoder=true", "model.width=4"])
    cfg.prepare.root, cfg.prepare.cache_dir, cfg.prepare.frames = str(tiny_synth), str(tmp_path / "c"), 10
    with pytest.raises(ValueError, match="freeze_encoder"):
        train(cfg, prepare(cfg.prepare, progress=False, log=lambda *_: None), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before anything was written


def test_freezing_keeps_encoder_weights_and_batch_norm_statistics(tiny_synth, tmp_path, monkeypatch):
    """The joint stage with a frozen encoder changes neither its weights nor its running statistics."""
    from vemo.checkpoint import load_checkpoint
    from vemo.config import load_config
    from vemo.data.loading.prepare import prepare
    from vemo.training import trainer

    snapshots = []
    original = trainer.joint_epoch

    def spy(run, *args, **kwargs):
        if not snapshots:  # the encoder as pretraining left it, and the sequence stage before it trained
            snapshots.append({k: v.clone() for k, v in run.model.encoder.state_dict().items()})
            snapshots.append({k: v.clone() for k, v in run.model.temporal.state_dict().items()})
        return original(run, *args, **kwargs)

    monkeypatch.setattr(trainer, "joint_epoch", spy)
    cfg = load_config(None, ["train.pretrain_epochs=1", "train.epochs=2", "train.patience=5", "model.width=4"])
    cfg.prepare.root, cfg.prepare.cache_dir, cfg.prepare.frames = str(tiny_synth), str(tmp_path / "c"), 10
    cfg.train.threads = 1
    trainer.train(cfg, prepare(cfg.prepare, progress=False, log=lambda *_: None), tmp_path / "run", progress=False)
    after = load_checkpoint(tmp_path / "run" / "last.pt").weights
    before = snapshots[0]
    assert any(k.endswith("running_mean") for k in before)
    assert all(torch.equal(before[k], after[f"encoder.{k}"]) for k in before)
    # and the rest of the model did learn in those two epochs
    assert not torch.equal(after["temporal.classifier.4.weight"], snapshots[1]["classifier.4.weight"])


def test_resume_accepts_machine_only_changes_and_names_the_rest(tmp_path):
    from vemo.checkpoint import CheckpointError, atomic_save
    from vemo.training.state import load_resume

    cfg = Config()
    last = {"model": {}, "config": cfg.to_dict(), "labels": ["a"], "stats": {}, "resume": {"stage": "joint"}}
    atomic_save(last, tmp_path / "last.pt")
    moved = Config()
    moved.train.threads, moved.train.device, moved.prepare.workers, moved.prepare.cache_dir = 7, "cpu", 3, "elsewhere"
    assert load_resume(tmp_path, moved, log=lambda *_: None).resume["stage"] == "joint"
    changed = Config()
    changed.train.lr, changed.model.width = 0.5, 64
    with pytest.raises(CheckpointError, match=r"train\.lr, .*model\.width|model\.width, .*train\.lr"):
        load_resume(tmp_path, changed, log=lambda *_: None)


def test_cosine_pretraining_schedule_warms_up_then_decays_to_zero():
    """The FER2013 recipe's schedule: linear warm-up over min(2 epochs, a tenth of the run), then a
    half cosine from the peak to 0 at the last step."""
    from vemo.training.trainer import pretrain_optimizer

    cfg = Config()
    cfg.train.pretrain_optimizer, cfg.train.pretrain_schedule = "sgd", "cosine"
    cfg.train.pretrain_lr, cfg.train.pretrain_epochs = 0.05, 10
    opt, sched = pretrain_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, 5)  # 50 steps, warm-up 6
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:6] == pytest.approx([0.05 * (k + 1) / 6 for k in range(6)])
    assert lrs[6] == pytest.approx(0.05) and all(a > b for a, b in zip(lrs[6:], lrs[7:], strict=False))
    assert lrs[-1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 43 / 44)))
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
