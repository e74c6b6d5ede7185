import pytest
import yaml

from vemo.config import Config, ConfigError, config_from_dict, load_config


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 0.01\nmodel:\n  name: cnn_lstm\nout: runs/x\n")
    cfg = load_config(path, ["train.epochs=3", "synth.sentences=IEO,DFA"])
    assert cfg.train.epochs == 3  # override wins over the file
    assert cfg.train.lr == 0.01
    assert cfg.model.name == "cnn_lstm"
    assert cfg.out == "runs/x"
    assert cfg.synth.sentences == ["IEO", "DFA"]


def test_int_accepted_for_float_and_roundtrip():
    cfg = load_config(None, ["train.lr=1"])
    assert isinstance(cfg.train.lr, float)
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key 'epoch'"),
        ("trian.epochs=3", "unknown key 'trian'"),
        ("train.epochs=many", "expected an integer"),
        ("train.augment=3", "expected true/false"),
        ("train.epochs", "expected section.key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_shipped_configs_load_and_demo_matches_defaults():
    from pathlib import Path

    from vemo.config import Config

    configs = Path(__file__).resolve().parents[1] / "configs"
    for path in configs.glob("*.yaml"):
        load_config(path)  # raises on any unknown key or wrong type
    assert load_config(configs / "demo.yaml") == Config()  # the documented demo config is what runs
    written = yaml.safe_load((configs / "demo.yaml").read_text())
    assert written == Config().to_dict()  # and it writes every default out, new settings included


def test_text_overrides_are_kept_as_typed():
    cfg = load_config(None, ["prepare.root=0123", "out=on", "train.epochs=0x10"])
    assert cfg.prepare.root == "0123" and cfg.out == "on"  # not the YAML octal 83 or the boolean True
    assert cfg.train.epochs == 16  # numbers still parse as numbers


def test_a_config_saved_before_pretrain_lr_existed_reads_as_it_trained():
    # checkpoints written before train.pretrain_lr pretrained at train.lr; a new config has its own value
    old = Config().to_dict()
    del old["train"]["pretrain_lr"]
    old["train"]["lr"] = 0.002
    assert config_from_dict(old).train.pretrain_lr == 0.002
    assert config_from_dict(Config().to_dict()).train.pretrain_lr == Config().train.pretrain_lr != 0.002


def test_evaluate_takes_the_data_location_from_any_source_and_other_prepare_keys_only_from_set(tmp_path):
    from vemo.evaluation.evaluate import user_data_choice

    assert user_data_choice([], [], None) == (False, ())  # nothing given: the checkpoint's own data
    assert user_data_choice(["prepare.root"], [], None) == (True, ())
    assert user_data_choice([], ["prepare.dataset=folder", "prepare.target=face-vote", "prepare.workers=1"], None) == (
        True,
        ("target",),
    )
    cfg = tmp_path / "x.yaml"
    cfg.write_text("prepare:\n  root: somewhere\n  frames: 12\n")
    assert user_data_choice([], [], str(cfg)) == (True, ())  # a file's frames describe a run, not this model
