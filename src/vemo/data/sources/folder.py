"""Folder-of-clips reader: `ROOT/<label>/<clip>.(mp4|avi|mov|mkv|webm|flv)` or `ROOT/<label>/<clip>/<frames>`.

A sub-folder of images is one clip, its frames in file-name order. Label folders are mapped to
canonical names (`Anger` -> `angry`); the label set is whatever folders exist. Nothing says who is in
a clip, so each clip is its own split group unless its name follows CREMA-D's pattern, in which case
the actor is the group (a folder of CREMA-D clips sorted by emotion stays actor-independent).
"""

from __future__ import annotations

from pathlib import Path

from vemo.data.sources.crema_d import NAME as CREMA_NAME
from vemo.data.sources.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from vemo.data.sources.records import Record, Skipped, access_problem, canonical_label, system_entry


def _group(clip: Path) -> str:
    m = CREMA_NAME.match(clip.stem)
    return m["actor"] if m else str(clip)


def _entries(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """The entries of a folder in name order, and those that cannot be opened (a dangling or looping
    link, no permission) as Skipped; a folder that cannot be listed is itself one Skipped."""
    try:
        paths = sorted(folder.iterdir())
    except OSError as err:
        return [], [Skipped(str(folder), f"cannot list this folder ({err.strerror})", "unreadable")]
    problems = {p: access_problem(p) for p in paths}
    return [p for p in paths if problems[p] is None], [s for s in problems.values() if s is not None]


def _clip_record(clip: Path, label: str) -> Record | Skipped:
    if clip.is_dir():
        entries, _ = _entries(clip)
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
            return Skipped(str(clip), "folder holds no .png/.jpg frames", "empty")
        return Record(str(clip), label, _group(clip), None, {"frames_folder": True})
    if clip.suffix.lower() in VIDEO_EXTENSIONS:
        return Record(str(clip), label, _group(clip))
    return Skipped(str(clip), f"not a video ({', '.join(VIDEO_EXTENSIONS)}) or frames folder", "not-video")


def read_folder(root: str | Path) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected <label>/<clip> sub-folders)")
    entries, skipped = _entries(root)
    entries = [p for p in entries if not system_entry(p)]
    skipped += [Skipped(str(p), "not inside a <label>/ folder", "no-label") for p in entries if not p.is_dir()]
    records: list[Record] = []
    for label_dir in (p for p in entries if p.is_dir()):
        label = canonical_label(label_dir.name)
        clips, unusable = _entries(label_dir)
        skipped += unusable
        for item in (_clip_record(clip, label) for clip in clips if not system_entry(clip)):
            (records if isinstance(item, Record) else skipped).append(item)
    labels = tuple(sorted({r.label for r in records}))
    return records, skipped, labels
