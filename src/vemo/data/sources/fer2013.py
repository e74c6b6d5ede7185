"""FER2013 reader: `fer2013.csv` (emotion,pixels,Usage) or folders of `<class>/*.jpg`.

The protocol (why: PublicTest must not choose the model it then scores):
- Training -> train, except a validation split carved from it: `VAL_FRACTION` (10%) of each class,
  picked by a fixed seed (`VAL_SEED`) from the images sorted by name, so it is the same on every
  machine; model selection and early stopping use it. A dataset that brings its own val split keeps it.
- PublicTest -> test: the reported figure, evaluated once at the end.
- PrivateTest -> private-test: never used by vemo's own runs (the shipped model is judged on it);
  `vemo evaluate --split private-test` scores it.

Layouts understood, in this order:
- a CSV file (or a folder holding `fer2013.csv`), split by its Usage column. Each line is one record
  (FER2013 has no multi-line fields), so a malformed line (an unclosed quote) is skipped alone with its
  number and never swallows the lines after it; a row with a bad label, a pixel count other than
  48x48 = 2304 or an unknown Usage is skipped with its row number. Records and skipped rows add up to
  the file's lines after the header;
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

import numpy as np

from vemo.data.sources.formats import IMAGE_EXTENSIONS
from vemo.data.sources.records import FER_LABELS, Record, Skipped, canonical_label, check_table_file, system_entry
from vemo.data.sources.video import ClipError, read_image

FER_CODES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the CSV's 0..6
USAGE = {"training": "train", "publictest": "test", "privatetest": "private-test"}
VAL_FRACTION = 0.1  # of each class of Training, carved off for validation (part of the protocol)
VAL_SEED = 2013
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
FER_SIDE = 48  # every FER2013 image is 48x48: a row with another pixel count is damaged, not a smaller face


def _split_from_name(path: Path, folder_split: str | None) -> str | None:
    prefix = path.stem.split("_", 1)[0].lower()
    return USAGE.get(prefix, folder_split)


def _read_folders(root: Path) -> tuple[list[Record], list[Skipped]]:
    records: list[Record] = []
    skipped: list[Skipped] = []
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not system_entry(p))
    if subdirs and all(p.name.lower() in SPLIT_FOLDERS for p in subdirs):
        class_dirs = [
            (c, SPLIT_FOLDERS[s.name.lower()])
            for s in subdirs
            for c in sorted(s.iterdir())
            if c.is_dir() and not system_entry(c)
        ]
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


def _parse_line(line: str) -> tuple[str, str, str] | str:
    """(emotion, pixels, usage) of one CSV line, or why the line is malformed. Parsed alone, so an
    unclosed quote ends at the line's end instead of running on into the lines after it."""
    if not line.strip():
        return "empty line"
    try:
        fields = next(csv.reader([line], strict=True), [])
    except csv.Error as err:
        return f"malformed CSV line ({err})"
    return tuple((fields + ["", "", ""])[:3])  # type: ignore[return-value]


@lru_cache(maxsize=2)
def _csv_rows(path: str, mtime_ns: int) -> dict[int, tuple[str, str, str] | str]:
    """Row number (1 = first data row, i.e. line 2) -> (emotion, pixels, usage) as text, or the reason
    the line is malformed; one entry per line after the header. Parsed once per process."""
    check_table_file(Path(path))
    # utf-8-sig: a spreadsheet's byte-order mark is no part of the header
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:  # a bad byte spoils its row only
        lines = (line.removesuffix("\r") for line in _lines(fh))
        header = [h.strip().lower() for h in next(csv.reader([next(lines, "")]), [])]
        if header[:2] != ["emotion", "pixels"]:
            raise ValueError(f"{path}: expected a header 'emotion,pixels[,Usage]', got {','.join(header)!r}")
        rows = {n: _parse_line(line) for n, line in enumerate(lines, start=1)}
    if header[2:3] == ["usage"]:  # a file with a Usage column: a row without one has lost its split
        return {n: _NO_USAGE if isinstance(r, tuple) and not r[2].strip() else r for n, r in rows.items()}
    return rows  # no Usage column: vemo splits the rows itself


_NO_USAGE = "no Usage value (expected Training, PublicTest or PrivateTest, as the header's Usage column says)"


def _lines(fh):
    """The file's lines, split at "\n" only (a stray "\r" inside a line stays in it, a malformed field)."""
    rest = ""
    while chunk := fh.read(1 << 20):
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _rows(path: Path) -> dict[int, tuple[str, str, str] | str]:
    return _csv_rows(str(path), path.stat().st_mtime_ns)


def _check_row(emotion: str, pixels: str, usage: str) -> tuple[str, str | None]:
    """(label, split) of a CSV row; ValueError saying what is wrong with it."""
    if not emotion.strip().isdigit() or not 0 <= int(emotion) < len(FER_CODES):
        raise ValueError(f"bad emotion label {emotion!r} (expected 0-6)")
    n = len(pixels.split())
    if n != FER_SIDE * FER_SIDE:
        raise ValueError(f"{n} pixel values, expected {FER_SIDE * FER_SIDE} (a {FER_SIDE}x{FER_SIDE} FER2013 image)")
    usage_key = usage.strip().lower()
    if usage_key and usage_key not in USAGE:
        raise ValueError(f"unknown Usage {usage!r} (expected Training, PublicTest or PrivateTest)")
    return FER_CODES[int(emotion)], USAGE.get(usage_key)


def _read_csv(path: Path) -> tuple[list[Record], list[Skipped]]:
    records: list[Record] = []
    skipped: list[Skipped] = []
    for n, row in _rows(path).items():
        source = f"{path}{ROW_MARK}{n}"
        try:
            if isinstance(row, str):
                raise ValueError(row)
            label, split = _check_row(*row)
        except ValueError as err:
            skipped.append(Skipped(source, f"CSV row {n} (line {n + 1}): {err}", "bad-row"))
            continue
        records.append(Record(source, label, source, split))
    return records, skipped


def carve_validation(records: list[Record], fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> list[Record]:
    """Move a stratified `fraction` of the train records to val: per label, the images sorted by source
    and shuffled with `seed`, the first round(fraction * n) taken. Unchanged when a val split exists."""
    if any(r.split == "val" for r in records):
        return records
    rng = np.random.default_rng(seed)
    to_val: set[str] = set()
    for label in sorted({r.label for r in records if r.split == "train"}):
        sources = sorted(r.source for r in records if r.split == "train" and r.label == label)
        order = rng.permutation(len(sources))
        to_val.update(sources[i] for i in order[: round(fraction * len(sources))])
    return [Record(r.source, r.label, r.group, "val") if r.source in to_val else r for r in records]


def read_fer2013(root: str | Path) -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    root = Path(root)
    csv_path = root if root.suffix.lower() == ".csv" else root / "fer2013.csv"
    if csv_path.is_file():
        records, skipped = _read_csv(csv_path)
    elif root.is_dir():
        records, skipped = _read_folders(root)
    else:
        raise FileNotFoundError(f"{root}: no such file or folder (expected fer2013.csv or folders of <class>/*.jpg)")
    return carve_validation(records), skipped, FER_LABELS


def csv_row(source: str) -> tuple[str, int | None]:
    """(file, row) of a record's source: `data.csv#row12` is row 12 of data.csv; any other source (an
    image whose name merely holds '#row', say `x#row1.jpg`) is a file of its own, row None."""
    path, mark, n = source.rpartition(ROW_MARK)
    if mark and path.lower().endswith(".csv") and n.isdigit():
        return path, int(n)
    return source, None


def load_still(source: str) -> np.ndarray:
    """The grayscale uint8 image of a record: an image file, or `file.csv#rowN`. Raises ClipError."""
    path, row = csv_row(source)
    if row is not None:
        return _row_image(_rows(Path(path)).get(row, "no such row in the file"), str(row))
    return read_image(source)  # missing, empty, Git LFS pointer, unreadable, truncated: each said so


def _row_image(row: tuple[str, str, str] | str, n: str) -> np.ndarray:
    """The 48x48 image of a CSV row (checked again: the file may have changed since it was listed)."""
    try:
        if isinstance(row, str):
            raise ValueError(row)
        _check_row(*row)
    except ValueError as err:
        raise ClipError(f"CSV row {n}: {err}", "bad-row") from None
    try:
        values = np.array(row[1].split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise ClipError(f"CSV row {n}: pixel values are not integers in 0-255", "bad-row") from None
    if values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise ClipError(f"CSV row {n}: pixel values outside 0-255", "bad-row")
    return values.reshape(FER_SIDE, FER_SIDE).astype(np.uint8)
