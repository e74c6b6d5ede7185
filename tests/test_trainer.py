import pytest
import torch

from vemo.config import Config
from vemo.training.trainer import _check_train_config, _pick_frames


def test_pick_frames_distinct_in_range_clip_major():
    gen = torch.Generator().manual_seed(0)
    b, t, k, first = 5, 16, 4, 8
    flat = _pick_frames(b, t, k, gen, first=first).view(b, k)
    for clip in range(b):
        frames = flat[clip] - clip * t  # indices of clip `clip` come in its own block, in order of clips
        assert len(set(frames.tolist())) == k
        assert frames.min() >= first and frames.max() < t
    assert _pick_frames(2, 3, 10, gen).numel() == 6  # k larger than the clip: every frame once


@pytest.mark.parametrize("key, value", [("epochs", 0), ("patience", 0), ("pretrain_from", 1.0), ("pretrain_frames", 0)])
def test_nonsense_training_settings_are_refused(key, value):
    cfg = Config()
    setattr(cfg.train, key, value)
    with pytest.raises(ValueError, match=key.split("_")[0]):
        _check_train_config(cfg)
