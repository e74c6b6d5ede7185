"""Dataset readers (FER2013 csv and folders, folder of clips) and the bad input each must survive."""

import cv2
import numpy as np
import pytest

from conftest import write_video
from vemo.config import PrepareConfig
from vemo.data.loading.loader import load_split
from vemo.data.loading.prepare import PrepareError, prepare
from vemo.data.preprocessing.stills import to_sequences
from vemo.data.sources.fer2013 import read_fer2013
from vemo.data.sources.folder import read_folder

QUIET = dict(progress=False, log=lambda *_: None)


def _face(seed: int, side: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)


def _pixels(img: np.ndarray) -> str:
    return " ".join(str(v) for v in img.reshape(-1))


def write_fer_csv(path, n_per_usage=3, bad_rows=()):
    lines = ["emotion,pixels,Usage"]
    k = 0
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for _ in range(n_per_usage):
            lines.append(f"{(k % 7)},{_pixels(_face(k))},{usage}")
            k += 1
    lines += list(bad_rows)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fer_csv_usage_splits_and_bad_rows(tmp_path):
    px = _pixels(_face(99))
    bad = [f"9,{px},Training", "3,1 2 3,Training", f"x,{px},Training", f"2,{px},Validation", f"4,{px},", f"4,{px}"]
    csv_path = write_fer_csv(tmp_path / "fer2013.csv", bad_rows=bad)
    records, skipped, labels = read_fer2013(tmp_path)
    assert labels == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert [r.split for r in records] == ["train"] * 3 + ["test"] * 3 + ["private-test"] * 3
    # CSV codes 0..6 are angry disgust fear happy sad surprise neutral
    assert [r.label for r in records[:7]] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    reasons = [s.reason for s in skipped]
    assert len(skipped) == 6 and all(s.kind == "bad-row" for s in skipped)
    assert "row 10" in reasons[0] and "bad emotion label '9'" in reasons[0]
    assert "3 pixel values" in reasons[1]
    assert "unknown Usage 'Validation'" in reasons[3]
    assert all("no Usage value" in r for r in reasons[4:])  # the header has a Usage column: the split is lost
    prepared = prepare(PrepareConfig(dataset="fer2013", root=str(csv_path), cache_dir=str(tmp_path / "c")), **QUIET)
    assert prepared.kind == "stills" and prepared.frames().shape == (9, 1, 48, 48)
    assert np.array_equal(prepared.frames()[4, 0], _face(4))  # pixels land where they belong
    assert len(prepared.manifest["skipped"]) == 6

    (tmp_path / "plain").mkdir()  # no Usage column at all: every row is kept, and vemo splits them itself
    (tmp_path / "plain" / "fer2013.csv").write_text(f"emotion,pixels\n3,{px}\n4,{px},\n")
    records, skipped, _ = read_fer2013(tmp_path / "plain")
    assert [r.split for r in records] == [None, None] and not skipped


def test_fer_csv_that_is_a_pointer_or_empty_is_named_and_a_spreadsheet_bom_is_read(tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 301072766\n")
    with pytest.raises(ValueError, match=r"fer2013\.csv: Git LFS pointer file .* not the CSV"):
        read_fer2013(tmp_path)
    csv_path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"fer2013\.csv: empty file"):
        read_fer2013(tmp_path)
    write_fer_csv(csv_path)
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())  # saved by a spreadsheet
    records, skipped, _ = read_fer2013(tmp_path)
    assert len(records) == 9 and not skipped


def test_only_a_csv_source_ending_in_row_digits_is_a_csv_row():
    from vemo.data.sources.fer2013 import csv_row

    assert csv_row("data/fer2013.csv#row12") == ("data/fer2013.csv", 12)
    assert csv_row("faces/x#row1.jpg") == ("faces/x#row1.jpg", None)  # an image named so is a file
    assert csv_row("data/fer2013.csv#rowX") == ("data/fer2013.csv#rowX", None)


def test_hidden_and_tool_folders_are_no_dataset_folders(tmp_path):
    _write_fer_folders(tmp_path / "fer", [("train/happy/Training_1.jpg", 1), ("test/sad/PublicTest_2.jpg", 2)])
    (tmp_path / "fer" / "__MACOSX" / "train").mkdir(parents=True)  # left by unzipping on a Mac
    (tmp_path / "fer" / "train" / ".ipynb_checkpoints").mkdir()
    records, skipped, _ = read_fer2013(tmp_path / "fer")  # still the train/ test/ layout
    assert {(r.label, r.split) for r in records} == {("happy", "train"), ("sad", "test")} and not skipped
    root = tmp_path / "clips"
    (root / "happy").mkdir(parents=True)
    write_video(root / "happy" / "v.mp4", _clip(seed=0))
    (root / ".ipynb_checkpoints").mkdir()
    (root / "happy" / ".DS_Store").write_bytes(b"\0")
    (root / "loose.mp4").write_bytes(b"\0")
    records, skipped, labels = read_folder(root)
    assert labels == ("happy",) and len(records) == 1
    assert [(s.source.rsplit("/", 1)[-1], s.kind, s.reason) for s in skipped] == [
        ("loose.mp4", "no-label", "not inside a <label>/ folder")
    ]


def _write_fer_folders(root, layout):
    for rel, seed in layout:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _face(seed))


def test_fer_folders_prefix_decides_split_and_single_folder_is_test(tmp_path):
    _write_fer_folders(
        tmp_path / "fer",
        [
            ("train/happy/Training_1.jpg", 1),
            ("train/sad/Training_2.jpg", 2),
            ("train/Anger/img3.jpg", 3),  # no prefix: the folder decides; synonym maps to angry
            ("test/happy/PublicTest_4.jpg", 4),
            ("test/sad/PrivateTest_5.jpg", 5),
            ("test/sad/plain_6.png", 6),
            ("test/contempt/PublicTest_7.jpg", 7),  # not a FER2013 class
        ],
    )
    (tmp_path / "fer" / "test" / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    records, skipped, _ = read_fer2013(tmp_path / "fer")
    got = {r.source.split("fer/")[1]: (r.label, r.split) for r in records}
    assert got["train/Anger/img3.jpg"] == ("angry", "train")
    assert got["test/happy/PublicTest_4.jpg"] == ("happy", "test")
    assert got["test/sad/PrivateTest_5.jpg"] == ("sad", "private-test")
    assert got["test/sad/plain_6.png"] == ("sad", "test")
    assert [s.kind for s in skipped] == ["unknown-label"]
    cfg = PrepareConfig(dataset="fer2013", root=str(tmp_path / "fer"), cache_dir=str(tmp_path / "c"))
    prepared = prepare(cfg, **QUIET)
    kinds = {s["source"].rsplit("/", 1)[-1]: s["kind"] for s in prepared.manifest["skipped"]}
    assert kinds == {"PublicTest_7.jpg": "unknown-label", "broken.jpg": "unreadable"}
    # a single folder of classes (a test folder alone): "test", unless a Usage prefix says otherwise
    records, _, _ = read_fer2013(tmp_path / "fer" / "test")
    assert {r.source.rsplit("/", 1)[-1]: r.split for r in records} == {
        "PublicTest_4.jpg": "test",
        "PrivateTest_5.jpg": "private-test",
        "plain_6.png": "test",
        "broken.jpg": "test",  # read as a record, skipped when it fails to decode (above)
    }


def test_still_sequences_are_deterministic_for_evaluation_and_fresh_for_training(tmp_path):
    import torch

    stills = torch.from_numpy(np.stack([_face(i)[None] for i in range(5)]))
    a, b = to_sequences(stills, 12), to_sequences(stills, 12, chunk=2)
    assert a.shape == (5, 12, 48, 48) and a.dtype == torch.uint8
    assert torch.equal(a, b)  # fixed protocol, whatever the batching
    fresh = to_sequences(stills, 12, torch.Generator().manual_seed(1))
    assert not torch.equal(a, fresh)
    # motion is smooth: consecutive frames differ less than first and last
    step = (a[:, 1:].float() - a[:, :-1].float()).abs().mean()
    span = (a[:, -1].float() - a[:, 0].float()).abs().mean()
    assert 0 < step < span
    # the prepared stills become T-frame sequences when loaded for evaluation
    write_fer_csv(tmp_path / "fer2013.csv")
    prepared = prepare(
        PrepareConfig(dataset="fer2013", root=str(tmp_path), frames=12, cache_dir=str(tmp_path / "c")), **QUIET
    )
    x, y = load_split(prepared, "test")
    assert x.shape == (3, 12, 48, 48) and len(y) == 3
    assert load_split(prepared, "test", expand=False)[0].shape == (3, 1, 48, 48)


def _clip(n=12, side=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (side, side), dtype=np.uint8)
    return [np.roll(base, i, axis=1) for i in range(n)]


def test_folder_of_clips_videos_and_frame_folders(tmp_path):
    root = tmp_path / "clips"
    for label, seed in (("happy", 0), ("Sadness", 1), ("angry", 2)):
        (root / label).mkdir(parents=True)
        write_video(root / label / f"v{seed}.mp4", _clip(seed=seed))
        frames_dir = root / label / f"frames{seed}"
        frames_dir.mkdir()
        for i, f in enumerate(_clip(n=6, seed=seed + 10)):  # 6 frames < T=10: padded
            cv2.imwrite(str(frames_dir / f"{i:03d}.png"), f)
    (root / "happy" / "notes.txt").write_text("hello")
    (root / "happy" / "empty_dir").mkdir()
    one = root / "angry" / "single"
    one.mkdir()
    cv2.imwrite(str(one / "0.png"), _clip()[0])
    records, skipped, labels = read_folder(root)
    assert labels == ("angry", "happy", "sad")
    assert len(records) == 7
    assert {s.kind for s in skipped} == {"not-video", "empty"}
    cfg = PrepareConfig(
        dataset="folder", root=str(root), frames=10, face="center", cache_dir=str(tmp_path / "c"), workers=1
    )
    logs = []
    prepared = prepare(cfg, progress=False, log=logs.append)
    assert prepared.frames().shape == (6, 10, 48, 48)
    padded = [it for it in prepared.items if it["padded"]]
    assert len(padded) == 3 and all(it["n_frames"] == 6 for it in padded)
    kinds = {s["source"].rsplit("/", 1)[-1]: s["kind"] for s in prepared.manifest["skipped"]}
    assert kinds == {"notes.txt": "not-video", "empty_dir": "empty", "single": "too-short"}
    assert any("shorter than T=10" in line for line in logs)


def test_bad_videos_each_get_a_reason(tmp_path):
    root = tmp_path / "bad"
    (root / "happy").mkdir(parents=True)
    good = write_video(root / "happy" / "good.mp4", _clip(n=20))
    write_video(root / "happy" / "one_frame.mp4", _clip(n=1))
    data = good.read_bytes()
    (root / "happy" / "truncated.mp4").write_bytes(data[: len(data) // 8])
    (root / "happy" / "empty.mp4").write_bytes(b"")
    (root / "happy" / "lfs.mp4").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    (root / "happy" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    cfg = PrepareConfig(
        dataset="folder", root=str(root), frames=10, face="center", cache_dir=str(tmp_path / "c"), workers=1
    )
    prepared = prepare(cfg, **QUIET)
    reasons = {s["source"].rsplit("/", 1)[-1]: (s["kind"], s["reason"]) for s in prepared.manifest["skipped"]}
    assert [it["source"].rsplit("/", 1)[-1] for it in prepared.items] == ["good.mp4"]
    assert reasons["lfs.mp4"][0] == "lfs-pointer" and "git lfs pull" in reasons["lfs.mp4"][1]
    assert reasons["empty.mp4"][0] == "empty"
    assert reasons["one_frame.mp4"][0] == "too-short"
    assert reasons["truncated.mp4"][0] in ("corrupt", "too-short")
    assert reasons["random.mp4"][0] == "corrupt"


def test_no_face_and_empty_folder(tmp_path):
    root = tmp_path / "noface"
    (root / "sad").mkdir(parents=True)
    write_video(root / "sad" / "wall.mp4", [np.full((64, 64), 128, np.uint8)] * 12)
    cfg = PrepareConfig(dataset="folder", root=str(root), frames=10, cache_dir=str(tmp_path / "c"), workers=1)
    logs = []
    prepared = prepare(cfg, progress=False, log=logs.append)  # haar finds nothing: centre-crop fallback, recorded
    assert prepared.items[0]["face_detected"] is False
    assert f"  no face found in {root / 'sad' / 'wall.mp4'}: centre crop used" in logs  # named, not only counted
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"no usable folder files found \(expected ROOT/<label>/<clip>\.mp4"):
        prepare(PrepareConfig(dataset="folder", root=str(tmp_path / "empty"), cache_dir=str(tmp_path / "c")), **QUIET)
