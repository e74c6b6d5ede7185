"""No command loses, mixes or silently drops data; every failure is one line naming the file (issue 14).

Each test reproduces one way data was lost, mixed or dropped, or one failure that was a traceback, and
checks what happens now. CLI tests call `vemo.cli.main` in-process and read stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import write_video
from vemo.checkpoint import CheckpointError, atomic_save, load_checkpoint
from vemo.cli import main
from vemo.config import Config, PrepareConfig
from vemo.data.loading.prepare import PrepareError, load_prepared, prepare
from vemo.data.sources import video as video_module
from vemo.data.sources.fer2013 import read_fer2013
from vemo.data.sources.video import ClipError, decode_gray, sample_clip, sample_indices
from vemo.io import LOCK_NAME, OutputError, atomic_write, folder_lock
from vemo.models.registry import model_from_config
from vemo.pipeline import claim_run_folder

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad"]


def _cfg(root, cache, **kw) -> PrepareConfig:
    base = dict(root=str(root), cache_dir=str(cache), frames=10, val_fraction=0.25, test_fraction=0.25, workers=1)
    return PrepareConfig(**{**base, **kw})


def _quiet(logs: list | None = None) -> dict:
    return dict(progress=False, log=(logs.append if logs is not None else lambda *_: None))


def _one_line_error(capsys, rc: int) -> str:
    """The CLI failed cleanly: exit status 2 and exactly one line on stderr."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    return lines[0]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder nothing can be created in: read-only for a normal user; for root (who ignores permission
    bits), a path under /sys, where creating anything is refused to everyone."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder / "out"
        folder.chmod(0o755)
        return
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without /sys: no folder is unwritable")
    yield Path("/sys/vemo-reliability-test/out")


@pytest.fixture(scope="module")
def checkpoint(tiny_synth, tmp_path_factory) -> Path:
    """An untrained small model saved like `vemo train` saves one, trained (nominally) on tiny_synth."""
    cfg = Config()
    cfg.prepare = _cfg(tiny_synth, tmp_path_factory.mktemp("cache"))
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = 8, 32, 16, 24
    torch.manual_seed(0)
    model = model_from_config(cfg.model, len(LABELS), 48)
    path = tmp_path_factory.mktemp("run") / "best.pt"
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": LABELS, "stats": {"mean": 0.5, "std": 0.25}}
    atomic_save(ckpt, path)
    return path


# 1. `vemo synth` into a folder it did not make


def test_synth_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    real = tmp_path / "crema"
    (real / "VideoFlash").mkdir(parents=True)
    clip = real / "VideoFlash" / "1001_DFA_ANG_XX.flv"
    clip.write_bytes(b"a real clip")
    (real / "VideoDemographics.csv").write_text("ActorID,Age\n1001,51\n")
    line = _one_line_error(capsys, main(["synth", str(real), "--quiet"]))
    assert str(real) in line and "synth.json" in line
    assert clip.read_bytes() == b"a real clip" and "51" in (real / "VideoDemographics.csv").read_text()


# 3. two runs in one folder, and a finished run overwritten


def test_a_run_folder_in_use_is_refused_naming_its_holder_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    code = "import sys, time\nfrom vemo.io import folder_lock\nwith folder_lock(sys.argv[1], 'vemo train'):\n"
    code += "    print('locked', flush=True)\n    time.sleep(120)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = _one_line_error(capsys, main(["train", "--out", str(run), "--root", str(tmp_path / "no"), "--quiet"]))
        assert f"{run}: in use by vemo train (pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    assert (run / LOCK_NAME).exists()  # a killed holder leaves its lock file, which no longer locks anything
    logs: list[str] = []
    second_holder = pytest.raises(OutputError, match=f"pid {os.getpid()}")  # even in the same process
    with folder_lock(run, "vemo train", log=logs.append), second_holder, folder_lock(run, "vemo evaluate"):
        pass
    assert any(f"pid {holder.pid}" in line and "no longer running" in line for line in logs)
    assert not (run / LOCK_NAME).exists()


def test_a_finished_run_is_kept_unless_forced(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "train.json", "metrics.json", "best.pt", "last.pt", "history.csv"):
        (run / name).write_text("old")
    (run / "eval-crema-d-123-all").mkdir()
    (run / "notes.txt").write_text("mine")
    line = _one_line_error(capsys, main(["train", "--out", str(run), "--root", str(tmp_path / "no"), "--quiet"]))
    assert "finished run" in line and "--force" in line
    assert (run / "best.pt").read_text() == "old"
    claim_run_folder(run, resume=False, force=True, log=lambda *_: None)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # the old run's files only
    (run / "last.pt").write_text("interrupted")
    with pytest.raises(OutputError, match="interrupted run.*--resume"):
        claim_run_folder(run, resume=False, force=False)
    claim_run_folder(run, resume=True, force=False)  # resuming is what it is there for
    assert (run / "last.pt").read_text() == "interrupted"  # and it keeps what it resumes from


def test_train_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run").write_text("a file")
    line = _one_line_error(capsys, main(["train", "--out", str(tmp_path / "run"), "--quiet"]))
    assert "not a folder" in line and str(tmp_path / "run") in line


# 4. evaluating a run's checkpoint on other data


def test_evaluating_other_data_writes_its_own_folder(checkpoint, tiny_synth, tmp_path, capsys):
    run = checkpoint.parent
    (run / "metrics.json").write_text('{"accuracy": 0.9}')
    other = tmp_path / "other"
    shutil.copytree(tiny_synth, other)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--root", str(other), "--quiet"]
    assert main([*args, "--set", f"prepare.cache_dir={tmp_path / 'cache'}", "--set", "prepare.workers=1"]) == 0
    out = capsys.readouterr().out
    assert (run / "metrics.json").read_text() == '{"accuracy": 0.9}'  # the run's own results are kept
    (folder,) = run.glob("eval-crema-d-*-all")
    assert json.loads((folder / "metrics.json").read_text())["split"] == "all"
    assert f"writing to {folder}" in out and (folder / "predictions.csv").exists()


def test_evaluate_checks_its_output_folder_before_computing(checkpoint, tmp_path, unwritable, capsys):
    cache = tmp_path / "cache"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(unwritable), "--quiet"]
    line = _one_line_error(capsys, main([*args, "--set", f"prepare.cache_dir={cache}"]))
    assert str(unwritable) in line and not cache.exists()  # refused before preparing anything


# 6. the FER2013 CSV, line by line


def test_fer_csv_lines_are_records_on_their_own(tmp_path):
    face = " ".join(["7"] * 2304)
    lines = [
        "emotion,pixels,Usage",
        f"3,{face},Training",
        f'3,"{face},Training',  # an unclosed quote: must not swallow the lines after it
        f"4,{face},PublicTest",
        f"2,{' '.join(['9'] * 100)},Training",  # 10x10: damaged, not a small face
        "",
        f"6,{face},PrivateTest",
    ]
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    records, skipped, _ = read_fer2013(path)
    assert len(records) + len(skipped) == len(lines) - 1
    assert [r.source.rsplit("#", 1)[1] for r in records] == ["row1", "row3", "row6"]
    reasons = {s.source.rsplit("#", 1)[1]: s.reason for s in skipped}
    assert "line 3" in reasons["row2"] and "malformed CSV line" in reasons["row2"]
    assert "100 pixel values, expected 2304" in reasons["row4"]
    assert "empty line" in reasons["row5"]


# 7, 8, 11. links that break, skipped files named, and fixed files looked at again


def test_broken_links_are_skipped_named_and_looked_at_again_once_fixed(tiny_synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_synth, root)
    video = root / "VideoFlash"
    (tmp_path / "moved").mkdir()
    shutil.move(video / "1004_IEO_HAP_HI.flv", tmp_path / "moved" / "1004_IEO_HAP_HI.flv")
    (video / "1004_IEO_HAP_HI.flv").symlink_to(tmp_path / "stash" / "1004_IEO_HAP_HI.flv")  # dangling
    (video / "1004_IEO_SAD_HI.flv").unlink()
    (video / "1004_IEO_SAD_HI.flv").symlink_to("1004_IEO_SAD_HI.flv")  # a loop
    logs: list[str] = []
    first = prepare(_cfg(root, tmp_path / "cache"), **_quiet(logs))
    kinds = {Path(s["source"]).name: s["kind"] for s in first.manifest["skipped"]}
    assert len(first.items) == 22 and kinds == {
        "1004_IEO_HAP_HI.flv": "broken-link",
        "1004_IEO_SAD_HI.flv": "link-loop",
    }
    assert f"  skipped {video / '1004_IEO_SAD_HI.flv'}: symbolic link loop: the link never reaches a file" in logs
    shutil.move(tmp_path / "moved", tmp_path / "stash")  # the link's target is back
    logs.clear()
    again = prepare(_cfg(root, tmp_path / "cache"), **_quiet(logs))
    assert again.path != first.path and len(again.items) == 23
    assert not any("reusing cache" in line for line in logs)


def test_the_console_names_the_first_20_skipped_files_and_the_manifest_all(tiny_synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_synth, root)
    for k in range(22):
        (root / "VideoFlash" / f"{2001 + k}_IEO_ANG_HI.flv").write_bytes(b"")
    logs: list[str] = []
    prepared = prepare(_cfg(root, tmp_path / "cache"), **_quiet(logs))
    named = [line for line in logs if line.startswith("  skipped ") and line.endswith("empty file (0 bytes)")]
    assert len(named) == 20 and len(prepared.manifest["skipped"]) == 22
    assert f"  ... and 2 more; all 22 are listed in {prepared.path / 'manifest.json'}" in logs


# 9. truncated videos and images


def test_truncated_video_and_image_are_named_truncated(tiny_synth, tmp_path):
    clip = sorted((tiny_synth / "VideoFlash").glob("*.flv"))[0]
    cut = tmp_path / clip.name
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert 2 <= len(decode_gray(cut)) < len(decode_gray(clip))  # it decodes, but only in part
    with pytest.raises(ClipError, match=r"truncated: \d+ of the 12 frames it declares decode") as err:
        sample_clip(cut, 10)
    assert err.value.kind == "truncated"

    fer = tmp_path / "fer" / "test" / "happy"
    fer.mkdir(parents=True)
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8))
    (fer / "whole.jpg").write_bytes(jpeg.tobytes())
    (fer / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    prepared = prepare(PrepareConfig(dataset="fer2013", root=str(tmp_path / "fer"), cache_dir=str(tmp_path / "c")))
    assert [Path(it["source"]).name for it in prepared.items] == ["whole.jpg"]
    (skip,) = prepared.manifest["skipped"]
    assert skip["kind"] == "truncated" and skip["source"].endswith("cut.jpg") and "ends early" in skip["reason"]


# 12. bounded memory: only the sampled frames are kept


def test_only_sampled_frames_are_kept_and_they_are_the_uniform_sample(tmp_path, monkeypatch):
    frames = [np.full((32, 48), 8 + 2 * i, np.uint8) for i in range(100)]
    path = write_video(tmp_path / "long.mp4", frames, fps=25)
    expected = [decode_gray(path)[i] for i in sample_indices(100, 10)]
    held = []  # frames the reservoir holds after each offer
    offer = video_module._Reservoir.offer

    def counting_offer(self, i, make):
        offer(self, i, make)
        held.append(len(self.kept))

    monkeypatch.setattr(video_module._Reservoir, "offer", counting_offer)
    monkeypatch.setattr(video_module, "RESERVOIR_BYTES", 0)  # the reservoir may hold 2T frames only
    got = sample_clip(path, 10)
    assert got.n_frames == 100 and len(got.frames) == 10
    assert all(np.array_equal(a, b) for a, b in zip(got.frames, expected, strict=True))
    assert len(held) == 100 and max(held) <= 2 * 10  # never more than 2T frames, whatever the length


# 13, 14. checkpoints


def _zip_copy(src: Path, dst: Path, extra: dict[str, bytes] | None = None) -> None:
    """`src` rewritten as a DEFLATE-compressed zip, plus any extra entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        for name, data in (extra or {}).items():
            zout.writestr(name, data)


def test_checkpoints_that_inflate_or_hold_unknown_entries_are_refused_before_loading(tmp_path):
    ckpt = {"model": {}, "config": {}, "labels": LABELS, "stats": {}, "extra": torch.zeros(2**21)}  # 8 MiB
    torch.save(ckpt, tmp_path / "big.pt")
    _zip_copy(tmp_path / "big.pt", tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="bomb.pt: refused: its entries declare 8,3"):
        load_checkpoint(tmp_path / "bomb.pt")
    torch.save({**ckpt, "extra": None}, tmp_path / "small.pt")
    with zipfile.ZipFile(tmp_path / "small.pt", "a") as z:
        z.writestr("small/payload.sh", "echo hi")
    with pytest.raises(CheckpointError, match=r"entries torch.save never writes \(small/payload.sh\)"):
        load_checkpoint(tmp_path / "small.pt")


def test_checkpoint_without_stats_or_mapping_config_or_an_lfs_pointer_is_one_clear_line(tmp_path, capsys):
    torch.save({"model": {}, "config": [1, 2], "labels": LABELS}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="'config' is a list, not a mapping; 'stats' is missing"):
        load_checkpoint(tmp_path / "odd.pt")
    lfs = tmp_path / "model.pt"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 6671792\n")
    line = _one_line_error(capsys, main(["ship", "--checkpoint", str(lfs), "--out", str(tmp_path / "s.pt")]))
    assert f"{lfs}: a Git LFS pointer" in line and "could run code" not in line


def test_ship_refuses_weights_that_do_not_fit_their_architecture(checkpoint, tmp_path, capsys):
    ckpt = load_checkpoint(checkpoint)
    ckpt.config.model.width = 16
    atomic_save(ckpt.to_dict(), tmp_path / "misfit.pt")
    out = tmp_path / "shipped.pt"
    line = _one_line_error(capsys, main(["ship", "--checkpoint", str(tmp_path / "misfit.pt"), "--out", str(out)]))
    assert "do not fit" in line and not out.exists()


def test_evaluate_refuses_a_misfit_checkpoint_first_naming_it_and_leaves_no_folder(checkpoint, tmp_path, capsys):
    ckpt = load_checkpoint(checkpoint)
    ckpt.labels = ckpt.labels[:2]  # two classes named, six-class weights
    atomic_save(ckpt.to_dict(), tmp_path / "two.pt")
    ckpt = load_checkpoint(checkpoint)
    ckpt.config.model.name = "nonexistent"
    atomic_save(ckpt.to_dict(), tmp_path / "unknown.pt")
    out, nothing = tmp_path / "eval", tmp_path / "no-data"
    for name in ("two.pt", "unknown.pt"):  # refused before the (missing) data is looked at
        argv = ["evaluate", "--checkpoint", str(tmp_path / name), "--dataset", "folder", "--root", str(nothing)]
        line = _one_line_error(capsys, main([*argv, "--out", str(out)]))
        assert f"{tmp_path / name}: " in line and not out.exists()
        assert ("do not fit" in line and "with 2 classes" in line and "of another shape" in line) or (
            "cannot build (unknown model 'nonexistent'" in line
        )
    nothing.mkdir()  # a good checkpoint, unusable data: refused after --out was made, which goes again
    deep = tmp_path / "new" / "eval"  # with the parent made for it, and nothing that was there before
    (tmp_path / "keep").mkdir()
    for where in (out, deep, tmp_path / "keep"):
        line = _one_line_error(capsys, main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "folder",
                                             "--root", str(nothing), "--out", str(where)]))  # fmt: skip
        assert str(nothing) in line
    assert not out.exists() and not (tmp_path / "new").exists() and (tmp_path / "keep").is_dir()


# 15. leftovers of killed processes, and `vemo report` outside a run


def test_temporaries_of_killed_processes_are_removed_by_the_next_run(tiny_synth, tmp_path):
    cache, dead, alive = tmp_path / "cache", _dead_pid(), os.getpid()
    (cache / f".tmp-crema-d-0123456789abcdef-{dead}").mkdir(parents=True)
    (cache / f".tmp-crema-d-fedcba9876543210-{alive}").mkdir()  # a prepare still running: kept
    prepare(_cfg(tiny_synth, cache), **_quiet())
    assert sorted(p.name for p in cache.glob(".tmp-*")) == [f".tmp-crema-d-fedcba9876543210-{alive}"]

    run = tmp_path / "run"
    run.mkdir()
    (run / f".confusion.png.{dead}.k2j4x9.tmp").write_bytes(b"half a png")
    (run / f".metrics.json.{dead}.a8b7c6.tmp").write_bytes(b"{")
    atomic_write(run / "confusion.png", lambda fh: fh.write(b"png"))  # the next write of the same file
    assert {p.name for p in run.iterdir()} == {"confusion.png", f".metrics.json.{dead}.a8b7c6.tmp"}
    with folder_lock(run, "vemo train", log=lambda *_: None):  # the next command to take the folder
        assert {p.name for p in run.iterdir()} == {LOCK_NAME, "confusion.png"}


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    line = _one_line_error(capsys, main(["report", str(tmp_path / "photos"), "--no-pdf"]))
    assert "not a vemo run folder" in line
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["holiday.jpg"]


# Errors that were tracebacks


@pytest.mark.parametrize(
    "text, says",
    [
        ('train:\n  epochs: !!python/object/apply:os.system ["touch pwned-by-yaml"]\n', "Python tags are refused"),
        ("train:\n  epochs: [1, 2\n", "line 3: not valid YAML"),
    ],
    ids=["python-tag", "syntax-error"],
)
def test_bad_yaml_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch, text, says):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(capsys, main(["models", "--config", str(path)]))
    assert str(path) in line and says in line
    assert not (tmp_path / "pwned-by-yaml").exists()  # the tag was refused, not run


def test_unwritable_outputs_are_one_line(checkpoint, tiny_synth, unwritable, capsys):
    commands = [
        ["prepare", "--root", str(tiny_synth), "--set", f"prepare.cache_dir={unwritable}", "--quiet"],
        ["train", "--root", str(tiny_synth), "--out", str(unwritable), "--quiet"],
        ["ship", "--checkpoint", str(checkpoint), "--out", str(unwritable / "m.pt")],
        ["export", "--checkpoint", str(checkpoint), "--onnx", str(unwritable / "m.onnx")],
    ]
    for args in commands:
        line = _one_line_error(capsys, main(args))
        assert str(unwritable.parent) in line, args


def test_export_without_onnx_is_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now fails as if it were not installed
    line = _one_line_error(capsys, main(["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "m")]))
    assert "pip install 'vemo[export]'" in line


def test_damaged_cache_files_are_one_line_and_prepare_rebuilds_them(tiny_synth, tmp_path, capsys):
    cfg = _cfg(tiny_synth, tmp_path / "cache")
    cache = prepare(cfg, **_quiet()).path
    frames = cache / "frames.npy"
    frames.write_bytes(frames.read_bytes()[: frames.stat().st_size // 2])
    line = _one_line_error(capsys, main(["train", "--data", str(cache), "--out", str(tmp_path / "r"), "--quiet"]))
    assert f"{frames}: damaged cache file" in line
    logs: list[str] = []
    assert len(prepare(cfg, **_quiet(logs)).items) == 24 and any("preparing the cache again" in x for x in logs)
    (cache / "manifest.json").write_text('{"items": [')
    with pytest.raises(PrepareError, match="manifest.json: damaged cache manifest"):
        load_prepared(cache)


def test_temporaries_of_killed_annotate_and_export_runs_are_removed_by_the_next(tmp_path):
    """Item 15: `.NAME.<pid>.<part>.tmp` files whose writer is gone are deleted before the next write."""
    from vemo.io import remove_stale_temps

    dead = 2**22 + 12345  # above the default pid_max: no process has it
    left = [tmp_path / f".annotated.mp4.{dead}.video.tmp", tmp_path / f".vemo.onnx.{dead}.onnx.tmp"]
    mine = tmp_path / f".vemo.onnx.{os.getpid()}.onnx.tmp"  # a live writer's: kept
    for path in [*left, mine]:
        path.write_bytes(b"half")
    remove_stale_temps(tmp_path, "annotated.mp4")
    remove_stale_temps(tmp_path, "vemo.onnx")
    assert not any(p.exists() for p in left) and mine.exists()
