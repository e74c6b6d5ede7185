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


READERS: dict[str, DatasetReader] = {
    "crema-d": DatasetReader(read_crema_d, "clips", ("target",)),
    "fer2013": DatasetReader(read_fer2013, "stills"),
    "folder": DatasetReader(read_folder, "clips"),
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
