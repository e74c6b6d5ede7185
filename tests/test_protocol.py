"""The FER2013 protocol: validation carved from Training (stratified, fixed), PublicTest only for test."""

import shutil
from collections import Counter

import cv2
import numpy as np

from vemo.data.sources.fer2013 import VAL_FRACTION, carve_validation, read_fer2013


def _fake_fer(root, per_class):
    for split, prefix in (("train", "Training"), ("test", "PublicTest")):
        for label, n in per_class.items():
            d = root / split / label
            d.mkdir(parents=True)
            for i in range(n if split == "train" else 3):
                cv2.imwrite(str(d / f"{prefix}_{label}{i}.jpg"), np.full((48, 48), i % 255, np.uint8))


def test_validation_is_a_stratified_tenth_of_training_and_public_test_is_test(tmp_path):
    per_class = {"angry": 40, "happy": 100, "disgust": 10}
    _fake_fer(tmp_path, per_class)
    records, skipped, _ = read_fer2013(tmp_path)
    assert not skipped
    by = Counter((r.split, r.label) for r in records)
    for label, n in per_class.items():
        assert by[("val", label)] == round(VAL_FRACTION * n)
        assert by[("train", label)] == n - round(VAL_FRACTION * n)
        assert by[("test", label)] == 3
    assert all("PublicTest" in r.source for r in records if r.split == "test")
    assert not any("PublicTest" in r.source for r in records if r.split in ("train", "val"))


def test_the_carve_is_the_same_in_any_order_and_keeps_an_existing_val_split(tmp_path):
    _fake_fer(tmp_path, {"angry": 30, "sad": 30})
    records, _, _ = read_fer2013(tmp_path)
    again = carve_validation([r.__class__(r.source, r.label, r.group, "train" if r.split == "val" else r.split)
                              for r in reversed(records)])  # fmt: skip
    assert {r.source for r in records if r.split == "val"} == {r.source for r in again if r.split == "val"}
    assert carve_validation(records) == records  # a val split exists: nothing moves


def test_a_fer2013_model_on_another_copy_of_fer2013_is_scored_on_its_test_split_only(tmp_path):
    """The shipped model trained on FER2013's Training images: evaluating it on a user's copy (another
    folder) must not score those images too, as 'all' of 'other data' would."""
    from vemo.checkpoint import load_checkpoint
    from vemo.config import PrepareConfig
    from vemo.data.loading.prepare import prepare
    from vemo.evaluation.evaluate import default_split, output_folder

    _fake_fer(tmp_path / "fer", {"angry": 10, "happy": 10})
    cfg = PrepareConfig(dataset="fer2013", root=str(tmp_path / "fer"), cache_dir=str(tmp_path / "c"), frames=10)
    prepared = prepare(cfg, progress=False, log=lambda *_: None)
    ckpt = load_checkpoint("fast")
    assert ckpt.preprocessing.root != str(tmp_path / "fer")  # trained on a copy elsewhere
    assert default_split(ckpt, prepared) == "test"
    assert output_folder(tmp_path / "run", ckpt, prepared, "test") != tmp_path / "run"  # not the run's own files


def test_a_copy_without_a_test_split_or_split_by_vemo_is_other_data_and_an_empty_split_is_named(tmp_path):
    import pytest

    from vemo.checkpoint import load_checkpoint
    from vemo.config import PrepareConfig
    from vemo.data.loading.prepare import prepare
    from vemo.evaluation.evaluate import _load, default_split
    from vemo.training.trainer import check_trainable

    ckpt, quiet = load_checkpoint("fast"), {"progress": False, "log": lambda *_: None}
    _fake_fer(tmp_path / "fer", {"angry": 10, "happy": 10})
    shutil.rmtree(tmp_path / "fer" / "test")  # Training only: there is no test split to default to
    train_only = prepare(
        PrepareConfig(dataset="fer2013", root=str(tmp_path / "fer"), cache_dir=str(tmp_path / "c")), **quiet
    )
    assert default_split(ckpt, train_only) == "all"
    with pytest.raises(ValueError, match=r"the 'test' split of .* is empty \(it holds: train 18, val 2\); choose one"):
        _load("fast", train_only, "test", lambda *_: None)

    rows = [f"{k % 2 * 3},{' '.join(['128'] * 2304)}" for k in range(40)]  # no Usage column: vemo splits
    (tmp_path / "plain.csv").write_text("emotion,pixels\n" + "\n".join(rows) + "\n")
    plain = prepare(
        PrepareConfig(dataset="fer2013", root=str(tmp_path / "plain.csv"), cache_dir=str(tmp_path / "c")), **quiet
    )
    assert not all(it["prescribed"] for it in plain.items) and default_split(ckpt, plain) == "all"

    _fake_fer(tmp_path / "only", {"angry": 3})
    shutil.rmtree(tmp_path / "only" / "train")  # PublicTest only
    test_only = prepare(
        PrepareConfig(dataset="fer2013", root=str(tmp_path / "only"), cache_dir=str(tmp_path / "c")), **quiet
    )
    with pytest.raises(ValueError, match=r"nothing to train on \(test 3\): the dataset's own split leaves train"):
        check_trainable(test_only)
