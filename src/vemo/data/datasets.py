"""Registry of dataset readers: each maps a root folder to records, skipped files and a label set.

New datasets slot in by registering a reader; `prepare` never branches on the dataset name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vemo.data.crema_d import read_crema_d
from vemo.data.records import Record, Skipped

Reader = Callable[[str | Path], tuple[list[Record], list[Skipped], tuple[str, ...]]]

READERS: dict[str, Reader] = {
    "crema-d": read_crema_d,
}


def read_dataset(name: str, root: str | Path) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    try:
        reader = READERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))}") from None
    return reader(root)
