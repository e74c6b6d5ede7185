"""`vemo predict`: windows over a long video, no-face gaps reported, outputs written, bad files skipped."""

import json

import numpy as np
import pytest
import torch

from conftest import write_video
from vemo.config import Config
from vemo.data.synth import render_clip
from vemo.models.registry import build_model
from vemo.predict.cli_support import run_predict
from vemo.predict.run import NO_FACE, Predictor, predict_frames
from vemo.predict.stream import video_frames
from vemo.training.checkpoint import atomic_save


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained small model saved like a real checkpoint (the plumbing, not accuracy, is tested)."""
    cfg = Config()
    cfg.prepare.frames = 10
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = 8, 32, 16, 24
    torch.manual_seed(0)
    model = build_model(cfg.model, 6, 48)
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    atomic_save(
        {"model": model.state_dict(), "config": cfg.to_dict(), "labels": labels, "stats": {"mean": 0.5, "std": 0.25}},
        path,
    )
    return path


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """~26 s at 15 fps: 12 synthetic clips (a face), then 4 s of an empty wall (no face)."""
    cfg = Config().synth
    frames = []
    for k, emotion in enumerate(["HAP", "SAD", "ANG", "NEU"] * 3):
        frames += [f for f in render_clip(cfg, 1001 + k % 3, "IEO", emotion, "HI")]
    wall = np.full_like(frames[0], 90)
    frames += [wall] * 60
    return write_video(tmp_path_factory.mktemp("video") / "long.mp4", frames, fps=15)


def test_windows_cover_the_video_and_no_face_is_reported(checkpoint, long_video):
    predictor = Predictor(checkpoint)
    rows = predict_frames(video_frames(long_video), predictor, window_s=2.0, hop_s=0.5)
    duration = 12 * 2.0 + 4.0
    assert abs(len(rows) - ((duration - 2.0) / 0.5 + 1)) <= 3  # one row per hop (one face)
    starts = [r["start"] for r in rows]
    assert starts == sorted(starts) and rows[-1]["end"] > duration - 1.0
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) > 0.7 * 40  # the face is found in most windows of the 24 s with a face
    tail = [r for r in rows if r["start"] >= 24.5]
    assert tail and all(r["label"] == NO_FACE and r["confidence"] is None for r in tail)
    for r in ok:
        p = np.array([r[f"p_{lab}"] for lab in predictor.labels])
        s = np.array([r[f"smoothed_{lab}"] for lab in predictor.labels])
        assert abs(p.sum() - 1) < 1e-3 and abs(s.sum() - 1) < 1e-3 and r["label"] == predictor.labels[s.argmax()]


def test_run_predict_writes_outputs_and_skips_bad_files(checkpoint, long_video, tmp_path):
    bad = tmp_path / "clips" / "lfs.mp4"
    bad.parent.mkdir()
    bad.write_text("version https://git-lfs.github.com/spec/v1\nsize 3\n")
    (tmp_path / "clips" / "long.mp4").write_bytes(long_video.read_bytes())
    (tmp_path / "clips" / "junk.mp4").write_bytes(b"\x00\x01junk" * 300)
    logs = []
    results = run_predict(
        [str(tmp_path / "clips")],
        str(checkpoint),
        str(tmp_path / "out"),
        annotate=str(tmp_path / "ann"),
        progress=False,
        log=logs.append,
    )
    assert len(results) == 1 and any("skipped" in line and "git lfs pull" in line for line in logs)
    assert any("skipped" in line and "junk.mp4" in line and "corrupt" in line for line in logs)
    data = json.loads((tmp_path / "out" / "long.json").read_text())
    assert data["windows"] and data["frames_decoded"] == 12 * 30 + 60
    header = (tmp_path / "out" / "long.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["face", "start", "end", "status", "label"] and "smoothed_sad" in header
    assert (tmp_path / "out" / "long.png").stat().st_size > 1000
    frames = list(video_frames(tmp_path / "ann" / "long.mp4"))
    assert len(frames) == 12 * 30 + 60


def test_output_names_stay_unique():
    from pathlib import Path

    from vemo.predict.cli_support import unique_names

    assert unique_names([Path("happy/01.mp4"), Path("sad/01.mp4"), Path("x/02.mp4")]) == ["01", "01-2", "02"]
