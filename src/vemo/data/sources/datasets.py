"""Registry of dataset readers: each maps a root folder to records, skipped files and a label set.

New datasets slot in by registering a reader; `prepare` never branches on the dataset name, only on
the reader's `kind`: "clips" are decoded, face-tracked videos (or frame folders), "stills" are face
images that become sequences by the protocol in `vemo.data.preprocessing.stills`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vemo.config import PrepareConfig
from vemo.data.sources.crema_d import read_crema_d
from vemo.data.sources.fer2013 import read_fer2013
from vemo.data.sources.folder import read_folder
from vemo.data.sources.records import Record, Skipped

ReadFn = Callable[..., tuple[list[Record], list[Skipped], tuple[str, ...]]]


@dataclass(frozen=True)
class DatasetReader:
    read: ReadFn
    kind: str  # "clips" or "stills"
    options: tuple[str, ...] = ()  # PrepareConfig fields passed to `read` as keyword arguments
    layout: str = ""  # the files it looks for, for the error when it finds none


READERS: dict[str, DatasetReader] = {
    "crema-d": DatasetReader(
        read_crema_d, "clips", ("target",), "ROOT/VideoFlash/<actor>_<sentence>_<EMO>_<level>.flv, or the clips in ROOT"
    ),
    "fer2013": DatasetReader(
        read_fer2013,
        "stills",
        (),
        "ROOT/fer2013.csv, ROOT/train/<class>/*.jpg + ROOT/test/<class>/*.jpg, or ROOT/<class>/*.jpg",
    ),
    "folder": DatasetReader(read_folder, "clips", (), "ROOT/<label>/<clip>.mp4 or ROOT/<label>/<clip>/<frame>.png"),
}


def get_reader(name: str) -> DatasetReader:
    try:
        return READERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))}") from None


def read_dataset(cfg: PrepareConfig) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    """Records of the dataset `cfg` names, with the reader options it sets (e.g. CREMA-D's target)."""
    reader = get_reader(cfg.dataset)
    return reader.read(cfg.root, **{k: getattr(cfg, k) for k in reader.options})
