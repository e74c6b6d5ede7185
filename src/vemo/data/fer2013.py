"""FER2013 reader: `fer2013.csv` (emotion,pixels,Usage) or folders of `<class>/*.jpg`.

Layouts understood, in this order:
- a CSV file (or a folder holding `fer2013.csv`): Usage Training -> train, PublicTest -> val,
  PrivateTest -> test; a row with a bad label or pixel count is skipped with its row number;
- `ROOT/<split>/<class>/*.jpg|png` (Kaggle's `train/` and `test/` folders);
- `ROOT/<class>/*.jpg|png`: one folder of classes, e.g. a test folder on its own.
The Usage prefix of a file name (`PublicTest_123.jpg`) decides the split when present; otherwise the
split folder's name does (train -> train, val/valid/validation -> val, test -> test); a folder of
classes on its own is all "test", since it is something to evaluate on.

FER2013 has no identity information, so each image is its own split group. Images are 48x48 face
crops already: vemo does not detect faces in them, it only resizes to `prepare.size`.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from vemo.data.records import FER_LABELS, Record, Skipped, canonical_label
from vemo.data.video import ClipError, check_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
FER_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the CSV's 0..6
USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
SPLIT_FOLDERS.update(USAGE)
ROW_MARK = "#row"


def _split_from_name(path: Path, folder_split: str | None) -> str | None:
    prefix = path.stem.split("_", 1)[0].lower()
    return USAGE.get(prefix, folder_split)


def _read_folders(root: Path) -> tuple[list[Record], list[Skipped]]:
    records: list[Record] = []
    skipped: list[Skipped] = []
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if subdirs and all(p.name.lower() in SPLIT_FOLDERS for p in subdirs):
        class_dirs = [(c, SPLIT_FOLDERS[s.name.lower()]) for s in subdirs for c in sorted(s.iterdir()) if c.is_dir()]
    else:
        class_dirs = [(c, "test") for c in subdirs]
    for cdir, folder_split in class_dirs:
        label = canonical_label(cdir.name)
        files = sorted(p for p in cdir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if label not in FER_LABELS:
            skipped += [Skipped(str(p), f"unknown label folder {cdir.name!r}", "unknown-label") for p in files]
            continue
        for p in files:
            records.append(Record(str(p), label, str(p), _split_from_name(p, folder_split)))
    return records, skipped


@lru_cache(maxsize=2)
def _csv_rows(path: str, mtime_ns: int) -> dict[int, tuple[str, str, str]]:
    """Row number (1 = first data row) -> (emotion, pixels, usage) as text; parsed once per process."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["emotion", "pixels"]:
            raise ValueError(f"{path}: expected a header 'emotion,pixels[,Usage]', got {','.join(header)!r}")
        return {n: tuple((row + ["", "", ""])[:3]) for n, row in enumerate(reader, start=1)}  # type: ignore[misc]


def _rows(path: Path) -> dict[int, tuple[str, str, str]]:
    return _csv_rows(str(path), path.stat().st_mtime_ns)


def _check_row(emotion: str, pixels: str, usage: str) -> tuple[str, str | None]:
    """(label, split) of a CSV row; ValueError saying what is wrong with it."""
    if not emotion.strip().isdigit() or not 0 <= int(emotion) < len(FER_CODES):
        raise ValueError(f"bad emotion label {emotion!r} (expected 0-6)")
    n = len(pixels.split())
    if n == 0 or int(round(n**0.5)) ** 2 != n:
        raise ValueError(f"{n} pixel values do not make a square image (FER2013 has 2304 = 48x48)")
    usage_key = usage.strip().lower()
    if usage_key and usage_key not in USAGE:
        raise ValueError(f"unknown Usage {usage!r} (expected Training, PublicTest or PrivateTest)")
    return FER_CODES[int(emotion)], USAGE.get(usage_key)


def _read_csv(path: Path) -> tuple[list[Record], list[Skipped]]:
    records: list[Record] = []
    skipped: list[Skipped] = []
    for n, (emotion, pixels, usage) in _rows(path).items():
        source = f"{path}{ROW_MARK}{n}"
        try:
            label, split = _check_row(emotion, pixels, usage)
        except ValueError as err:
            skipped.append(Skipped(source, f"CSV row {n}: {err}", "bad-row"))
            continue
        records.append(Record(source, label, source, split))
    return records, skipped


def read_fer2013(root: str | Path) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    root = Path(root)
    csv_path = root if root.suffix.lower() == ".csv" else root / "fer2013.csv"
    if csv_path.is_file():
        records, skipped = _read_csv(csv_path)
    elif root.is_dir():
        records, skipped = _read_folders(root)
    else:
        raise FileNotFoundError(f"{root}: no such file or folder (expected fer2013.csv or folders of <class>/*.jpg)")
    return records, skipped, FER_LABELS


def load_still(source: str) -> np.ndarray:
    """The grayscale uint8 image of a record: an image file, or `file.csv#rowN`. Raises ClipError."""
    if ROW_MARK in source:
        path, _, n = source.rpartition(ROW_MARK)
        emotion, pixels, usage = _rows(Path(path))[int(n)]
        try:
            values = np.array(pixels.split(), dtype=np.int64)
        except (ValueError, OverflowError):
            raise ClipError(f"CSV row {n}: pixel values are not integers in 0-255", "bad-row") from None
        if values.min(initial=0) < 0 or values.max(initial=0) > 255:
            raise ClipError(f"CSV row {n}: pixel values outside 0-255", "bad-row")
        side = int(round(len(values) ** 0.5))
        return values.reshape(side, side).astype(np.uint8)
    check_file(source)  # missing, empty, Git LFS pointer: the same reasons as for videos
    image = cv2.imread(source, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ClipError("unreadable image (not a valid JPEG/PNG)", "unreadable")
    return image
