"""The CLI end to end on the tiny configuration, as a user would run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vemo.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = [
        "demo",
        "--config",
        str(REPO / "configs/tiny.yaml"),
        "--out",
        str(out),
        "--quiet",
        "--set",
        f"prepare.root={tmp_path / 'synth'}",
        "--set",
        f"prepare.cache_dir={tmp_path / 'cache'}",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels", "n"} <= set(metrics)
    assert metrics["n"] == 6 and sum(map(sum, metrics["confusion_matrix"])) == 6
    assert metrics["accuracy"] == sum(metrics["confusion_matrix"][i][i] for i in range(6)) / 6
    for name in (
        "best.pt",
        "last.pt",
        "history.csv",
        "curves.png",
        "confusion.png",
        "report.md",
        "config.yaml",
    ):
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    assert f"{metrics['accuracy']:.3f}" in report  # the report quotes the run's own number

    # evaluate the checkpoint again through the CLI, into another folder: same numbers
    again = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(out / "best.pt"),
                "--config",
                str(REPO / "configs/tiny.yaml"),
                "--set",
                f"prepare.root={tmp_path / 'synth'}",
                "--set",
                f"prepare.cache_dir={tmp_path / 'cache'}",
                "--out",
                str(again),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((again / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]


def test_errors_exit_nonzero_with_a_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vemo.cli", "prepare", "--root", str(tmp_path / "nowhere"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "nowhere" in proc.stderr and "error" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "vemo.cli", "train", "--set", "train.epochs=lots"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "expected an integer" in proc.stderr


def test_models_lists_variants(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    from vemo.models.registry import MODELS

    assert len(MODELS) >= 4 and all(name in out for name in MODELS)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_evaluate_on_a_missing_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--device", "cuda", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "sees no CUDA GPU" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_no_test_scores_val_and_leaves_the_test_split_unseen(tiny_synth, tmp_path, capsys, monkeypatch):
    import vemo.pipeline

    scored = []
    evaluate = vemo.pipeline.evaluate
    monkeypatch.setattr(
        vemo.pipeline, "evaluate", lambda *a, split, **k: (scored.append(split), evaluate(*a, split=split, **k))[1]
    )
    out = tmp_path / "run"
    settings = ["train.pretrain_epochs=1", "train.epochs=1", "train.threads=1", f"prepare.cache_dir={tmp_path / 'c'}"]
    args = ["train", "--config", str(REPO / "configs/tiny.yaml"), "--root", str(tiny_synth), "--out", str(out)]
    assert main([*args, "--quiet", "--no-test", *[a for s in settings for a in ("--set", s)]]) == 0
    assert scored == ["val"]  # the data has a test split (tiny.yaml: a quarter of the actors); it was not scored
    assert "--no-test: the test split is left unscored" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["split"] == "val"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_training_on_a_missing_gpu_is_refused_in_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs/tiny.yaml"), "--root", str(tmp_path / "none"), "--out", str(out)]
    assert main([*args, "--set", "train.device=cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda' asked for, but this PyTorch" in err and "Traceback" not in err
    assert not out.exists()  # refused before the run folder or any data was touched


@pytest.mark.parametrize(
    "setting,message",
    [
        ("model.width=0", "model.width must be at least 1 (got 0)"),
        ("train.lr=-1", "train.lr must be above 0 (got -1.0)"),
        ("train.label_smoothing=2", "train.label_smoothing must be at least 0 and at most 1 (got 2.0)"),
        ("train.noise_std=-1", "train.noise_std must be at least 0 (got -1.0)"),
        ("train.lr=.nan", "train.lr must be above 0 (got nan)"),
        ("train.pretrain_from=1", "train.pretrain_from must be at least 0 and below 1 (got 1.0)"),
    ],
)
def test_a_setting_no_run_can_train_with_is_named_before_any_work(setting, message, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs/tiny.yaml"), "--root", str(tmp_path / "none"), "--out", str(out)]
    assert main([*args, "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_flag_and_a_set_of_the_same_key_and_resume_with_force_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", f"out={tmp_path / 'other'}"]) == 2
    assert f"--out and --set out={tmp_path / 'other'} both set out" in capsys.readouterr().err
    from vemo.cli import _config, build_parser

    args = build_parser().parse_args(["compare", "--set", f"out={tmp_path / 'cmp'}"])
    assert _config(args).out == str(tmp_path / "cmp")  # compare's --out not given: its default is no conflict
    with pytest.raises(SystemExit) as stop:  # argparse: one or the other
        main(["train", "--out", str(out), "--resume", "--force"])
    assert stop.value.code == 2 and "not allowed with argument --resume" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import vemo.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(vemo.cli, "cmd_train", interrupted)
    assert main(["train"]) == 130
    err = capsys.readouterr().err
    assert (
        err.strip() == "vemo train: interrupted (the same command with --resume continues from the last finished epoch)"
    )


def test_data_of_one_actor_is_refused_for_training_saying_why_and_leaves_no_run(tmp_path, capsys):
    from conftest import tiny_synth_config
    from vemo.data.synth.dataset import synthesize

    synthesize(tmp_path / "one", tiny_synth_config(n_actors=1), workers=1, progress=False)
    out = tmp_path / "runs" / "r"
    args = ["train", "--config", str(REPO / "configs/tiny.yaml"), "--root", str(tmp_path / "one"), "--out", str(out)]
    assert main([*args, "--quiet", "--set", f"prepare.cache_dir={tmp_path / 'c'}"]) == 2
    err = capsys.readouterr().err
    assert "nothing to train on (test 6): its 1 actor(s) are too few" in err and "vemo evaluate" in err
    assert not (tmp_path / "runs").exists()  # the run folder and the parent made for it are gone again
