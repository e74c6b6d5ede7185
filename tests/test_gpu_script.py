"""scripts/gpu_fer2013.py: what travels to a lent GPU comes back out as the same pixels and manifest, what
comes back joins into the file that was sent, and the time plan is arithmetic that can be checked here.
(Its `run` needs a GPU lease; it was rehearsed on the CPU with `--set train.device=cpu`, see README.)"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_fer2013", REPO / "scripts" / "gpu_fer2013.py")
gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)


def _cache(tmp_path: Path, sizes=None) -> Path:
    """A prepared-cache look-alike of 9 JPEG stills: 4 train, 2 val, 3 test."""
    rng = np.random.default_rng(0)
    splits = ["train"] * 4 + ["val"] * 2 + ["test"] * 3
    items, frames = [], []
    for i, split in enumerate(splits):
        side = (sizes or {}).get(i, 48)
        image = (rng.random((side, side)) * 255).astype(np.uint8)
        path = tmp_path / "images" / f"{split}_{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        frames.append(cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)[:48, :48])
        items.append({"source": str(path), "label": "happy", "split": split})
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "frames.npy", np.stack(frames)[:, None])
    counts = {s: {"happy": splits.count(s)} for s in ("train", "val", "test")}
    (cache / "manifest.json").write_text(json.dumps({"kind": "stills", "items": items, "counts": counts}))
    return cache


def test_pack_then_unpack_gives_the_train_and_val_pixels_and_leaves_test_behind(tmp_path):
    cache = _cache(tmp_path)
    gpu.pack(cache, tmp_path / "gpu", parts=2, root=None)
    assert sorted(p.name for p in (tmp_path / "gpu").glob("part*/*")) == ["fer2013.pack.00", "fer2013.pack.01"]
    log = gpu.Log(tmp_path / "log.txt")
    facts = gpu.unpack([tmp_path / "gpu" / "part2", tmp_path / "gpu" / "part1"], tmp_path / "rebuilt", log)
    assert facts == {"images": 6, "parts": ["fer2013.pack.00", "fer2013.pack.01"], "pixels_match": True}
    want = np.load(cache / "frames.npy")[:6]
    assert np.array_equal(np.load(tmp_path / "rebuilt" / "frames.npy"), want)
    manifest = json.loads((tmp_path / "rebuilt" / "manifest.json").read_text())
    assert [item["split"] for item in manifest["items"]] == ["train"] * 4 + ["val"] * 2
    assert set(manifest["counts"]) == {"train", "val"}


def test_pack_refuses_an_image_whose_header_differs(tmp_path):
    cache = _cache(tmp_path, sizes={3: 64})  # another size: another start-of-frame segment
    with pytest.raises(SystemExit, match="train_3.jpg: its JPEG header differs"):
        gpu.pack(cache, tmp_path / "gpu", parts=1, root=None)


def test_fetch_joins_the_parts_and_refuses_a_damaged_one(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    blob = bytes(range(256)) * 1000
    (src / "member0.pt.0").write_bytes(blob[:100_000])
    (src / "member0.pt.1").write_bytes(blob[100_000:])
    member = {"from": "onset0/best.pt", "sha256": hashlib.sha256(blob).hexdigest()}
    plan = {"members": {"member0": dict(member, parts=["member0.pt.0", "member0.pt.1"])}}
    (src / "plan.json").write_text(json.dumps(plan))
    gpu.fetch(src, tmp_path / "out")
    assert (tmp_path / "out" / "member0" / "best.pt").read_bytes() == blob
    (src / "member0.pt.1").write_bytes(blob[100_001:])
    with pytest.raises(SystemExit, match="SHA-256 differs"):
        gpu.fetch(src, tmp_path / "out2")


def test_plan_epochs_fits_the_time_left_and_the_ceiling():
    # 300 s left; a main run and an onset run each cost 20 s (start, 1st epoch) + 10 s (tail): 240 s
    # for further epochs of 2 s (+5 %): 114 of them, plus the first
    assert gpu.plan_epochs(epoch=2.0, first=20.0, tail=10.0, left=300.0, ceiling=300) == 115
    assert gpu.plan_epochs(epoch=0.1, first=20.0, tail=10.0, left=300.0, ceiling=300) == 300
    assert gpu.plan_epochs(epoch=2.0, first=20.0, tail=10.0, left=59.0, ceiling=300) == 0  # not even the runs


def test_stills_training_imports_without_pyav_and_a_video_then_stops_in_one_line(tmp_path):
    # a lent GPU machine has PyTorch but no PyAV: a FER2013 run must not need it, and a video there is
    # refused once, naming the package, rather than skipped file by file as "unexpected error"
    (tmp_path / "data" / "happy").mkdir(parents=True)
    (tmp_path / "data" / "happy" / "clip.mp4").write_bytes(b"not decoded")
    code = (
        "import sys; sys.modules['av'] = None\n"
        "import vemo.cli, vemo.pipeline\n"
        "from vemo.provenance import environment\n"
        "assert environment()['av'] is None\n"
        f"sys.exit(vemo.cli.main(['prepare', '--dataset', 'folder', '--root', {str(tmp_path / 'data')!r}, '--quiet',"
        f" '--set', 'prepare.cache_dir={tmp_path / 'cache'}']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    want = "vemo prepare: error: decoding video needs PyAV (`pip install av`), which is not installed"
    assert done.stderr.strip() == want
