"""Folder-of-clips reader: `ROOT/<label>/<clip>.(mp4|avi|mov|mkv|webm|flv)` or `ROOT/<label>/<clip>/<frames>`.

A sub-folder of images is one clip, its frames in file-name order. Label folders are mapped to
canonical names (`Anger` -> `angry`); the label set is whatever folders exist. Nothing says who is in
a clip, so each clip is its own split group unless its name follows CREMA-D's pattern, in which case
the actor is the group (a folder of CREMA-D clips sorted by emotion stays actor-independent).
"""

from __future__ import annotations

from pathlib import Path

from vemo.data.crema_d import NAME as CREMA_NAME
from vemo.data.crema_d import VIDEO_EXTENSIONS
from vemo.data.fer2013 import IMAGE_EXTENSIONS
from vemo.data.records import Record, Skipped, canonical_label


def _group(clip: Path) -> str:
    m = CREMA_NAME.match(clip.stem)
    return m["actor"] if m else str(clip)


def read_folder(root: str | Path) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected <label>/<clip> sub-folders)")
    records: list[Record] = []
    skipped: list[Skipped] = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = canonical_label(label_dir.name)
        for clip in sorted(label_dir.iterdir()):
            if clip.is_dir():
                frames = [p for p in clip.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
                if not frames:
                    skipped.append(Skipped(str(clip), "folder holds no .png/.jpg frames", "empty"))
                    continue
                records.append(Record(str(clip), label, _group(clip), None, {"frames_folder": True}))
            elif clip.suffix.lower() in VIDEO_EXTENSIONS:
                records.append(Record(str(clip), label, _group(clip)))
            else:
                skipped.append(
                    Skipped(str(clip), f"not a video ({', '.join(VIDEO_EXTENSIONS)}) or frames folder", "not-video")
                )
    labels = tuple(sorted({r.label for r in records}))
    return records, skipped, labels
