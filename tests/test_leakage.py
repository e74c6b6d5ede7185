"""Leakage guard of `prepare`: identical pixels across splits, and groups (actors) split across splits."""

import numpy as np
import pytest

import vemo.data.loading.prepare as prepare_module
from conftest import write_video
from vemo.config import PrepareConfig
from vemo.data.loading.prepare import PrepareError, prepare


def _face(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def _row(emotion: int, img: np.ndarray, usage: str) -> str:
    return f"{emotion},{' '.join(str(v) for v in img.reshape(-1))},{usage}"


def _fer_csv(path):
    """12 rows: CSV rows 2 (Training) and 6 (PublicTest) share pixels; rows 3/4 (both Training) and 7/10
    (PublicTest/PrivateTest) do too, which is no train leak. Too few Training rows per class for the
    protocol's 10% validation carve: no val split."""
    shared, twin, other = _face(100), _face(101), _face(102)
    rows = [
        _row(0, _face(1), "Training"),
        _row(3, shared, "Training"),  # row 2
        _row(4, twin, "Training"),
        _row(4, twin, "Training"),
        _row(5, _face(2), "Training"),
        _row(3, shared, "PublicTest"),  # row 6: the same image as row 2, in test
        _row(1, other, "PublicTest"),
        _row(2, _face(3), "PublicTest"),
        _row(6, _face(4), "PrivateTest"),
        _row(1, other, "PrivateTest"),  # row 10: the same as row 7 (test vs private-test: not a train leak)
        _row(0, _face(5), "PrivateTest"),
        _row(2, _face(6), "PrivateTest"),
    ]
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return path


def _fer_cfg(tmp_path, **kw):
    return PrepareConfig(dataset="fer2013", root=str(tmp_path / "fer2013.csv"), cache_dir=str(tmp_path / "c"), **kw)


def test_fer_duplicates_across_official_splits_are_reported_and_kept(tmp_path):
    csv_path = _fer_csv(tmp_path / "fer2013.csv")
    logs = []
    prepared = prepare(_fer_cfg(tmp_path), progress=False, log=logs.append)
    warnings = [line for line in logs if line.startswith("warning:")]
    assert warnings == ["warning: 1 images in test also appear in train (identical pixels); official split kept"]
    leakage = prepared.manifest["leakage"]
    assert leakage["duplicates_across_splits"] == 1 and leakage["dropped"] == 0
    assert leakage["examples"] == [{"train": f"{csv_path}#row2", "test": f"{csv_path}#row6"}]
    assert len(prepared.items) == 12 and prepared.manifest["skipped"] == []  # the official split is kept
    assert prepared.manifest["counts"]["test"] == {"disgust": 1, "fear": 1, "happy": 1}
    logs.clear()  # a run that reuses the cache is told again: it reads the copies too
    prepare(_fer_cfg(tmp_path), progress=False, log=logs.append)
    assert "warning: 1 val/test items repeat a training item's pixels (kept; prepare.dedupe=true drops them)" in logs


def test_dedupe_drops_the_non_train_copy(tmp_path):
    csv_path = _fer_csv(tmp_path / "fer2013.csv")
    kept = prepare(_fer_cfg(tmp_path), progress=False, log=lambda *_: None)
    logs = []
    prepared = prepare(_fer_cfg(tmp_path, dedupe=True), progress=False, log=logs.append)
    assert prepared.path != kept.path  # dedupe is part of the cache key
    assert "warning: 1 images in test also appear in train (identical pixels); dropped (prepare.dedupe)" in logs
    sources = [it["source"] for it in prepared.items]
    assert len(sources) == 11 and f"{csv_path}#row6" not in sources and f"{csv_path}#row2" in sources
    assert prepared.manifest["skipped"] == [
        {
            "source": f"{csv_path}#row6",
            "reason": f"identical pixels to training file {csv_path}#row2",
            "kind": "duplicate",
        }
    ]
    leakage = prepared.manifest["leakage"]
    assert leakage["duplicates_across_splits"] == 1 and leakage["dropped"] == 1
    assert prepared.manifest["counts"]["test"] == {"disgust": 1, "fear": 1}
    # the frames were compacted: row k still holds items[k]'s pixels
    frames = prepared.frames()
    assert frames.shape == (11, 1, 48, 48)
    for k, seed in ((0, 1), (6, 3), (10, 6)):  # CSV rows 1, 8 and 12 (row 6 is gone)
        assert prepared.items[k]["source"] == f"{csv_path}#row{k + 1 if k < 5 else k + 2}"
        assert np.array_equal(frames[k, 0], _face(seed))


def _crema_folder(root, same_pixels=False):
    """A `folder` dataset of CREMA-D-named clips (the actor is the group): 3 actors x 2 emotions."""
    for label, code in (("happy", "HAP"), ("sad", "SAD")):
        (root / label).mkdir(parents=True, exist_ok=True)
        for actor in (1001, 1002, 1003):
            seed = 0 if same_pixels and actor in (1001, 1003) and code == "HAP" else actor * 10 + len(code + label)
            base = np.random.default_rng(seed).integers(40, 200, (32, 32), dtype=np.uint8)
            write_video(root / label / f"{actor}_IEO_{code}_HI.mp4", [np.roll(base, i, 1) for i in range(10)])
    return root


def _folder_cfg(root, cache, **kw):
    return PrepareConfig(
        dataset="folder", root=str(root), cache_dir=str(cache), frames=10, face="center", workers=1, **kw
    )


def test_a_group_in_two_splits_is_a_bug(tmp_path, monkeypatch):
    root = _crema_folder(tmp_path / "clips")
    # vemo's own split keeps each actor on one side
    ok = prepare(_folder_cfg(root, tmp_path / "c1"), progress=False, log=lambda *_: None)
    sides = {}
    for it in ok.items:
        sides.setdefault(it["group"], set()).add(it["split"])
    assert len(sides) == 3 and all(len(s) == 1 for s in sides.values())

    def overlapping(records, *args, **kw):  # records come sorted by label: actor 1001 lands in train and test
        return ["train", "val", "test", "test", "train", "val"]

    monkeypatch.setattr(prepare_module, "assign_splits", overlapping)
    with pytest.raises(PrepareError, match=r"group.*more than one split.*'1001' in test\+train"):
        prepare(_folder_cfg(root, tmp_path / "c2"), progress=False, log=lambda *_: None)
    assert not list((tmp_path / "c2").iterdir())  # no cache (nor temporary folder) is left behind


def test_duplicate_clips_in_a_vemo_split_are_reported(tmp_path, monkeypatch):
    root = _crema_folder(tmp_path / "clips", same_pixels=True)  # 1001 and 1003 HAP: identical videos
    by_actor = {"1001": "train", "1002": "val", "1003": "test"}
    monkeypatch.setattr(prepare_module, "assign_splits", lambda records, *a, **k: [by_actor[r.group] for r in records])
    logs = []
    prepared = prepare(_folder_cfg(root, tmp_path / "c"), progress=False, log=logs.append)
    expected = (
        "warning: 1 clips in test also appear in train (identical pixels); kept (set prepare.dedupe=true to drop them)"
    )
    assert expected in logs
    assert prepared.manifest["leakage"]["examples"] == [
        {"train": str(root / "happy" / "1001_IEO_HAP_HI.mp4"), "test": str(root / "happy" / "1003_IEO_HAP_HI.mp4")}
    ]
