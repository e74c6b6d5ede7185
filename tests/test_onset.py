"""Neutral onsets for sequences made from stills (`train.onset`): what `with_onsets` changes, and that
training applies it to stills datasets only."""

import cv2
import numpy as np
import pytest
import torch

from vemo.data.preprocessing.stills import ONSET_MAX, with_onsets

NEUTRAL = 4


def _batch(n=40, t=10):
    seqs = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, t, 3, 3).clone()  # sequence i is all i
    labels = torch.tensor([NEUTRAL if i % 4 == 0 else i % 7 if i % 7 != NEUTRAL else 1 for i in range(n)])
    return seqs, labels


def test_every_chosen_expressive_sequence_starts_with_a_neutral_one_and_ends_as_it_was():
    seqs, labels = _batch()
    out = with_onsets(seqs, labels, NEUTRAL, 1.0, torch.Generator().manual_seed(0))
    neutral_ids = {int(i) for i in torch.nonzero(labels == NEUTRAL).flatten()}
    lengths = []
    for i in range(len(seqs)):
        if labels[i] == NEUTRAL:
            assert torch.equal(out[i], seqs[i])  # neutral sequences are left alone
            continue
        own = (out[i, :, 0, 0] == i).nonzero().flatten()
        k = int(own[0])  # frames before the sequence's own ones
        assert 1 <= k <= int(ONSET_MAX * 10) and torch.equal(out[i, k:], seqs[i, k:])
        donors = set(out[i, :k, 0, 0].tolist())
        assert len(donors) == 1 and donors <= neutral_ids  # one neutral sequence's first k frames
        lengths.append(k)
    assert len(set(lengths)) > 3  # onset lengths vary
    assert torch.equal(seqs, _batch()[0])  # the input is not modified in place


def test_no_onset_without_probability_or_neutral_donor():
    seqs, labels = _batch()
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(with_onsets(seqs, labels, NEUTRAL, 0.0, gen), seqs)
    no_neutral = torch.where(labels == NEUTRAL, torch.ones_like(labels), labels)
    assert torch.equal(with_onsets(seqs, no_neutral, NEUTRAL, 1.0, gen), seqs)
    half = with_onsets(seqs, labels, NEUTRAL, 0.5, torch.Generator().manual_seed(1))
    changed = sum(not torch.equal(half[i], seqs[i]) for i in range(len(seqs)))
    assert 0 < changed < int((labels != NEUTRAL).sum())


def _fake_fer(root, per_class=6):
    rng = np.random.default_rng(0)
    for split, prefix in (("train", "Training"), ("test", "PublicTest")):
        for label in ("angry", "happy", "neutral", "sad"):
            d = root / split / label
            d.mkdir(parents=True)
            for i in range(per_class if split == "train" else 2):
                cv2.imwrite(str(d / f"{prefix}_{label}{i}.jpg"), rng.integers(0, 255, (48, 48), dtype=np.uint8))


def _settings(tmp_path, onset):
    return ["train.pretrain_epochs=1", "train.epochs=1", "train.threads=1", "train.batch_size=8", "model.width=4",
            "prepare.dataset=fer2013", f"prepare.root={tmp_path / 'fer'}", f"prepare.cache_dir={tmp_path / 'c'}",
            "prepare.frames=6", f"train.onset={onset}"]  # fmt: skip


def test_training_on_stills_gives_onsets_with_the_neutral_class(tmp_path, monkeypatch):
    from vemo.config import load_config
    from vemo.data.loading.prepare import prepare
    from vemo.training import trainer

    _fake_fer(tmp_path / "fer")
    calls, changed = [], []

    def spy(seqs, labels, neutral, p, gen):
        out = with_onsets(seqs, labels, neutral, p, gen)
        calls.append((neutral, p, tuple(seqs.shape[1:])))
        changed.append(int((out != seqs).flatten(1).any(1).sum()))
        return out

    monkeypatch.setattr(trainer, "with_onsets", spy)
    cfg = load_config(None, _settings(tmp_path, 0.5))
    prepared = prepare(cfg.prepare, progress=False, log=lambda *_: None)
    trainer.train(cfg, prepared, tmp_path / "run", progress=False, log=lambda *_: None)
    assert calls and all(c == (list(prepared.labels).index("neutral"), 0.5, (6, 48, 48)) for c in calls)
    assert sum(changed) > 0  # some training sequences did start from neutral
    one_frame = load_config(None, [*_settings(tmp_path, 0.5), "prepare.frames=1"])
    prepared = prepare(one_frame.prepare, progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="at least 2 frames"):
        trainer.train(one_frame, prepared, tmp_path / "run1", progress=False, log=lambda *_: None)


def test_onset_is_refused_for_clips_and_out_of_range(tiny_synth, tmp_path):
    from vemo.config import load_config
    from vemo.data.loading.prepare import prepare
    from vemo.training import trainer

    cfg = load_config(None, ["train.onset=0.5", "train.threads=1", f"prepare.cache_dir={tmp_path / 'c'}"])
    cfg.prepare.root = str(tiny_synth)
    prepared = prepare(cfg.prepare, progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="train.onset .* stills dataset"):
        trainer.train(cfg, prepared, tmp_path / "run", progress=False, log=lambda *_: None)
    cfg.train.onset = 1.5
    with pytest.raises(ValueError, match=r"train.onset must be at least 0 and at most 1 \(got 1.5\)"):
        trainer.train(cfg, prepared, tmp_path / "run2", progress=False, log=lambda *_: None)
