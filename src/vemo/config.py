"""Typed configuration: one dataclass per pipeline stage, loadable from YAML, overridable from the CLI.

Config is plain values (nanoGPT style): no registry of callbacks, no interpolation. A YAML file holds
any subset of the sections below; `--set section.key=value` overrides single values afterwards. Unknown
sections or keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
LEVELS = ("LO", "MD", "HI", "XX")


@dataclass
class SynthConfig:
    """Size and look of the embedded synthetic dataset (see `vemo.data.synth`)."""

    n_actors: int = 12
    sentences: list[str] = field(default_factory=lambda: ["IEO", "TIE", "DFA"])
    levels: list[str] = field(default_factory=lambda: list(LEVELS))
    width: int = 160
    height: int = 120
    fps: float = 15.0
    seconds: float = 2.0
    seed: int = 0
    first_actor: int = 1001


@dataclass
class PrepareConfig:
    """How clips become fixed-size frame tensors, and how they are split."""

    dataset: str = "crema-d"
    root: str = "data/synth"
    frames: int = 16  # T, frames sampled uniformly per clip (10-20 recommended; others warn)
    size: int = 48  # output frames are size x size grayscale
    face: str = "haar"  # "haar" (with centre-crop fallback) or "center"
    detect_frames: int = 3  # the face is detected on this many sampled frames, interpolated between
    margin: float = 0.0  # extra border around the detected box, as a fraction of its side (Haar's box
    # already spans brows to chin; a tighter crop makes expression features larger at 48x48)
    target: str = "acted"  # CREMA-D label: "acted" (file name) or "face-vote" (crowd's face-only perception)
    folds: int = 0  # >0: actor-independent k-fold; test = the actors of fold `fold`, val from the rest
    fold: int = 0
    val_fraction: float = 0.15  # of actors
    test_fraction: float = 0.2  # of actors
    seed: int = 0
    dedupe: bool = False  # drop val/test items whose pixels duplicate a training item (else: warn only)
    workers: int = 0  # 0: one per core
    cache_dir: str = "cache"


@dataclass
class ModelConfig:
    """Which registered variant to build, and its sizes."""

    name: str = "cnn_ae_lstm"
    encoder: str = "small_cnn"  # frame encoder from the encoder registry
    width: int = 16  # channels of the first conv stage; doubled at each stage
    input_pool: int = 1  # frame encoders average-pool frames by this factor first (frames without fine detail)
    feature_dim: int = 128  # frame feature size out of the CNN
    bottleneck_dim: int = 48  # autoencoder code size (variants with an autoencoder)
    hidden: int = 96  # LSTM hidden size
    lstm_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.3
    flip_average: bool = False  # at inference, average each clip's logits with its mirror image's: faces are
    # near-symmetric, so the two views are two honest looks at one expression; costs two forward passes


@dataclass
class TrainConfig:
    """Optimisation settings for both stages (frame-level pretraining, then joint training on clips)."""

    epochs: int = 6  # joint epochs; the defaults are sized for the <=5-minute demo on 2 CPU cores
    pretrain_epochs: int = 14  # frame-level encoder (+ autoencoder) pretraining epochs (0 to skip)
    pretrain_frames: int = 2  # random frames per clip per pretraining step (frames of one clip are
    # near-duplicates: 2 of them cost half of 4 and, at pretrain_lr 3e-4, are enough for the demo)
    pretrain_batch_size: int = 8  # clips per pretraining step (x pretrain_frames frames)
    pretrain_from: float = 0.5  # pretraining frames come from this fraction of the clip onwards
    pretrain_lr: float = 3e-4  # AdamW learning rate of frame pretraining; at 1e-3 the synthetic set's frame
    # classifier stayed near chance for most of the demo's epochs
    pretrain_schedule: str = "constant"  # learning rate in pretraining: "constant", "onecycle" or "cosine"
    # (cosine: linear warm-up over the first 2 epochs, at most a tenth of all steps, then cosine decay to 0)
    pretrain_optimizer: str = "adamw"  # "adamw", or "sgd" (Nesterov momentum 0.9: the long FER2013 recipe)
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    recon_weight: float = 0.3  # weight of the reconstruction loss (pretraining and joint training)
    noise_std: float = 0.15  # denoising: std of Gaussian noise added to the input frames
    recon_frames: int = 4  # frames per clip reconstructed in joint training (saves decoder compute)
    recon_fraction: float = 0.5  # share of pretraining frames that are also reconstructed (decoder cost)
    patience: int = 6  # early stopping: epochs without validation improvement
    max_minutes: float = 0.0  # stop joint training after this wall time (0: no limit)
    augment: bool = True  # random flip, shift, rotation, zoom, brightness (one transform per clip)
    aug_shift: float = 0.05  # max shift, fraction of the frame side
    aug_rotate: float = 6.0  # max rotation, degrees
    aug_scale: float = 0.06  # max zoom in or out, fraction
    aug_erase: float = 0.0  # probability of random erasing: one rectangle (2-25% of the frame) set to the mean
    onset: float = 0.0  # stills datasets, joint stage: probability that an expressive training sequence starts
    # with 1..70% neutral frames (another face's), as real expressions start from neutral (stills.with_onsets)
    freeze_encoder: bool = True  # joint stage trains autoencoder + LSTM + head only (after pretraining):
    # a T-frame clip then costs T encoder forward passes but no backward, ~3x cheaper joint epochs; the
    # default so that `vemo compare` fits 20 minutes on 2 cores (false: fine-tune the encoder too)
    seed: int = 0
    init_from: str = ""  # start from these weights ("default", "fast" or a checkpoint path): every tensor whose
    # name and shape match is copied, the rest (e.g. a classifier for other labels) starts fresh; "" = random
    threads: int = 0  # torch intra-op threads, 0: one per core
    device: str = "auto"  # "auto" (a GPU when there is one), "cpu" or "cuda"
    channels_last: bool = True


@dataclass
class Config:
    synth: SynthConfig = field(default_factory=SynthConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out: str = "runs/demo"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        from vemo.io import write_text

        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


class ConfigError(ValueError):
    """A config file or override names something that does not exist or has the wrong type."""


def _coerce(value: Any, current: Any, where: str) -> Any:
    """Check `value` against the type of the default it replaces (bool/int/float/str/list)."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return value
    if isinstance(current, str):
        return str(value)
    return value


def _update(obj: Any, values: dict[str, Any], where: str) -> None:
    names = {f.name for f in fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping")
            _update(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, _coerce(value, current, f"{where}.{key}"))


def _lookup(cfg: Any, parts: list[str]) -> Any:
    node = cfg
    for part in parts:
        node = getattr(node, part, None)
    return node


def _parse_yaml(text: str, where: str) -> Any:
    """Plain YAML only (safe_load): a Python tag or a syntax error is a one-line ConfigError naming `where`
    and the line, not a traceback. YAML's own messages span several lines; the first fact is kept."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        tag = " (vemo reads plain YAML only: Python tags are refused)" if "python/" in problem else ""
        raise ConfigError(f"{where}:{line} not valid YAML: {problem}{tag}") from None


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected a YAML config)") from None
    return _parse_yaml(text, str(path)) or {}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then `section.key=value` overrides, in that order."""
    cfg = Config()
    if path:
        data = _read_yaml(Path(path))
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
        _update(cfg, data, str(path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        nested: dict[str, Any] = {}
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # Text fields take the text as typed (a path "0123" must not become the number 83).
        node[parts[-1]] = raw if isinstance(_lookup(cfg, parts), str) else _parse_yaml(raw, f"override {item!r}")
        _update(cfg, nested, "override")
    return cfg


# Where and how fast data is prepared, not how: never taken from a checkpoint or a cache, always the caller's.
MACHINE_PREPARE = ("workers", "cache_dir")


def copy_preprocessing(
    source: PrepareConfig, target: Config | PrepareConfig, keep: Iterable[str] = ()
) -> PrepareConfig:
    """Copy the preprocessing and split settings of `source` (how a model's or a cache's clips were made)
    into `target` (a Config's prepare section, or a PrepareConfig), except the machine-only keys
    (`MACHINE_PREPARE`) and those in `keep` (the caller's explicit choices). Returns the updated section.
    The one place such copying happens: `Checkpoint.apply_preprocessing` and `Prepared.apply_preprocessing`."""
    prep = target.prepare if isinstance(target, Config) else target
    skip = {*MACHINE_PREPARE, *keep}
    for f in fields(PrepareConfig):
        if f.name not in skip:
            setattr(prep, f.name, copy.deepcopy(getattr(source, f.name)))
    return prep


def keys_in_file(path: str | Path | None) -> set[str]:
    """The `section.key` names a YAML config file sets (to tell a value given there from a default)."""
    if not path:
        return set()
    data = _read_yaml(Path(path))
    if not isinstance(data, dict):
        return set()
    return {f"{sec}.{key}" for sec, values in data.items() if isinstance(values, dict) for key in values}


def upgrade_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict as saved in a checkpoint or run folder, with keys added since filled with what the
    older code did, so an old run still describes how it was trained."""
    train = data.get("train")
    if isinstance(train, dict) and "lr" in train and "pretrain_lr" not in train:
        return {**data, "train": {**train, "pretrain_lr": train["lr"]}}  # pretraining used train.lr then
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    cfg = Config()
    _update(cfg, upgrade_saved(data), "config")
    return cfg
