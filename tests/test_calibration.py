"""Temperature scaling: fitted on validation, stored in the checkpoint, used by every consumer."""

import numpy as np
import pytest
import torch

from vemo.checkpoint import Checkpoint, atomic_save, load_checkpoint
from vemo.config import Config
from vemo.evaluation.calibration import expected_calibration_error, fit_temperature, reliability
from vemo.models.registry import model_from_config


def _overconfident(n=4000, classes=5, true_t=2.5, seed=0):
    """Logits whose calibrated temperature is `true_t`: labels drawn from softmax(z), logits = true_t * z."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * true_t, y


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    logits, y = _overconfident(true_t=2.5)
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)
    logits, y = _overconfident(true_t=0.5, seed=1)  # under-confident logits get T < 1
    assert fit_temperature(logits, y) == pytest.approx(0.5, rel=0.1)


def test_scaling_lowers_ece_and_keeps_every_prediction():
    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    before, after = torch.softmax(logits, 1).numpy(), torch.softmax(logits / t, 1).numpy()
    assert np.array_equal(before.argmax(1), after.argmax(1))
    ece_before, ece_after = expected_calibration_error(before, y.numpy()), expected_calibration_error(after, y.numpy())
    assert ece_before > 0.1 and ece_after < 0.03


def test_ece_by_hand():
    # two bins used: confidence 0.9 (2 right of 2) and 0.6 (1 right of 2): ECE = (2*0.1 + 2*0.1) / 4
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 0])
    assert expected_calibration_error(probs, y, bins=10) == pytest.approx(0.1)
    r = reliability(probs, y, bins=10)
    assert sum(r["count"]) == 4 and r["accuracy"][9] == 1.0 and r["accuracy"][6] == 0.5  # bins [0.9, 1), [0.6, 0.7)


def test_checkpoint_temperature_defaults_to_one_and_is_read_back(tmp_path):
    cfg = Config()
    cfg.model.width = 8
    model = model_from_config(cfg.model, 6, 48)
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": list("abcdef"), "stats": {}}
    assert Checkpoint.from_dict(ckpt).temperature == 1.0
    atomic_save(ckpt, tmp_path / "plain.pt")
    assert load_checkpoint(tmp_path / "plain.pt").temperature == 1.0
    ckpt["calibration"] = {"temperature": 1.7}
    atomic_save(ckpt, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt").temperature == 1.7


def test_checkpoints_of_vemo_0_2_are_refused_in_one_line(tmp_path):
    from vemo.checkpoint import CheckpointError

    cfg = Config()
    cfg.model.width = 8
    weights = model_from_config(cfg.model, 6, 48).state_dict()
    # vemo 0.2 numbered the encoder's layers and recorded the training sharpness of blurred FER2013
    old_names = {k.replace("encoder.stage1.", "encoder.0."): v for k, v in weights.items()}
    for name, ckpt in {
        "numbered": {"model": old_names, "config": cfg.to_dict(), "labels": list("abcdef"), "stats": {}},
        "sharp": {"model": weights, "config": cfg.to_dict(), "labels": list("abcdef"), "stats": {"sharpness": 6.2}},
    }.items():
        atomic_save(ckpt, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError, match=r"vemo 0\.2 or older") as err:
            load_checkpoint(tmp_path / f"{name}.pt")
        assert f"{name}.pt" in str(err.value) and "\n" not in str(err.value)
        assert ("sharpness" in str(err.value)) == (name == "sharp")


def test_inference_shows_a_progress_bar_only_when_asked_and_it_changes_nothing(capsys):
    from vemo.evaluation.inference import predict

    cfg = Config()
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = 8, 32, 16, 24
    model = model_from_config(cfg.model, 4, 48).eval()
    x = torch.randint(0, 256, (70, 4, 48, 48), dtype=torch.uint8)
    stats = {"mean": 0.5, "std": 0.25}
    quiet = predict(model, x, stats, batch_size=32, temperature=1.5)
    assert capsys.readouterr().err == ""
    shown = predict(model, x, stats, batch_size=32, temperature=1.5, progress=True)
    assert "inference" in (err := capsys.readouterr().err) and "70/70" in err
    assert torch.equal(quiet["probs"], shown["probs"])
