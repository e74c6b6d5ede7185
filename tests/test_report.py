"""`vemo compare` on a tiny setup, and the report built from its files, checked in a real browser."""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from vemo.cli import main
from vemo.reporting.document import chromium_run, find_chromium
from vemo.reporting.report import write_report
from vemo.training.run_folder import LOSS_MEANING

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compared(tiny_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    args = ["compare", "--config", str(REPO / "configs/tiny.yaml"), "--models", "cnn_lstm", "cnn_ae_lstm"]
    args += ["--seeds", "0", "1", "--out", str(out), "--quiet", "--set", f"prepare.root={tiny_synth}"]
    args += ["--set", f"prepare.cache_dir={out / 'cache'}", "--set", "prepare.val_fraction=0.25"]
    args += ["--set", "prepare.test_fraction=0.25"]
    assert main(args) == 0
    return out, args


def test_compare_tables_come_from_the_runs(compared, capsys):
    out, args = compared
    result = json.loads((out / "compare.json").read_text())
    runs = {(r["model"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {(m, s) for m in ("cnn_lstm", "cnn_ae_lstm") for s in (0, 1)}
    for (model, seed), r in runs.items():
        metrics = json.loads((out / f"{model}-seed{seed}" / "metrics.json").read_text())
        assert r["accuracy"] == metrics["accuracy"] and r["clips_per_s"] > 0
        assert {row["kind"] for row in r["robustness"]} == {"noise", "blur", "occlusion"}
    summary = {s["model"]: s for s in result["summary"]}
    acc = [runs[("cnn_ae_lstm", s)]["accuracy"] for s in (0, 1)]
    assert summary["cnn_ae_lstm"]["accuracy_mean"] == pytest.approx(np.mean(acc))
    diffs = [runs[("cnn_ae_lstm", s)]["accuracy"] - runs[("cnn_lstm", s)]["accuracy"] for s in (0, 1)]
    assert result["paired"]["accuracy"]["differences"] == pytest.approx(diffs)
    curves = {(c["kind"], c["level"]): c for c in result["robustness"]["cnn_ae_lstm"]}
    for key in [("noise", 0.0), ("occlusion", max(lv for k, lv in curves if k == "occlusion"))]:
        per_seed = [
            next(r for r in runs[("cnn_ae_lstm", s)]["robustness"] if (r["kind"], r["level"]) == key) for s in (0, 1)
        ]
        for metric in ("accuracy", "macro_f1"):  # both averaged over the seeds, not taken from the first
            assert curves[key][metric] == pytest.approx(np.mean([r[metric] for r in per_seed]))
    md = (out / "compare.md").read_text()
    assert f"{summary['cnn_lstm']['accuracy_mean']:.3f} +- {summary['cnn_lstm']['accuracy_std']:.3f}" in md
    for name in ("compare.png", "robustness.png"):
        assert (out / name).stat().st_size > 1000
    # finished runs are reused: a second compare trains nothing
    capsys.readouterr()
    assert main(args) == 0
    reused = [line for line in capsys.readouterr().out.splitlines() if line.startswith("reusing") and "-seed" in line]
    assert len(reused) == 4


def test_report_quotes_the_run_and_its_ablation(compared):
    out, _ = compared
    run = out / "cnn_ae_lstm-seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    summary = {s["model"]: s for s in json.loads((out / "compare.json").read_text())["summary"]}
    md, html = (run / "report.md").read_text(), (run / "report.html").read_text()
    for text in (md, html):
        assert f"Accuracy {metrics['accuracy']:.3f}" in text
        assert f"{summary['cnn_lstm']['macro_f1_mean']:.3f} ± {summary['cnn_lstm']['macro_f1_std']:.3f}" in text
    train = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (
        f"Frame pretraining: {train['pretrain_optimizer']}, lr {train['pretrain_lr']} {train['pretrain_schedule']}"
        in md
    )
    for section in ("Design", "Data and split", "Training", "Results", "Ablation", "Limitations"):
        assert f"## {section}" in md
    assert html.count("data:image/png;base64,") >= 5  # curves, confusion, compare, robustness, embeddings, ...
    assert "src='" + "confusion.png" not in html  # figures are embedded, not linked
    z = np.load(run / "embeddings.npz")  # the frame strips: the first test clip of each class, no attention
    assert sorted(z["truth"][z["strip_index"]].tolist()) == sorted(set(z["truth"].tolist()))  # 6 classes here
    assert (run / "frames.png").exists() and not (run / "attention.png").exists() and "frames.png" in md


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (Debian: apt install chromium)")
def test_report_renders_in_headless_chromium(compared, tmp_path):
    out, _ = compared
    run = out / "cnn_ae_lstm-seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    dom = chromium_run(["--dump-dom", (run / "report.html").resolve().as_uri()]).stdout
    assert f"Accuracy {metrics['accuracy']:.3f}" in re.sub(r"<[^>]+>", "", dom)
    shot = tmp_path / "shot.png"
    chromium_run([f"--screenshot={shot}", "--window-size=1000,1400", (run / "report.html").resolve().as_uri()])
    import cv2

    image = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.shape == (1400, 1000) and image.std() > 20  # text and figures, not blank
    pdf = (run / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and 1 <= len(re.findall(rb"/Type\s*/Page[^s]", pdf)) <= 2


def test_evaluate_perturb_uses_the_given_levels(compared, tmp_path):
    out, _ = compared
    run = out / "cnn_ae_lstm-seed0"
    args = [
        "evaluate",
        "--checkpoint",
        str(run / "best.pt"),
        "--data",
        str(json.loads((run / "metrics.json").read_text())["data"]),
    ]
    args += ["--split", "test", "--out", str(tmp_path), "--perturb", "noise", "--levels", "0,0.15", "--quiet"]
    assert main(args) == 0
    rows = json.loads((tmp_path / "robustness.json").read_text())["rows"]
    assert [(r["kind"], r["level"]) for r in rows] == [("noise", 0.0), ("noise", 0.15)]
    assert rows[0]["accuracy"] == json.loads((tmp_path / "metrics.json").read_text())["accuracy"]


def test_every_compare_run_keeps_the_records_vemo_train_keeps(compared):
    """Runs made by `vemo compare` go through the same writer as `vemo train`: train.json included."""
    out, _ = compared
    for model in ("cnn_lstm", "cnn_ae_lstm"):
        for seed in (0, 1):
            run = out / f"{model}-seed{seed}"
            for name in ("config.yaml", "environment.json", "history.csv", "curves.png", "train.json"):
                assert (run / name).exists(), (run, name)
            train, row = json.loads((run / "train.json").read_text()), json.loads((run / "run.json").read_text())
            assert train["best_epoch"] == row["best_epoch"] and train["parameters"] == row["parameters"]
            joint = [r for r in csv.DictReader((run / "history.csv").open()) if r["stage"] == "joint"]
            assert train["epochs_run"] == len(joint) and train["stopped"] in ("early stopping", "all epochs")
            assert train["loss"] == LOSS_MEANING


def test_the_report_reads_train_json_instead_of_rederiving_it(compared, tmp_path):
    out, _ = compared
    run = tmp_path / "run"
    shutil.copytree(out / "cnn_ae_lstm-seed0", run)
    joint = [r for r in csv.DictReader((run / "history.csv").open()) if r["stage"] == "joint"]
    rederived = int(max(joint, key=lambda r: (float(r["val_acc"]), -float(r["val_loss"])))["epoch"])
    train = json.loads((run / "train.json").read_text())
    train.update(best_epoch=rederived + 7, best_val_acc=0.123, seconds=4321.0, stopped="time budget")
    (run / "train.json").write_text(json.dumps(train))
    write_report(run, out, pdf=False)
    md = (run / "report.md").read_text()
    assert f"best validation accuracy 0.123 at epoch {rederived + 7}; 72.0 min" in md
    assert "stopped by the time budget" in md
    assert f"Loss in the curves, train and validation alike: {LOSS_MEANING}." in md
    (run / "train.json").unlink()  # an unfinished run: nothing is made up in its place
    write_report(run, out, pdf=False)
    md = (run / "report.md").read_text()
    assert "no `train.json` in this run folder" in md and "best validation accuracy" not in md


def test_the_report_names_the_runs_own_face_finder_and_frame_size(compared, tmp_path):
    out, _ = compared
    run = tmp_path / "run"
    shutil.copytree(out / "cnn_ae_lstm-seed0", run)
    md = write_report(run, out, pdf=False).read_text()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    size = json.loads((run / "data.json").read_text())["size"]
    assert cfg["prepare"]["face"] == "haar" and f"Haar cascade on {cfg['prepare']['detect_frames']} frames" in md
    assert f"Grayscale {size}x{size} crops" in md
    cfg["prepare"]["face"] = "center"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    data = json.loads((run / "data.json").read_text())
    (run / "data.json").write_text(json.dumps({**data, "size": 40}))
    md = write_report(run, out, pdf=False).read_text()
    assert "Haar" not in md and "no face detection" in md
    assert "40x40 grayscale" in md and "Grayscale 40x40 crops" in md and "48x48" not in md


def test_report_refuses_a_compare_folder_without_its_json_and_drops_a_stale_pdf(compared, tmp_path, capsys):
    out, _ = compared
    run = tmp_path / "run"
    shutil.copytree(out / "cnn_ae_lstm-seed0", run)  # a copy: the module's runs stay as they are
    (run / "report.pdf").write_bytes(b"%PDF-1.4 an earlier report")
    assert main(["report", str(run), "--compare", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no compare.json there" in capsys.readouterr().err
    assert main(["report", str(run), "--no-pdf"]) == 0
    assert not (run / "report.pdf").exists() and "report.pdf" not in capsys.readouterr().out
