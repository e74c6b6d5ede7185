import json
import shutil

import numpy as np
import pytest

from vemo.config import PrepareConfig
from vemo.data.loading.prepare import PrepareError, load_prepared, prepare, process_clip


def _cfg(root, cache, **kw):
    base = dict(root=str(root), cache_dir=str(cache), frames=10, val_fraction=0.25, test_fraction=0.25, workers=1)
    base.update(kw)
    return PrepareConfig(**base)


def test_cache_round_trip_and_reuse(tiny_synth, tmp_path):
    cfg = _cfg(tiny_synth, tmp_path / "cache")
    first = prepare(cfg, progress=False, log=lambda *_: None)
    frames = first.frames()
    assert frames.shape == (24, 10, 48, 48) and frames.dtype == np.uint8
    assert isinstance(frames, np.memmap)
    # a fresh load from disk gives back exactly what was written, with its manifest
    again = load_prepared(first.path)
    assert np.array_equal(np.asarray(again.frames()), np.asarray(frames))
    assert again.manifest == json.loads((first.path / "manifest.json").read_text())
    item = again.items[0]
    assert set(item) >= {"source", "label", "group", "split", "face_detected"}
    assert {it["split"] for it in again.items} == {"train", "val", "test"}
    # actor-independent
    by_split = {s: {it["group"] for it in again.items if it["split"] == s} for s in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["val"])
    # unchanged settings: reused; a changed setting: a new cache
    logs = []
    assert prepare(cfg, progress=False, log=logs.append).path == first.path
    assert any("reusing cache" in line for line in logs)
    other = prepare(_cfg(tiny_synth, tmp_path / "cache", size=32), progress=False, log=lambda *_: None)
    assert other.path != first.path and other.frames().shape[-1] == 32
    # nothing temporary left behind
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]


def test_bad_files_are_skipped_with_reasons(tiny_synth, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(tiny_synth, root)
    video = root / "VideoFlash"
    (video / "1001_IEO_ANG_LO.flv").write_text("version https://git-lfs.github.com/spec/v1\nsize 1\n")
    (video / "1002_IEO_ANG_LO.flv").write_bytes(b"")
    (video / "1003_IEO_ANG_LO.flv").write_bytes(b"\x00junk" * 100)
    (video / "1004_IEO_XXX_LO.flv").write_bytes((video / "1004_IEO_ANG_HI.flv").read_bytes())
    logs = []
    prepared = prepare(_cfg(root, tmp_path / "cache"), progress=False, log=logs.append)
    assert len(prepared.items) == 24
    kinds = {s["source"].rsplit("/", 1)[-1]: s["kind"] for s in prepared.manifest["skipped"]}
    assert kinds == {
        "1001_IEO_ANG_LO.flv": "lfs-pointer",
        "1002_IEO_ANG_LO.flv": "empty",
        "1003_IEO_ANG_LO.flv": "corrupt",
        "1004_IEO_XXX_LO.flv": "bad-name",
    }
    assert any(line.startswith("prepared 24, skipped 4:") for line in logs)
    # with holes from skipped files, row k of the frames still belongs to items[k]
    frames = prepared.frames()
    for k in (0, 7, 23):
        clip, _ = process_clip(prepared.items[k]["source"], _cfg(root, tmp_path / "cache"))
        assert np.array_equal(clip, frames[k])


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "VideoFlash" / "1001_IEO_ANG_HI.flv").write_bytes(b"")
    with pytest.raises(PrepareError, match="no usable|no clip"):
        prepare(_cfg(tmp_path, tmp_path / "cache"), progress=False, log=lambda *_: None)
    with pytest.raises(FileNotFoundError):
        prepare(_cfg(tmp_path / "missing", tmp_path / "cache"), progress=False, log=lambda *_: None)
