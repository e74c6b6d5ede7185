"""`vemo predict`: windows over a long video, no-face gaps reported, outputs written, bad files skipped,
inputs never overwritten, unique output names, readable annotated video from frame 0, real reasons."""

import csv
import json
import os

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vemo
from conftest import write_video
from vemo.checkpoint import atomic_save
from vemo.cli import main
from vemo.config import Config
from vemo.data.preprocessing.face import detect_all
from vemo.data.sources.video import ClipError
from vemo.data.synth.render import render_clip
from vemo.models.registry import model_from_config
from vemo.predict.annotate import COLORS
from vemo.predict.cli_support import run_predict, unique_names
from vemo.predict.run import DIGITS, NO_FACE, Predictor, predict_frames
from vemo.predict.stream import video_frames

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad"]


def save_tiny_checkpoint(path, labels=LABELS, temperature=None):
    """An untrained small model saved like a real checkpoint (the plumbing, not accuracy, is tested)."""
    cfg = Config()
    cfg.prepare.frames = 10
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = 8, 32, 16, 24
    torch.manual_seed(0)
    model = model_from_config(cfg.model, len(labels), 48)
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": labels, "stats": {"mean": 0.5, "std": 0.25}}
    if temperature is not None:
        ckpt["calibration"] = {"temperature": temperature}
    atomic_save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


def face_frames(n_clips: int = 1) -> list[np.ndarray]:
    """RGB frames of synthetic talking faces, 2 s (30 frames at 15 fps) per clip."""
    cfg = Config().synth
    frames = []
    for k, emotion in enumerate(["HAP", "SAD", "ANG", "NEU"] * 3):
        if k < n_clips:
            frames += list(render_clip(cfg, 1001 + k % 3, "IEO", emotion, "HI"))
    return frames


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """~26 s at 15 fps: 12 synthetic clips (a face), then 4 s of an empty wall (no face)."""
    frames = face_frames(12)
    frames += [np.full_like(frames[0], 90)] * 60
    return write_video(tmp_path_factory.mktemp("video") / "long.mp4", frames, fps=15)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    """One 2-second synthetic clip at 15 fps."""
    return write_video(tmp_path_factory.mktemp("short") / "short.mp4", face_frames(1), fps=15)


def test_windows_cover_the_video_and_no_face_is_reported(checkpoint, long_video):
    predictor = Predictor(checkpoint)
    rows = predict_frames(video_frames(long_video), predictor, window_s=2.0, hop_s=0.5)
    duration = 12 * 2.0 + 4.0
    assert abs(len(rows) - ((duration - 2.0) / 0.5 + 1)) <= 3  # one row per hop (one face)
    starts = [r["start"] for r in rows]
    assert starts == sorted(starts) and rows[-1]["end"] > duration - 1.0
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) > 0.7 * 40  # the face is found in most windows of the 24 s with a face
    assert all(r["w"] > 20 and r["h"] > 20 for r in ok)  # the face box comes with every row
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
    with open(tmp_path / "out" / "long.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:6] == ["source", "face", "start", "end", "label", "confidence"] and "smoothed_sad" in header
    assert {"x", "y", "w", "h"} <= set(header)
    assert (tmp_path / "out" / "long.png").stat().st_size > 1000
    frames = list(video_frames(tmp_path / "ann" / "long.mp4"))
    assert len(frames) == 12 * 30 + 60


def test_combined_table_has_a_source_column_and_survives_commas_and_quotes(tmp_path, short_video):
    """Several inputs give one table; a label with a comma and a quote stays one CSV field."""
    labels = ["angry", 'happy, "very"', "fear", "neutral", "sad", "surprise"]
    ckpt = save_tiny_checkpoint(tmp_path / "odd.pt", labels)
    for name in ("a", "b"):
        (tmp_path / "in" / name).mkdir(parents=True)
        (tmp_path / "in" / name / "clip.mp4").write_bytes(short_video.read_bytes())
    run_predict([str(tmp_path / "in")], str(ckpt), str(tmp_path / "out"), progress=False, log=lambda _: None)
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source"] for r in rows} == {str(tmp_path / "in" / n / "clip.mp4") for n in ("a", "b")}
    assert 'p_happy, "very"' in rows[0] and all(len(r) == len(rows[0]) for r in rows)
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(rows) and json.loads(lines[0])["source"] == rows[0]["source"]
    assert sorted(p.name for p in (tmp_path / "out").glob("clip*.csv")) == ["clip-2.csv", "clip.csv"]


def test_workers_give_the_same_table(checkpoint, short_video, tmp_path, monkeypatch):
    from vemo.predict import cli_support

    pools = []
    real_pool = cli_support.ProcessPoolExecutor

    def counted_pool(workers, *args, **kwargs):
        pools.append(workers)
        return real_pool(workers, *args, **kwargs)

    monkeypatch.setattr(cli_support, "ProcessPoolExecutor", counted_pool)
    inputs = []
    for k in range(3):
        inputs.append(tmp_path / f"v{k}.mp4")
        inputs[-1].write_bytes(short_video.read_bytes())
    for workers in (1, 2):
        run_predict([str(p) for p in inputs], str(checkpoint), str(tmp_path / f"w{workers}"), progress=False,
                    log=lambda _: None, workers=workers)  # fmt: skip
    assert pools == [2]  # workers=1 ran here, workers=2 in a pool of two processes
    one, two = (_read_table(tmp_path / f"w{w}" / "predictions.csv") for w in (1, 2))
    assert {r["source"] for r in one} == {str(p) for p in inputs}  # every input has rows
    assert [list(r) for r in one] == [list(r) for r in two]  # as many rows, the same columns
    for a, b in zip(one, two, strict=True):
        # the pool's processes run with fewer threads each, so sums may differ in the last place: the
        # probabilities are compared to their rounding (DIGITS), everything else exactly
        close = {k for k in a if k == "confidence" or k.startswith(("p_", "smoothed_"))}
        assert {k: a[k] for k in a if k not in close} == {k: b[k] for k in b if k not in close}
        assert all(a[k] == b[k] or (a[k] and b[k] and abs(float(a[k]) - float(b[k])) <= 2 * 10**-DIGITS) for k in close)


def _read_table(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_truncated_video_keeps_what_decoded_and_says_so(checkpoint, tmp_path):
    """A partial copy (60 frames declared, 13 decode) is predicted with a warning naming the file and the
    cut; one cut so early that no window can be made is skipped for being truncated, not "too short"."""
    data = write_video(tmp_path / "whole.flv", face_frames(2), fps=15, codec="flv").read_bytes()
    (tmp_path / "part.flv").write_bytes(data[: int(len(data) * 0.6)])
    (tmp_path / "stub.flv").write_bytes(data[: int(len(data) * 0.04)])
    logs: list[str] = []
    inputs = [str(tmp_path / n) for n in ("part.flv", "stub.flv")]
    run_predict(inputs, str(checkpoint), str(tmp_path / "out"), progress=False, log=logs.append)
    cut = "truncated: 13 of the 60 frames it declares decode (the file ends early)"
    assert f"warning: {inputs[0]}: {cut}; copy it again (its windows cover only the frames that decoded)" in logs
    assert json.loads((tmp_path / "out" / "part.json").read_text())["truncated"].startswith(cut)
    assert any(line.startswith(f"skipped {inputs[1]}: truncated: 1 of the 60 frames") for line in logs)
    df = vemo.predict(inputs[0], checkpoint)
    assert len(df) > 0 and df.attrs["truncated"][0][0] == inputs[0]


def test_a_non_video_given_by_name_is_called_so_and_leaves_no_output_folder(checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("a shopping list\n")
    with pytest.raises(ClipError, match=r"notes.txt: a .txt file, not a video or image vemo reads \(read as a video"):
        run_predict([str(tmp_path / "notes.txt")], str(checkpoint), str(tmp_path / "out"), progress=False,
                    log=lambda _: None)  # fmt: skip
    assert not (tmp_path / "out").exists()  # made to check it was writable, removed when nothing came of it


def test_output_names_stay_unique():
    from pathlib import Path

    paths = [Path("happy/01.flv"), Path("sad/01.flv"), Path("x/01-2.flv")]
    names = unique_names(paths)
    assert len(set(names)) == 3 and names[2] == "01-2"  # a file's own stem is kept when it can be
    assert unique_names([Path("predictions.mp4")]) == ["predictions-2"]  # the combined table's name is taken


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["01", "01-2", "01-3", "A", "a", "a-2", "predictions", "x-2-2"]), max_size=8))
def test_output_names_are_unique_for_any_inputs(stems):
    from pathlib import Path

    names = unique_names([Path(f"d{k}") / f"{s}.mp4" for k, s in enumerate(stems)])
    assert len({n.lower() for n in names}) == len(names) and "predictions" not in {n.lower() for n in names}


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink", "csv"])
def test_an_output_over_an_input_is_refused(checkpoint, short_video, tmp_path, monkeypatch, how):
    video = tmp_path / "in.mp4"
    video.write_bytes(short_video.read_bytes())
    before = video.read_bytes()
    monkeypatch.chdir(tmp_path)
    target = {"same": str(video), "relative": "./sub/../in.mp4", "symlink": "link.mp4", "hardlink": "hard.mp4"}
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        os.symlink(video, tmp_path / "link.mp4")
    if how == "hardlink":
        os.link(video, tmp_path / "hard.mp4")
    if how == "csv":  # `--out` next to the input: in.csv would be fine, but not an input named in.csv
        args = ["predict", str(video), str(tmp_path / "in.csv"), "--out", str(tmp_path)]
        (tmp_path / "in.csv").write_text("not a video")
        before_csv = (tmp_path / "in.csv").read_text()
    else:
        args = ["predict", str(video), "--annotate", target[how], "--out", str(tmp_path / "out")]
    assert main([*args, "--checkpoint", str(checkpoint), "--quiet"]) == 2
    assert video.read_bytes() == before
    if how == "csv":
        assert (tmp_path / "in.csv").read_text() == before_csv


def test_a_batch_goes_on_past_an_unexpected_failure_and_names_it(checkpoint, short_video, tmp_path, monkeypatch):
    """An error no check foresaw (a decoder's, a detector's) on one input skips it with its type and
    message; the others are predicted and the combined table is written."""
    import shutil

    from vemo.predict import cli_support

    real = cli_support.predict_item

    def flaky(item, *args, **kwargs):
        if item.path.name == "odd.mp4":
            raise RuntimeError("decoder fell over")
        return real(item, *args, **kwargs)

    shutil.copy(short_video, tmp_path / "odd.mp4")
    monkeypatch.setattr(cli_support, "predict_item", flaky)
    lines = []
    done = run_predict([str(short_video), str(tmp_path / "odd.mp4")], str(checkpoint), str(tmp_path / "out"),
                       progress=False, log=lines.append)  # fmt: skip
    assert [r["source"] for r in done] == [str(short_video)]
    assert f"skipped {tmp_path / 'odd.mp4'}: unexpected error: RuntimeError: decoder fell over" in lines
    with (tmp_path / "out" / "predictions.csv").open() as fh:
        assert {row["source"] for row in csv.DictReader(fh)} == {str(short_video)}


def test_predict_refuses_an_output_folder_it_cannot_write_before_reading_any_input(checkpoint, short_video, tmp_path):
    from vemo.io import OutputError

    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(OutputError, match="taken: exists and is not a folder"):  # not the missing input's error
        run_predict(
            [str(tmp_path / "missing.mp4")], str(checkpoint), str(tmp_path / "taken"), progress=False, log=print
        )


def test_annotated_video_has_a_box_and_label_from_frame_0(checkpoint, short_video, tmp_path):
    run_predict([str(short_video)], str(checkpoint), str(tmp_path / "out"), annotate=str(tmp_path / "a.mp4"),
                progress=False, log=lambda _: None)  # fmt: skip
    original = next(video_frames(short_video, want_rgb=True))
    annotated = next(video_frames(tmp_path / "a.mp4", want_rgb=True))
    x, y, w, h = (int(round(v)) for v in detect_all(original.gray)[0])
    edge = annotated.rgb[y + 1, x + 4 : x + w - 4].astype(int)  # the box's top edge, in the first colour
    assert np.abs(edge - COLORS[0]).max(axis=1).mean() < 60
    band = annotated.rgb[max(0, y - 20) : y - 4, x + 2 : x + 20]  # the label's dark band, whatever is behind it
    assert np.median(band) < 60 < np.median(original.rgb[max(0, y - 20) : y - 4, x + 2 : x + 20])


def test_annotate_with_several_inputs_needs_a_folder(checkpoint, short_video, tmp_path):
    with pytest.raises(ValueError, match="give a folder"):
        run_predict([str(short_video), str(short_video.parent)], str(checkpoint), str(tmp_path / "o"),
                    annotate=str(tmp_path / "a.mp4"), progress=False)  # fmt: skip


def _write(path, frames, fps=15):
    return write_video(path, frames, fps=fps) if frames else _empty_video(path)


def _empty_video(path):
    """A valid AVI with a video stream and no frame (MP4 drops a stream that has no packets)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.height, stream.width, stream.pix_fmt = 120, 160, "yuv420p"
        container.start_encoding()
    return path


@pytest.mark.parametrize(("n", "reason"), [(0, "no frames could be decoded"), (1, "too short: 1 frame")])
def test_unusable_videos_give_the_real_reason_and_exit_2(checkpoint, tmp_path, capsys, n, reason):
    video = _write(tmp_path / "v.avi", face_frames(1)[:n])
    with pytest.raises(ClipError, match=reason):
        run_predict([str(video)], str(checkpoint), str(tmp_path / "o"), progress=False, log=lambda _: None)
    assert main(["predict", str(video), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert reason in err and "v.avi" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "v.csv").exists()


def test_a_video_shorter_than_a_window_is_classified_and_one_without_a_face_exits_2(checkpoint, tmp_path):
    short = _write(tmp_path / "short.mp4", face_frames(1)[:8])  # 0.5 s: 3 sampled frames
    results = run_predict([str(short)], str(checkpoint), str(tmp_path / "o"), progress=False, log=lambda _: None)
    assert [r["status"] for r in results[0]["records"]] == ["ok"]
    wall = _write(tmp_path / "wall.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 45)
    assert main(["predict", str(wall), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert (tmp_path / "o2" / "wall.csv").exists()  # the no-face windows are still written, and said


@pytest.mark.parametrize("bad", [["--window", "0"], ["--hop", "-1"], ["--window", "nan"], ["--device", "tpu"]])
def test_bad_window_hop_or_device_is_refused(checkpoint, short_video, tmp_path, capsys, bad):
    args = ["predict", str(short_video), "--checkpoint", str(checkpoint), "--out", str(tmp_path), *bad]
    assert main(args) == 2
    assert "error" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_portrait_video_is_decoded_upright(checkpoint, tmp_path):
    """A phone's portrait clip: landscape pictures stored turned, plus a display rotation."""
    frames = face_frames(1)
    path = tmp_path / "portrait.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=15)
        stream.height, stream.width, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.set_display_rotation(90)  # players turn the stored picture 90 degrees counter-clockwise
        for f in frames:
            stored = np.ascontiguousarray(np.rot90(f, -1))  # the upright picture turned clockwise
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    decoded = list(video_frames(path, want_rgb=True))
    assert decoded[0].gray.shape == frames[0].shape[:2] and decoded[0].rgb.shape == frames[0].shape
    assert np.abs(decoded[0].rgb.astype(int) - frames[0]).mean() < 12  # upright, not merely the right shape
    rows = predict_frames(iter(decoded), Predictor(checkpoint))
    assert rows and all(r["status"] == "ok" for r in rows)


def test_faces_are_cropped_as_the_model_was_trained_unless_the_user_says_otherwise(checkpoint, tmp_path, capsys):
    """Face finder, margin and T come from the checkpoint (`Checkpoint.apply_preprocessing`); a setting the
    user gives wins. A model trained on centre crops gets centre crops where Haar would find no face."""
    from vemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    ckpt.config.prepare.face, ckpt.config.prepare.margin = "center", 0.25
    ckpt.save(tmp_path / "center.pt")
    own = Predictor(tmp_path / "center.pt")
    assert (own.face, own.margin, own.frames, own.prepare.face) == ("center", 0.25, 10, "center")
    wall = _write(tmp_path / "wall.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 45)  # no face to detect
    rows = predict_frames(video_frames(wall), own)
    assert rows and all(r["status"] == "ok" for r in rows)
    told = Predictor(tmp_path / "center.pt", preprocessing={"face": "haar", "margin": 0.1})
    assert (told.face, told.margin, told.frames) == ("haar", 0.1, 10)
    assert all(r["status"] == NO_FACE for r in predict_frames(video_frames(wall), told))
    with pytest.raises(ValueError, match="face settings only"):
        Predictor(tmp_path / "center.pt", preprocessing={"dataset": "fer2013"})
    with pytest.raises(ValueError, match="takes 48x48"):
        Predictor(tmp_path / "center.pt", preprocessing={"size": 64})
    args = ["predict", str(wall), "--checkpoint", str(tmp_path / "center.pt"), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "o1")]) == 0  # the model's centre crop: classified
    assert main([*args, "--out", str(tmp_path / "o2"), "--set", "prepare.face=haar"]) == 2  # the user's: no face
    assert main([*args, "--out", str(tmp_path / "o3"), "--set", "train.epochs=3"]) == 2
    assert "face settings only" in capsys.readouterr().err
