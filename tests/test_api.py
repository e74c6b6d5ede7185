"""`vemo.predict` as a library: a DataFrame from a video, a folder, a list, a still and a numpy array;
quiet, writes nothing; importing vemo leaves matplotlib alone; packaging a stranger can trust."""

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import vemo
from conftest import REPO, write_video
from test_predict import LABELS, face_frames, save_tiny_checkpoint
from vemo.data.sources.video import ClipError
from vemo.predict.run import Predictor

P_COLUMNS = [f"p_{lab}" for lab in LABELS]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor(save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder with a 4-s video, a still of a face (PNG) and a file that is not a video."""
    root = tmp_path_factory.mktemp("inputs")
    frames = face_frames(2)
    write_video(root / "clip.mp4", frames, fps=15)
    cv2.imwrite(str(root / "face.png"), cv2.cvtColor(frames[20], cv2.COLOR_RGB2BGR))
    (root / "broken.mp4").write_bytes(b"\x00junk" * 100)
    return root


def check_table(df, sources):
    assert list(df.columns[:6]) == ["source", "face", "start", "end", "label", "confidence"]
    assert set(P_COLUMNS + ["x", "y", "w", "h", "status"]) <= set(df.columns)
    assert set(df["source"]) == set(sources)
    ok = df[df.status == "ok"]
    assert len(ok) and np.allclose(ok[P_COLUMNS].sum(axis=1), 1, atol=1e-4)
    assert (ok["w"] > 10).all() and ok["label"].isin(LABELS).all()


def test_a_video_gives_one_row_per_window(predictor, inputs):
    df = vemo.predict(str(inputs / "clip.mp4"), checkpoint=predictor)
    check_table(df, [str(inputs / "clip.mp4")])
    # 2-s windows (T=10 frames sampled 0.2 s apart) every 0.5 s; the 60th frame is at 3.93 s
    assert len(df) == 4 and df["start"].is_monotonic_increasing and (df["end"] - df["start"] > 1.7).all()


def test_a_still_image_gives_one_row(predictor, inputs):
    df = vemo.predict(inputs / "face.png", checkpoint=predictor)
    check_table(df, [str(inputs / "face.png")])
    assert len(df) == 1 and df.loc[0, "status"] == "ok"


def test_a_folder_skips_what_it_cannot_read_and_says_so(predictor, inputs, caplog):
    df = vemo.predict(inputs, checkpoint=predictor)
    check_table(df, [str(inputs / "clip.mp4"), str(inputs / "face.png")])
    assert [s for s, _ in df.attrs["skipped"]] == [str(inputs / "broken.mp4")]
    assert "broken.mp4" in caplog.text  # a logging warning, not a print
    listed = vemo.predict([inputs / "clip.mp4", inputs / "face.png"], checkpoint=predictor)
    assert listed.equals(df)


def test_numpy_frames_and_images(predictor, inputs):
    frames = np.stack(face_frames(2))
    rgb = vemo.predict(frames, checkpoint=predictor, fps=15)
    gray = vemo.predict(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]), checkpoint=predictor, fps=15)
    check_table(rgb, ["array"])
    assert len(rgb) == len(gray) == 4 and np.abs(rgb[P_COLUMNS].to_numpy() - gray[P_COLUMNS].to_numpy()).max() < 1e-6
    one = vemo.predict(frames[20], checkpoint=predictor)  # (H, W, 3): an image, as the PNG of the same frame
    png = vemo.predict(inputs / "face.png", checkpoint=predictor)
    assert len(one) == 1 and one.loc[0, "label"] == png.loc[0, "label"]
    assert np.abs(one[P_COLUMNS].to_numpy() - png[P_COLUMNS].to_numpy()).max() < 0.01
    with pytest.raises(ValueError, match="uint8"):
        vemo.predict(frames.astype(np.float32) / 255, checkpoint=predictor)
    gray_frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    channel = vemo.predict(gray_frames[..., None], checkpoint=predictor, fps=15)  # (T, H, W, 1): one channel
    assert np.abs(channel[P_COLUMNS].to_numpy() - gray[P_COLUMNS].to_numpy()).max() < 1e-6
    still = vemo.predict(gray_frames[20][..., None], checkpoint=predictor)  # (H, W, 1): an image
    assert len(still) == 1 and still.loc[0, "label"] == one.loc[0, "label"]
    with pytest.raises(ValueError, match=r"frames must be \(T, H, W\) or \(T, H, W, 1\|3\|4\)"):
        vemo.predict(np.zeros((10, 48, 48, 2), np.uint8), checkpoint=predictor)


def test_quiet_and_writes_nothing(predictor, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    vemo.predict(inputs / "clip.mp4", checkpoint=predictor)
    out = capsys.readouterr()
    assert out.out == "" and out.err == "" and not list(tmp_path.iterdir())


def test_one_unreadable_input_raises_naming_it(predictor, inputs):
    with pytest.raises(ClipError, match="broken.mp4: corrupt"):
        vemo.predict(inputs / "broken.mp4", checkpoint=predictor)
    with pytest.raises(FileNotFoundError, match="nothing-here.mp4"):
        vemo.predict(inputs / "nothing-here.mp4", checkpoint=predictor)


def test_a_checkpoint_path_works_and_cuda_is_refused_where_absent(inputs, tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt")
    assert len(vemo.predict(inputs / "face.png", checkpoint=ckpt)) == 1
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            vemo.predict(inputs / "face.png", checkpoint=ckpt, device="cuda")


def test_importing_vemo_leaves_matplotlib_backend_alone(tmp_path):
    code = (
        "import matplotlib, numpy as np, vemo, vemo.predict.api, vemo.reporting.plots as p;"
        "p.plot_confusion(np.eye(2, dtype=int), ['a', 'b'], 'cm.png');"
        "print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg" and (tmp_path / "cm.png").stat().st_size > 1000


def test_one_version_everywhere():
    assert importlib.metadata.version("vemo") == vemo.__version__  # pip show vemo
    out = subprocess.run([sys.executable, "-m", "vemo.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"vemo {vemo.__version__}"


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_package_is_declared_and_pinned():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = {_requirement_name(r) for r in meta["dependencies"]}
    declared = required | {_requirement_name(r) for extra in meta["optional-dependencies"].values() for r in extra}
    distributions = importlib.metadata.packages_distributions()
    missing = set()
    for path in (REPO / "src" / "vemo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for top in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"vemo"}:
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top.replace("_", "-")])}
                if not dists & declared:
                    missing.add(f"{top} ({path.relative_to(REPO)})")
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    pins = {_requirement_name(line) for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line}
    assert required <= pins, f"not pinned in requirements.txt: {sorted(required - pins)}"
    assert any(r.startswith("torch>=") and "<" in r for r in meta["dependencies"])  # a range, not a pin


def test_license_states_the_weights_terms():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "FER2013" in text and "research" in text and "ODbL" in text
    assert Path(REPO / "pyproject.toml").read_text().count('license-files = ["LICENSE"]') == 1


def test_evaluate_takes_dataset_and_root_from_the_config_file(tiny_synth, tmp_path):
    """`vemo evaluate --config X.yaml` evaluates X's prepare.dataset and prepare.root when --dataset and
    --root are not given; the checkpoint's own data (here a folder that is gone) is not used."""
    import json

    from vemo.checkpoint import load_checkpoint
    from vemo.cli import main

    ckpt = load_checkpoint(save_tiny_checkpoint(tmp_path / "m.pt"))
    ckpt.config.prepare.root = str(tmp_path / "gone")
    ckpt.save(tmp_path / "m.pt")
    config = tmp_path / "x.yaml"
    config.write_text(f"prepare:\n  dataset: crema-d\n  root: {tiny_synth}\n  cache_dir: {tmp_path / 'cache'}\n")
    args = ["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--config", str(config), "--split", "all"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["root"] == str(tiny_synth.resolve()) and metrics["dataset"] == "crema-d"


def test_evaluate_honours_a_target_given_with_set(tiny_synth, tmp_path):
    """`--set prepare.target=face-vote` labels the clips by the crowd's vote, not the checkpoint's `acted`."""
    import json
    import shutil

    from vemo.cli import main

    shutil.copytree(tiny_synth / "VideoFlash", tmp_path / "crema" / "VideoFlash")
    names = sorted(p.stem for p in (tmp_path / "crema" / "VideoFlash").iterdir())
    table = ['"FileName","FaceVote"', *[f'"{n}","H"' for n in names]]  # the crowd saw happiness everywhere
    (tmp_path / "crema" / "processedResults").mkdir()
    (tmp_path / "crema" / "processedResults" / "summaryTable.csv").write_text("\n".join(table) + "\n")
    ckpt = save_tiny_checkpoint(tmp_path / "m.pt")
    common = ["evaluate", "--checkpoint", str(ckpt), "--dataset", "crema-d", "--root", str(tmp_path / "crema")]
    common += ["--split", "all", "--quiet", "--set", f"prepare.cache_dir={tmp_path / 'cache'}"]
    for target in ("acted", "face-vote"):
        args = [*common, "--out", str(tmp_path / target), "--set", f"prepare.target={target}"]
        assert main(args) == 0
    support = {}
    for target in ("acted", "face-vote"):
        metrics = json.loads((tmp_path / target / "metrics.json").read_text())
        support[target] = [sum(row) for row in metrics["confusion_matrix"]]
    assert support["acted"] == [4] * 6  # 4 actors x 6 acted emotions
    assert support["face-vote"] == [0, 0, 0, 24, 0, 0]  # every clip is "happy" by the crowd's vote
    # `predict --window clip` samples a clip as evaluate does, so both give the same probabilities
    import csv

    with open(tmp_path / "acted" / "predictions.csv", newline="") as fh:
        evaluated = {row["source"]: row for row in csv.DictReader(fh)}
    sources = sorted(evaluated)[:4]
    df = vemo.predict(sources, checkpoint=ckpt, window="clip")
    assert list(df["source"]) == sources and df["status"].isin(["ok", "centre-crop"]).all()
    for source, row in zip(sources, df.to_dict("records"), strict=True):
        assert max(abs(float(evaluated[source][c]) - row[c]) for c in P_COLUMNS) < 1e-3


def test_a_folder_names_other_files_and_unexpected_failures_and_goes_on(predictor, inputs, tmp_path, monkeypatch):
    """Files of other types are reported, not passed over; hidden ones are left out; an error no check
    foresaw on one input skips it (named, with its type) instead of stopping the batch."""
    import shutil

    from vemo.predict import api

    for name in ("clip.mp4", "face.png"):
        shutil.copy(inputs / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("a list of takes")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")

    def boom(*args, **kwargs):
        raise RuntimeError("detector fell over")

    monkeypatch.setattr(api, "predict_image", boom)
    df = vemo.predict(tmp_path, checkpoint=predictor)
    assert set(df["source"]) == {str(tmp_path / "clip.mp4")}
    assert dict(df.attrs["skipped"]) == {
        str(tmp_path / "face.png"): "unexpected error: RuntimeError: detector fell over",
        str(tmp_path / "notes.txt"): "not a video or image vemo reads (.txt)",
    }
    with pytest.raises(RuntimeError, match="detector fell over"):  # alone, its own error (and traceback)
        vemo.predict(tmp_path / "face.png", checkpoint=predictor)
    (tmp_path / "clip.mp4").unlink()
    (tmp_path / "face.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no videos or images found in .*1 other files, e\.g\. .*notes\.txt"):
        vemo.predict(tmp_path, checkpoint=predictor)
