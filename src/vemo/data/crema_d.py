"""CREMA-D reader: labels come from file names `VideoFlash/{actor}_{sentence}_{EMO}_{LVL}.flv`.

The embedded synthetic dataset is written in exactly this layout, so this one reader serves both.
Actor id is the split group: CREMA-D must be evaluated actor-independently, otherwise a model can
score well by recognising people rather than emotions.
"""

from __future__ import annotations

import re
from pathlib import Path

from vemo.data.records import CREMA_D_CODES, CREMA_D_LABELS, Record, Skipped

VIDEO_EXTENSIONS = (".flv", ".mp4", ".avi", ".mov", ".mkv", ".webm")
NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


def parse_name(path: Path) -> dict[str, str]:
    """Split a CREMA-D file name into its fields; raises ValueError naming what is wrong."""
    m = NAME.match(path.stem)
    if not m:
        raise ValueError("name does not follow CREMA-D's actor_sentence_emotion_intensity pattern")
    fields = m.groupdict()
    if fields["emotion"] not in CREMA_D_CODES:
        known = " ".join(CREMA_D_CODES)
        raise ValueError(f"unknown emotion code {fields['emotion']!r} (known: {known})")
    return fields


def read_crema_d(root: str | Path) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    """Records for every clip under `root/VideoFlash` (or `root` itself if it holds the clips)."""
    root = Path(root)
    folder = root / "VideoFlash" if (root / "VideoFlash").is_dir() else root
    if not folder.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected a CREMA-D root holding VideoFlash/)")
    records: list[Record] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS):
        try:
            f = parse_name(path)
        except ValueError as err:
            skipped.append(Skipped(str(path), str(err), "bad-name"))
            continue
        meta = {"sentence": f["sentence"], "intensity": f["level"]}
        records.append(Record(str(path), CREMA_D_CODES[f["emotion"]], f["actor"], None, meta))
    return records, skipped, CREMA_D_LABELS
