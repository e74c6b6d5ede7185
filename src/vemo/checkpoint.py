"""Checkpoints: a model with what it needs to be used, written atomically, read without executing code.

A checkpoint file holds only tensors and plain values (config as a dict, label names, normalisation
statistics), so `torch.load(weights_only=True)` can read it: a checkpoint from a stranger cannot run
code on load. Writes go to a temporary file that is fsynced and renamed, so a crash mid-write never
leaves a truncated file under the real name.

In memory a checkpoint is a typed `Checkpoint` (`load_checkpoint`, the one loader): weights, a
`vemo.config.Config`, labels, statistics, calibration, resume state. Evaluation, predict, export,
serve, the CLI and training all read it through this module; `Checkpoint.to_dict` gives back the file's
plain-value layout for `atomic_save`.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vemo import __version__
from vemo.config import Config, ConfigError, PrepareConfig, config_from_dict, copy_preprocessing
from vemo.data.sources.video import is_lfs_pointer
from vemo.io import atomic_write
from vemo.models.ensemble import Ensemble
from vemo.models.registry import model_from_config
from vemo.provenance import file_sha256


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why."""


def atomic_save(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


WEIGHTS = Path(__file__).resolve().parent / "weights"
# name -> file in vemo/weights (see MODEL_CARD.md; the fast one MODEL_CARD_fast.md)
SHIPPED = {"default": "fer2013_cnn_ae_lstm.pt", "fast": "fer2013_fast.pt"}


def resolve_checkpoint(name: str | Path) -> Path:
    """`default` (or another shipped name) -> the weights inside the package; anything else is a path."""
    if str(name) in SHIPPED:
        path = WEIGHTS / SHIPPED[str(name)]
        if not path.exists():
            raise CheckpointError(f"the shipped model {name!r} is missing from this install ({path})")
        return path
    return Path(name)


# Entries torch.save writes into its zip archive (under one top folder); anything else is refused.
_ENTRY = re.compile(
    r"[^/]+/(data\.pkl|byteorder|version|\.format_version|\.storage_alignment|\.data/version|"
    r"\.data/serialization_id|data/\d+)"
)
# torch stores tensors uncompressed, so a genuine checkpoint declares about its own size; a small file whose
# entries declare more than this multiple of it is built to inflate in memory when loaded.
MAX_INFLATION = 4


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0]


def _check_archive(path: Path) -> None:
    """Refuse, before torch reads it, a file that is not a checkpoint at all (a Git LFS pointer) or a zip
    archive with entries torch.save never writes, or whose declared sizes exceed what the file holds."""
    size = path.stat().st_size
    if is_lfs_pointer(path):
        raise CheckpointError(
            f"{path}: a Git LFS pointer ({size} bytes), not a checkpoint: the repository was cloned without "
            "its LFS files; run `git lfs pull`"
        )
    if not zipfile.is_zipfile(path):
        return  # torch's legacy format, or not a checkpoint: torch.load says which
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint archive ({_first_line(err)})") from err
    unknown = [e.filename for e in entries if not _ENTRY.fullmatch(e.filename)]
    if unknown:
        raise CheckpointError(f"{path}: refused: entries torch.save never writes ({', '.join(unknown[:3])})")
    declared = sum(e.file_size for e in entries)
    if declared > MAX_INFLATION * size + (1 << 20):
        raise CheckpointError(
            f"{path}: refused: its entries declare {declared:,} bytes uncompressed in a {size:,}-byte file "
            "(torch stores checkpoints uncompressed; this one would inflate in memory when loaded)"
        )


def _check_fields(ckpt: Any, path: Path) -> None:
    """The fields every vemo checkpoint has, with the types the code relies on."""
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not a vemo checkpoint (missing 'model' or 'config')")
    expected = {"model": (dict, "mapping"), "config": (dict, "mapping"), "labels": ((list, tuple), "list")}
    expected["stats"] = (dict, "mapping")
    # absent or None: not there
    optional = {"calibration": (dict, "mapping"), "resume": (dict, "mapping"), "members": ((list, tuple), "list")}
    problems = [
        f"'{key}' is missing" if key not in ckpt else f"'{key}' is a {type(ckpt[key]).__name__}, not a {name}"
        for key, (kind, name) in expected.items()
        if not isinstance(ckpt.get(key), kind)
    ] + [
        f"'{key}' is a {type(ckpt[key]).__name__}, not a {name}"
        for key, (kind, name) in optional.items()
        if ckpt.get(key) is not None and not isinstance(ckpt[key], kind)
    ]
    if problems:
        raise CheckpointError(f"{path}: not a usable vemo checkpoint: {'; '.join(problems)}")


# Keys of the file that `Checkpoint` has a field for (the rest goes to `extra`, and back on save).
_FIELDS = {
    "model": "weights",
    "config": "config",
    "labels": "labels",
    "stats": "stats",
    "kind": "kind",
    "epoch": "epoch",
    "val_acc": "val_acc",
    "vemo_version": "vemo_version",
    "calibration": "calibration",
    "shipped_from": "shipped_from",
    "resume": "resume",
    "members": "members",
}


@dataclass
class Member:
    """One model of an ensemble checkpoint: the config it was trained with and the file it came from.
    Its weights are in the ensemble's own state dict (`members.<i>.*`), its temperature in `temperatures`."""

    config: Config
    source: str


@dataclass
class Checkpoint:
    """A loaded checkpoint. `weights` is the model's state dict, `config` the full training config
    (upgraded to this vemo: keys added since take what the older code did), `labels` the output classes
    in order, `stats` the input normalisation (mean, std), `calibration` what `vemo calibrate` fitted
    (None: never calibrated), `resume` the interrupted run's state (last.pt only). `kind` ("clips" or
    "stills"), `epoch`, `val_acc`, `vemo_version` and `shipped_from` are None where the file lacks them;
    any other key the file has is kept in `extra` and written back by `to_dict`. An ensemble's
    `members` name each model's config; `config` is then the first member's (all share its preprocessing)."""

    weights: dict[str, torch.Tensor]
    config: Config
    labels: list[str]
    stats: dict[str, float]
    calibration: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None
    kind: str | None = None
    epoch: int | None = None
    val_acc: float | None = None
    vemo_version: str | None = None
    shipped_from: str | None = None
    members: list[Member] | None = None  # an ensemble (`combine_checkpoints`); None: one model
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the file it was loaded from (None: built in memory)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> Checkpoint:
        """A checkpoint from the plain values of a file (checked by `load_checkpoint` first)."""
        where = path or "checkpoint"
        try:
            config = config_from_dict(dict(data["config"]))
        except ConfigError as err:
            raise CheckpointError(f"{where}: its config does not fit this vemo ({_first_line(err)})") from err
        values = {attr: data[key] for key, attr in _FIELDS.items() if key in data and key != "config"}
        values["labels"] = list(values["labels"])
        if values.get("members") is not None:
            values["members"] = [_member(m, where) for m in values["members"]]
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(config=config, extra=extra, path=path, **values)

    def to_dict(self) -> dict[str, Any]:
        """The file's layout: plain values and tensors only (readable with weights_only=True); optional
        fields that are None are left out, as they always were."""
        out: dict[str, Any] = {}
        for key, attr in _FIELDS.items():
            value = getattr(self, attr)
            if key == "config":
                value = self.config.to_dict()
            elif key == "labels":
                value = list(value)
            elif key == "members" and value is not None:
                value = [{"config": m.config.to_dict(), "source": m.source} for m in value]
            if value is not None:
                out[key] = value
        return {**out, **self.extra}

    def save(self, path: str | Path) -> None:
        """Write `to_dict()` atomically to `path`."""
        atomic_save(self.to_dict(), path)

    @property
    def temperature(self) -> float:
        """The softmax temperature fitted on the validation split (`vemo calibrate`); 1.0 when never fitted."""
        return float((self.calibration or {}).get("temperature", 1.0))

    @property
    def frame_size(self) -> int:
        """S: the model takes S x S frames."""
        return self.config.prepare.size

    @property
    def frames(self) -> int:
        """T: frames per clip the model was trained on."""
        return self.config.prepare.frames

    @property
    def preprocessing(self) -> PrepareConfig:
        """How the model's training clips were made (and which split was held out)."""
        return self.config.prepare

    @property
    def model_name(self) -> str:
        if self.members:
            return f"ensemble of {' + '.join(m.config.model.name for m in self.members)}"
        return self.config.model.name

    def build_model(self) -> nn.Module:
        """The architecture the checkpoint describes, with its weights loaded, in eval mode."""
        n, size, where = len(self.labels), self.config.prepare.size, self.path or "checkpoint"
        try:
            if self.members:
                parts = [model_from_config(m.config.model, n, size) for m in self.members]
                model: nn.Module = Ensemble(parts, [1.0] * len(parts))  # temperatures: loaded with the weights
            else:
                model = model_from_config(self.config.model, n, size)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{where}: names a model this vemo cannot build ({_first_line(err)})") from err
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as err:
            why = _misfit(model.state_dict(), self.weights) or _first_line(err)
            raise CheckpointError(
                f"{where}: its weights do not fit the {self.model_name!r} architecture it names, "
                f"with {len(self.labels)} classes ({why})"
            ) from err
        return model.eval()

    def apply_preprocessing(self, cfg: Config | PrepareConfig, keep: Iterable[str] = ()) -> PrepareConfig:
        """Copy the model's preprocessing and split settings (frames, size, face finder, detect_frames,
        margin, dataset, root, split, ...) into `cfg`, so data is prepared as the model's training data
        was. Machine-only keys (workers, cache_dir) and the keys in `keep` (what the caller chose
        explicitly) stay the caller's. Returns the updated prepare section."""
        return copy_preprocessing(self.config.prepare, cfg, keep)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint, read without running code and without inflating beyond its size; raises
    CheckpointError (one line naming the file) for anything that is not a usable vemo checkpoint."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found" + (" (it is a folder)" if path.is_dir() else ""))
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        why = _unpickling_detail(err)
        if "GLOBAL" not in why:  # no object it refused to build: the bytes are not a pickle torch wrote
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (corrupt, or another kind of file: {why})"
            ) from err
        raise CheckpointError(
            f"{path}: refused to load: it contains Python objects beyond tensors and plain values, which "
            f"could run code when unpickled (vemo only loads with weights_only=True): {why}"
        ) from err
    except Exception as err:  # torch raises many types for non-checkpoint bytes (KeyError, EOFError, ...)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)})"
        ) from err
    _check_fields(ckpt, path)
    return Checkpoint.from_dict(_upgrade(ckpt, path), path)


def _misfit(own: Mapping[str, torch.Tensor], weights: Mapping[str, Any]) -> str:
    """What differs between a model's weights and a file's, in a few words (not a state-dict dump)."""
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(getattr(weights[k], "shape", ()))]
    parts = [f"{len(v)} {what}" for v, what in ((missing, "missing"), (unexpected, "unexpected")) if v]
    if shapes:
        k = shapes[0]
        file_shape = tuple(getattr(weights[k], "shape", ()))
        parts.append(f"{len(shapes)} of another shape, e.g. {k}: {file_shape} in the file, {tuple(own[k].shape)} here")
    elif missing or unexpected:
        parts.append(f"e.g. {(missing or unexpected)[0]}")
    return "; ".join(parts)  # empty when names and shapes all match


def _unpickling_detail(err: Exception) -> str:
    """The line of torch's weights-only refusal that says what it met (torch's advice to load the file
    unsafely is left out: vemo never does)."""
    text = str(err)
    if found := re.search(r"GLOBAL (\S+)", text):
        return f"GLOBAL {found.group(1)}"
    if found := re.search(r"Unsupported operand \S+", text):
        return found.group(0)
    return _first_line(err)


def _member(data: Any, where: Any) -> Member:
    if not isinstance(data, Mapping) or not isinstance(data.get("config"), Mapping):
        raise CheckpointError(f"{where}: an ensemble member without a config")
    try:
        return Member(config_from_dict(dict(data["config"])), str(data.get("source", "?")))
    except ConfigError as err:
        why = _first_line(err)
        raise CheckpointError(f"{where}: an ensemble member's config does not fit this vemo ({why})") from err


OLD_ENCODER_NAME = re.compile(r"^encoder\.\d+\.")  # vemo <= 0.2: encoder layers by index, not by name


def _upgrade(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """Refuse, in one line, checkpoints of vemo <= 0.2: their encoder layers are numbered rather than named
    (the names changed in 0.3), and a FER2013 model of that time was trained on a blurred copy of the
    images and leaned on sharpness matching, a workaround vemo no longer has."""
    stats = ckpt.get("stats")
    sharpness = isinstance(stats, dict) and "sharpness" in stats
    weights = ckpt.get("model")
    if sharpness or (isinstance(weights, dict) and any(OLD_ENCODER_NAME.match(str(k)) for k in weights)):
        why = "it relies on sharpness matching (trained on blurred faces), removed in 0.3; " if sharpness else ""
        raise CheckpointError(
            f"{path}: written by vemo 0.2 or older, which this vemo cannot load ({why}its encoder layers "
            f"have the old numbered names): retrain it with this version"
        )
    return ckpt


def init_from(model: nn.Module, source: str | Path, log=print) -> None:
    """Copy into `model` every weight of checkpoint `source` whose name and shape match (fine-tuning, or
    another training cycle of the same model); the rest keeps its fresh initialisation and is named.
    Refused when nothing matches: then `source` is some other architecture and the run would silently
    start from scratch."""
    ckpt = load_checkpoint(source)
    if ckpt.members:
        raise CheckpointError(
            f"train.init_from {source}: an ensemble of {len(ckpt.members)} models; start from one of them "
            "(a single model's checkpoint, e.g. a run's best.pt, or `vemo ship --member I`)"
        )
    own = model.state_dict()
    taken = {k: v for k, v in ckpt.weights.items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise CheckpointError(f"train.init_from {source}: none of its weights fit this model (other architecture)")
    model.load_state_dict(taken, strict=False)
    fresh = sorted(k for k in own if k not in taken)
    tail = f"; fresh: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}" if fresh else ""
    log(f"initialised {len(taken)} of {len(own)} weight tensors from {source}{tail}")


def half_precision(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` with every kernel and matrix (a floating tensor of 2 or more dimensions) stored as
    float16: half the file, for a model that is computed in float32 anyway (loading casts them back).
    Biases, normalisation statistics and temperatures (1-d and 0-d) stay exact: they are a sliver of
    the size, and batch-norm variances and temperatures are where half precision's 3 digits would show."""
    return {k: v.half() if v.is_floating_point() and v.dim() > 1 else v for k, v in weights.items()}


def ship_checkpoint(src: str | Path, out: str | Path, half: bool = False, member: int | None = None) -> Checkpoint:
    """A checkpoint for distribution: weights, config, labels, statistics and calibration only (no
    optimiser or RNG state). The weights are loaded into their architecture first, so a checkpoint
    that does not fit is refused rather than shipped. `half`: kernels and matrices stored in half
    precision (`half_precision`); score the shipped file, not its source, since its outputs move a little.
    `member`: ship that member of an ensemble alone (`member_checkpoint`)."""
    ckpt = load_checkpoint(src)
    if member is not None:
        ckpt = member_checkpoint(ckpt, member)
    ckpt.build_model()
    ckpt.resume = None
    ckpt.shipped_from = Path(src).name
    if half:
        ckpt.weights = half_precision(ckpt.weights)
        overflow = [k for k, v in ckpt.weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if overflow:
            raise CheckpointError(f"{src}: {overflow[0]} does not fit half precision (beyond ±65504); ship it whole")
        ckpt.build_model()
    ckpt.save(out)
    return ckpt


def member_checkpoint(ckpt: Checkpoint, index: int) -> Checkpoint:
    """Member `index` of ensemble `ckpt` as a checkpoint of its own: its weights, its config, and its
    temperature as its calibration, so it scores as it did inside the ensemble. Why: a shipped ensemble
    is often the only copy of a member (a run folder does not travel), and a member is what further
    training (`train.init_from`) or a new ensemble starts from."""
    if not ckpt.members:
        raise CheckpointError(f"{ckpt.path or 'checkpoint'}: one model, not an ensemble; it has no members to take")
    n = len(ckpt.members)
    if not 0 <= index < n:
        raise CheckpointError(f"{ckpt.path or 'checkpoint'}: member {index} asked for, it has {n} (0-{n - 1})")
    prefix = f"members.{index}."
    member = ckpt.members[index]
    temperature = float(ckpt.weights["temperatures"][index])
    return Checkpoint(
        weights={k[len(prefix) :]: v for k, v in ckpt.weights.items() if k.startswith(prefix)},
        config=member.config,
        labels=list(ckpt.labels),
        stats=dict(ckpt.stats),
        calibration={"temperature": temperature, "fitted_on": f"as member {index} of {member.source}'s ensemble"},
        kind=ckpt.kind,
        vemo_version=ckpt.vemo_version,
        extra={"member_of": f"{ckpt.path.name if ckpt.path else 'ensemble'}#{index} ({member.source})"},
    )


# Settings every member of an ensemble must share: the clips they read are made once, for all of them.
SHARED_PREPROCESSING = ("frames", "size", "face", "detect_frames", "margin", "dataset", "target")


def member_source(name: str | Path) -> str:
    """How an ensemble records a member: the path as given, or for a shipped name (whose file changes
    with each release) the name, the file, this vemo's version and the file's SHA-256 prefix, so the
    record still identifies the weights after `default` has become another model."""
    if str(name) not in SHIPPED:
        return str(name)
    path = resolve_checkpoint(name)
    return f"{name} ({path.name} of vemo {__version__}, sha256 {file_sha256(path)[:16]})"


def combine_checkpoints(sources: Sequence[str | Path], flip_average: bool | None = None, log=print) -> Checkpoint:
    """One checkpoint that averages the calibrated probabilities of `sources` (see models/ensemble.py).
    `flip_average` True/False sets every member's `model.flip_average` (None: each keeps its own).
    Refused, naming the checkpoint and the setting, unless all have the same labels, normalisation and
    preprocessing; an ensemble is not a member (combine its members instead)."""
    if len({str(s) for s in sources}) < 2:
        raise CheckpointError("an ensemble needs two or more different checkpoints")
    ckpts = {str(s): load_checkpoint(s) for s in sources}
    (name0, first), *others = ckpts.items()
    for src, c in ckpts.items():
        if c.members:
            raise CheckpointError(f"{src}: already an ensemble; combine its member checkpoints instead")
    for src, c in others:
        if c.labels != first.labels:
            raise CheckpointError(f"{src}: labels {c.labels} differ from {name0}'s {first.labels}")
        differ = [k for k in SHARED_PREPROCESSING if getattr(c.preprocessing, k) != getattr(first.preprocessing, k)]
        if differ:
            raise CheckpointError(f"{src}: prepared differently from {name0} ({', '.join(differ)})")
        if any(abs(float(c.stats.get(k, 0)) - float(v)) > 1e-6 for k, v in first.stats.items()):
            raise CheckpointError(f"{src}: normalisation {c.stats} differs from {name0}'s {first.stats}")
    for src, c in ckpts.items():
        if flip_average is not None:
            c.config.model.flip_average = flip_average
        val = "?" if c.val_acc is None else f"{c.val_acc:.4f}"
        flip = "on" if c.config.model.flip_average else "off"
        log(f"member {src}: {c.model_name}, temperature {c.temperature:.3f}, flip averaging {flip}, val accuracy {val}")
    model = Ensemble([c.build_model() for c in ckpts.values()], [c.temperature for c in ckpts.values()])
    return Checkpoint(
        weights=model.state_dict(),
        config=first.config,
        labels=first.labels,
        stats=first.stats,
        kind=first.kind,
        vemo_version=__version__,
        members=[Member(c.config, member_source(src)) for src, c in ckpts.items()],
    )
