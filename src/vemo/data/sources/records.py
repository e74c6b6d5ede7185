"""The one record type every dataset reader produces, and the canonical label names.

Readers differ (CREMA-D file names, FER2013 CSV rows, folders of clips) but all yield `Record`s:
where the sample comes from, its label, the group it must not be split across (the actor), and any
split the dataset itself prescribes. Everything downstream sees only records.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vemo.data.sources.video import ClipError, check_file

# Labels are stored under one vocabulary so models trained on one dataset can be evaluated on another
# by name. CREMA-D's three-letter codes map onto the FER2013 names.
CREMA_D_CODES = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMA_D_LABELS = tuple(CREMA_D_CODES.values())
FER_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# Spellings met in folder names of other datasets, mapped onto the canonical names.
SYNONYMS = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "calm": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
    **{code.lower(): name for code, name in CREMA_D_CODES.items()},
}


def check_table_file(path: Path) -> None:
    """Raise ValueError naming `path` when a metadata CSV is missing, empty or a Git LFS pointer (a
    dataset cloned without its media), before a CSV parser reads it as a strange header."""
    try:
        check_file(path, "the CSV")
    except ClipError as err:
        raise ValueError(f"{path}: {err}") from None


def system_entry(path: Path) -> bool:
    """A hidden or tool-made entry (`.ipynb_checkpoints`, `.DS_Store`, `__MACOSX`) that no dataset means."""
    return path.name.startswith((".", "__"))


def canonical_label(name: str) -> str:
    """Lower-case label name with common synonyms mapped (`Anger` -> `angry`, `HAP` -> `happy`)."""
    key = name.strip().lower()
    return SYNONYMS.get(key, key)


@dataclass(frozen=True)
class Record:
    """One sample to prepare: a video file, a folder of frames, or a still."""

    source: str
    label: str
    group: str  # identity that must stay on one side of a split (actor id)
    split: str | None = None  # a split the dataset prescribes, else None (vemo assigns one)
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Skipped:
    """A sample that could not be used, and why, in words a user can act on."""

    source: str
    reason: str
    kind: str = "unusable"  # short category for summaries: corrupt, lfs-pointer, bad-name, ...


def access_problem(path: str | Path) -> Skipped | None:
    """Why a source file or frames folder cannot be opened, as a Skipped, or None when it can.

    A dangling or looping symbolic link, a file removed since it was listed, or one without read
    permission is skipped with its reason, so one such file never stops a batch of thousands.
    """
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return Skipped(str(path), "symbolic link loop: the link never reaches a file", "link-loop")
        if isinstance(err, FileNotFoundError) and os.path.islink(path):
            return Skipped(str(path), f"dangling symbolic link to {os.readlink(path)}", "broken-link")
        if isinstance(err, FileNotFoundError):
            return Skipped(str(path), "file does not exist (removed while preparing?)", "missing")
        return Skipped(str(path), f"cannot read it ({err.strerror})", "unreadable")
    mode = os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)
    if not os.access(path, mode):
        return Skipped(str(path), "permission denied: cannot read it", "unreadable")
    return None
