"""Checkpoints: written atomically, read without executing code.

A checkpoint holds only tensors and plain values (config as a dict, label names, normalisation
statistics), so `torch.load(weights_only=True)` can read it: a checkpoint from a stranger cannot run
code on load. Writes go to a temporary file that is fsynced and renamed, so a crash mid-write never
leaves a truncated file under the real name.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vemo.config import config_from_dict
from vemo.data.video import LFS_MAGIC
from vemo.io import atomic_write
from vemo.models.registry import model_from_config


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why."""


def atomic_save(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
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
    with path.open("rb") as fh:
        head = fh.read(len(LFS_MAGIC))
    if head == LFS_MAGIC:
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
    problems = [
        f"'{key}' is missing" if key not in ckpt else f"'{key}' is a {type(ckpt[key]).__name__}, not a {name}"
        for key, (kind, name) in expected.items()
        if not isinstance(ckpt.get(key), kind)
    ]
    if problems:
        raise CheckpointError(f"{path}: not a usable vemo checkpoint: {'; '.join(problems)}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, read without running code and without inflating beyond its size; raises
    CheckpointError (one line naming the file) for anything that is not a usable vemo checkpoint."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found" + (" (it is a folder)" if path.is_dir() else ""))
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: it contains Python objects beyond tensors and plain values, which "
            f"could run code when unpickled (vemo only loads with weights_only=True). Details: {_first_line(err)}"
        ) from err
    except Exception as err:  # torch raises many types for non-checkpoint bytes (KeyError, EOFError, ...)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(err)})"
        ) from err
    _check_fields(ckpt, path)
    return _upgrade(ckpt, path)


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


def temperature_of(ckpt: dict[str, Any]) -> float:
    """The softmax temperature fitted on the validation split (`vemo calibrate`); 1.0 when never fitted."""
    return float((ckpt.get("calibration") or {}).get("temperature", 1.0))


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture the checkpoint describes and load its weights."""
    cfg = config_from_dict(ckpt["config"])
    model = model_from_config(cfg.model, len(ckpt["labels"]), cfg.prepare.size)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint weights do not fit the {cfg.model.name!r} architecture it names: {str(err)[:300]}"
        ) from err
    return model.eval()


def init_from(model: nn.Module, source: str | Path, log=print) -> None:
    """Copy into `model` every weight of checkpoint `source` whose name and shape match (fine-tuning, or
    another training cycle of the same model); the rest keeps its fresh initialisation and is named.
    Refused when nothing matches: then `source` is some other architecture and the run would silently
    start from scratch."""
    ckpt = load_checkpoint(source)
    own = model.state_dict()
    taken = {k: v for k, v in ckpt["model"].items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise CheckpointError(f"train.init_from {source}: none of its weights fit this model (other architecture)")
    model.load_state_dict(taken, strict=False)
    fresh = sorted(k for k in own if k not in taken)
    tail = f"; fresh: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}" if fresh else ""
    log(f"initialised {len(taken)} of {len(own)} weight tensors from {source}{tail}")


def ship_checkpoint(src: str | Path, out: str | Path):
    """A checkpoint for distribution: weights, config, labels, statistics and calibration only (no
    optimiser or RNG state). The weights are loaded into their architecture first, so a checkpoint
    that does not fit is refused rather than shipped."""
    ckpt = load_checkpoint(src)
    model_from_checkpoint(ckpt)
    ckpt.pop("resume", None)
    ckpt["shipped_from"] = Path(src).name
    atomic_save(ckpt, out)
    return ckpt
