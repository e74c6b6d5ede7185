"""A run folder's records (`vemo.training.run_folder`): what the trainer writes, and that the loss
curves put the same quantity side by side for train and validation."""

import csv
import json
from pathlib import Path

from vemo.config import load_config
from vemo.data.loading.prepare import prepare
from vemo.training.run_folder import LOSS_MEANING
from vemo.training.trainer import train

REPO = Path(__file__).resolve().parents[1]


def test_train_loss_is_the_cross_entropy_val_loss_is(tiny_synth, tmp_path):
    """With heavy label smoothing and a reconstruction term 50x the cross-entropy, the training objective
    is far above the cross-entropy; history's train_loss must still be the plain cross-entropy, as
    val_loss is (an untrained model: both near log(6) = 1.79), not the objective (old: > 50 x recon)."""
    overrides = [
        "model.name=cnn_ae_lstm",
        "train.epochs=1",
        "train.pretrain_epochs=1",
        "train.label_smoothing=0.5",
        "train.recon_weight=50",
        "train.lr=0.0000001",
        "train.pretrain_lr=0.0000001",
        f"prepare.root={tiny_synth}",
        f"prepare.cache_dir={tmp_path / 'cache'}",
    ]
    cfg = load_config(REPO / "configs/tiny.yaml", overrides)
    prepared = prepare(cfg.prepare, progress=False, log=lambda *_: None)
    out = tmp_path / "run"
    result = train(cfg, prepared, out, progress=False, log=lambda *_: None)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["stage"] for r in rows] == ["pretrain", "joint"]
    joint = rows[-1]
    recon = float(joint["recon_loss"])
    assert recon > 0.05  # the objective would be > 2.5 above the cross-entropy
    assert float(joint["train_loss"]) < 3.0 and abs(float(joint["train_loss"]) - float(joint["val_loss"])) < 0.7
    for r in rows:
        assert 1.0 < float(r["train_loss"]) < 3.0  # smoothing and reconstruction are not in it
    records = json.loads((out / "train.json").read_text())
    assert records["loss"] == LOSS_MEANING and records["stopped"] == "all epochs"
    assert records["best_epoch"] == result.best_epoch == 1 and records["epochs_run"] == 1
    assert records["pretrain_epochs_run"] == 1 and records["pretrain_seconds"] > 0 and records["joint_seconds"] > 0
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "config.yaml").exists()
    assert json.loads((out / "environment.json").read_text())["data_manifest_sha256"]
