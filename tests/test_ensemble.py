"""Ensembles: several checkpoints read as one model that averages their calibrated probabilities."""

import pytest
import torch
from torch import nn

from vemo.checkpoint import CheckpointError, atomic_save, combine_checkpoints, load_checkpoint
from vemo.cli import main as cli
from vemo.config import Config
from vemo.models.ensemble import Ensemble
from vemo.models.registry import fuse_conv_bn, model_from_config

LABELS = list("abcdef")
STATS = {"mean": 0.45, "std": 0.2}


def tiny(tmp_path, name, seed, temperature=1.0, width=8, size=48, labels=LABELS, stats=STATS):
    """A small random cnn_ae_lstm saved as a checkpoint with a fitted temperature; returns (path, model)."""
    cfg = Config()
    cfg.model.width, cfg.model.feature_dim, cfg.model.bottleneck_dim, cfg.model.hidden = width, 32, 16, 24
    cfg.prepare.size = size
    torch.manual_seed(seed)
    model = model_from_config(cfg.model, len(labels), size).eval()
    ckpt = {"model": model.state_dict(), "config": cfg.to_dict(), "labels": labels, "stats": stats}
    atomic_save({**ckpt, "calibration": {"temperature": temperature}, "val_acc": 0.5}, tmp_path / name)
    return tmp_path / name, model


def test_ensemble_output_is_the_mean_of_the_members_calibrated_probabilities(tmp_path):
    (a, ma), (b, mb) = tiny(tmp_path, "a.pt", 0, 0.5), tiny(tmp_path, "b.pt", 1, 2.0, width=4)
    x = torch.randn(3, 10, 48, 48)
    expected = (torch.softmax(ma(x).logits / 0.5, 1) + torch.softmax(mb(x).logits / 2.0, 1)) / 2
    ens = combine_checkpoints([a, b], log=lambda *_: None).build_model()
    out = ens(x)
    assert torch.allclose(out.logits.softmax(1), expected, atol=1e-6)
    assert out.embedding.shape == (3, ma(x).embedding.shape[1] + mb(x).embedding.shape[1])
    # members with different temperatures: the ensemble is not the plain mean of raw probabilities
    plain = (torch.softmax(ma(x).logits, 1) + torch.softmax(mb(x).logits, 1)) / 2
    assert not torch.allclose(out.logits.softmax(1), plain, atol=1e-4)


def test_ensemble_checkpoint_round_trips_fuses_and_flips_every_member(tmp_path):
    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0, 1.3), tiny(tmp_path, "b.pt", 1, 0.8)
    combine_checkpoints([a, b], flip_average=True, log=lambda *_: None).save(tmp_path / "ens.pt")
    ckpt = load_checkpoint(tmp_path / "ens.pt")
    assert ckpt.model_name == "ensemble of cnn_ae_lstm + cnn_ae_lstm"
    assert [m.source for m in ckpt.members] == [str(a), str(b)] and ckpt.temperature == 1.0
    model = ckpt.build_model()
    assert (
        isinstance(model, Ensemble) and model.flip_average and model.temperatures.tolist() == pytest.approx([1.3, 0.8])
    )
    x = torch.randn(2, 10, 48, 48)
    before = model(x).logits
    assert torch.allclose(model(x.flip(-1)).logits, before, atol=1e-5)  # every member sees both views
    fuse_conv_bn(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert torch.allclose(model(x).logits, before, atol=1e-4)
    model.flip_average = False
    assert not any(m.flip_average for m in model.members)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labels": list("abcdeg")}, "labels"),
        ({"size": 40}, "prepared differently"),
        ({"stats": {"mean": 0.5, "std": 0.2}}, "normalisation"),
    ],
)
def test_members_that_read_clips_differently_are_refused_by_name(tmp_path, change, message):
    a, _ = tiny(tmp_path, "a.pt", 0)
    b, _ = tiny(tmp_path, "b.pt", 1, **change)
    with pytest.raises(CheckpointError, match=f"b.pt: {message}"):
        combine_checkpoints([a, b], log=lambda *_: None)


def test_an_ensemble_is_not_a_member_and_one_checkpoint_is_not_an_ensemble(tmp_path):
    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0), tiny(tmp_path, "b.pt", 1)
    combine_checkpoints([a, b], log=lambda *_: None).save(tmp_path / "ens.pt")
    with pytest.raises(CheckpointError, match="already an ensemble"):
        combine_checkpoints([a, tmp_path / "ens.pt"], log=lambda *_: None)
    with pytest.raises(CheckpointError, match="two or more different"):
        combine_checkpoints([a, a], log=lambda *_: None)


def test_cli_ensemble_writes_a_checkpoint_that_predict_reads(tmp_path, capsys):
    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0), tiny(tmp_path, "b.pt", 1)
    assert cli(["ensemble", "--checkpoints", str(a), str(b), "--out", str(tmp_path / "e.pt"), "--flip-average"]) == 0
    assert "flip averaging on" in capsys.readouterr().out
    from vemo.predict.run import Predictor

    clips = torch.rand(2, 10, 48, 48).mul(255).byte().numpy()
    probs = Predictor(tmp_path / "e.pt").probabilities(clips)
    assert probs.shape == (2, len(LABELS)) and abs(float(probs.sum()) - 2) < 1e-5


def test_shipping_an_ensemble_reports_what_it_is_not_a_made_up_accuracy(tmp_path, capsys):
    # an ensemble has no epoch and no val accuracy of its own: `ship` says so rather than "0.000"
    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0, temperature=1.2), tiny(tmp_path, "b.pt", 1)
    assert cli(["ensemble", "--checkpoints", str(a), str(b), "--out", str(tmp_path / "e.pt")]) == 0
    capsys.readouterr()
    assert cli(["ship", "--checkpoint", str(tmp_path / "e.pt"), "--out", str(tmp_path / "s.pt")]) == 0
    line = capsys.readouterr().out
    assert "ensemble of cnn_ae_lstm + cnn_ae_lstm" in line and "no val accuracy recorded" in line
    assert "epoch" not in line and "0.000" not in line
    assert load_checkpoint(tmp_path / "s.pt").resume is None


def test_ship_half_halves_the_file_keeps_small_tensors_exact_and_moves_outputs_little(tmp_path, capsys):
    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0, temperature=1.2, width=16), tiny(tmp_path, "b.pt", 1, width=16)
    assert cli(["ensemble", "--checkpoints", str(a), str(b), "--out", str(tmp_path / "e.pt")]) == 0
    assert cli(["ship", "--checkpoint", str(tmp_path / "e.pt"), "--out", str(tmp_path / "full.pt")]) == 0
    assert cli(["ship", "--checkpoint", str(tmp_path / "e.pt"), "--out", str(tmp_path / "h.pt"), "--half"]) == 0
    assert "half precision" in capsys.readouterr().out
    full, half = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "h.pt")
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    for k, v in half.weights.items():
        want = torch.float16 if v.is_floating_point() and v.dim() > 1 else full.weights[k].dtype
        assert v.dtype == want, k
        if v.dim() <= 1:
            assert torch.equal(v, full.weights[k]), k  # biases, norm statistics, temperatures: exact
    x = torch.randn(4, 10, 48, 48)
    p_full = full.build_model()(x).logits.softmax(1)
    p_half = half.build_model()(x).logits.softmax(1)  # loaded back into float32 parameters
    assert next(half.build_model().parameters()).dtype == torch.float32
    assert 0 < (p_half - p_full).abs().max() < 1e-2


def test_an_ensemble_exports_to_onnx_at_any_batch_size(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from vemo.data.loading.loader import model_inputs
    from vemo.export import export_onnx

    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0, 0.7), tiny(tmp_path, "b.pt", 1, 1.4, width=4)
    combine_checkpoints([a, b], flip_average=True, log=lambda *_: None).save(tmp_path / "e.pt")
    sess = ort.InferenceSession(
        str(export_onnx(tmp_path / "e.pt", tmp_path / "e.onnx")), providers=["CPUExecutionProvider"]
    )
    reference = load_checkpoint(tmp_path / "e.pt").build_model()
    for batch in (1, 3):
        crops = torch.randint(0, 256, (batch, 10, 48, 48), dtype=torch.uint8)
        with torch.no_grad():
            want = torch.softmax(reference(model_inputs(crops, STATS)).logits, 1).numpy()
        got = sess.run(None, {"clips": crops.numpy().astype(np.float32)})[0]
        assert got.shape == (batch, len(LABELS)) and np.abs(got - want).max() < 1e-4


def test_a_damaged_member_record_is_refused_in_one_line(tmp_path):
    (a, _), (b, _) = tiny(tmp_path, "a.pt", 0), tiny(tmp_path, "b.pt", 1)
    data = combine_checkpoints([a, b], log=lambda *_: None).to_dict()
    atomic_save({**data, "members": [{"source": "a.pt"}, data["members"][1]]}, tmp_path / "no_config.pt")
    with pytest.raises(CheckpointError, match="no_config.pt: an ensemble member without a config"):
        load_checkpoint(tmp_path / "no_config.pt")
    bad = {**data["members"][1], "config": {**data["members"][1]["config"], "model": {"widht": 8}}}
    atomic_save({**data, "members": [data["members"][0], bad]}, tmp_path / "typo.pt")
    with pytest.raises(CheckpointError, match="typo.pt: an ensemble member's config does not fit"):
        load_checkpoint(tmp_path / "typo.pt")


def test_a_shipped_member_is_recorded_by_its_file_and_hash_not_only_its_name(tmp_path):
    # `default` names another model after each release: the record must still say which weights it was
    import hashlib

    from vemo.checkpoint import SHIPPED, WEIGHTS

    copy = tmp_path / "fast_copy.pt"
    copy.write_bytes((WEIGHTS / SHIPPED["fast"]).read_bytes())
    ens = combine_checkpoints(["fast", copy], log=lambda *_: None)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()[:16]
    assert ens.members[0].source.startswith(f"fast ({SHIPPED['fast']} of vemo ") and digest in ens.members[0].source
    assert ens.members[1].source == str(copy)


def test_an_ensemble_is_refused_as_train_init_from_with_a_reason(tmp_path):
    """Its weights are `members.<i>.*`: without the check it failed as 'none of its weights fit'."""
    from vemo.checkpoint import init_from

    (a, model), (b, _) = tiny(tmp_path, "a.pt", 0), tiny(tmp_path, "b.pt", 1)
    combine_checkpoints([a, b], log=lambda *_: None).save(tmp_path / "ens.pt")
    with pytest.raises(CheckpointError, match="an ensemble of 2 models; start from one of them"):
        init_from(model, tmp_path / "ens.pt", log=lambda *_: None)


def test_ship_member_takes_one_model_out_of_an_ensemble_as_it_scored_there(tmp_path, capsys):
    """The inverse of `vemo ensemble`: member I alone, with its temperature, usable as train.init_from."""
    from vemo.checkpoint import init_from

    (a, _), (b, mb) = tiny(tmp_path, "a.pt", 0, temperature=0.7), tiny(tmp_path, "b.pt", 1, temperature=1.6, width=4)
    assert cli(["ensemble", "--checkpoints", str(a), str(b), "--out", str(tmp_path / "e.pt")]) == 0
    assert cli(["ship", "--checkpoint", str(tmp_path / "e.pt"), "--member", "1", "--out", str(tmp_path / "m.pt")]) == 0
    member = load_checkpoint(tmp_path / "m.pt")
    assert member.members is None and member.config.model.width == 4
    assert member.temperature == pytest.approx(1.6) and member.labels == LABELS and member.stats == STATS
    assert member.shipped_from == "e.pt" and member.extra["member_of"] == f"e.pt#1 ({b})"
    assert member.calibration["fitted_on"] == f"as member 1 of {b}'s ensemble"
    x = torch.randn(2, 10, 48, 48)
    assert torch.equal(member.build_model()(x).logits, mb(x).logits)
    fresh = model_from_config(member.config.model, len(LABELS), 48)
    init_from(fresh, tmp_path / "m.pt", log=lambda *_: None)
    assert torch.equal(fresh.eval()(x).logits, mb(x).logits)
    capsys.readouterr()
    assert cli(["ship", "--checkpoint", str(tmp_path / "e.pt"), "--member", "2", "--out", str(tmp_path / "x.pt")]) != 0
    assert "member 2 asked for, it has 2 (0-1)" in capsys.readouterr().err
    assert cli(["ship", "--checkpoint", str(a), "--member", "0", "--out", str(tmp_path / "x.pt")]) != 0
    assert "one model, not an ensemble" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
