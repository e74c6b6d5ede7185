"""CREMA-D reader: labels come from file names `VideoFlash/{actor}_{sentence}_{EMO}_{LVL}.flv`.

The embedded synthetic dataset is written in exactly this layout, so this one reader serves both.
Actor id is the split group: CREMA-D must be evaluated actor-independently, otherwise a model can
score well by recognising people rather than emotions.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from vemo.data.sources.formats import VIDEO_EXTENSIONS
from vemo.data.sources.records import CREMA_D_CODES, CREMA_D_LABELS, Record, Skipped, check_table_file

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


# FaceVote letters in processedResults/summaryTable.csv: the crowd's majority label from the face alone.
VOTE_CODES = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
TARGETS = ("acted", "face-vote")


def read_table(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of one of CREMA-D's metadata CSVs, every value a stripped string ('' where a short row has
    none). ValueError naming the file when it is a Git LFS pointer, empty, not UTF-8 text or lacks one
    of `columns`: CREMA-D's repository stores these with LFS too."""
    check_table_file(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in columns if c not in header]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(missing)} (its header: {','.join(header)!r})")
            reader.fieldnames = header
            return [{k: (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in reader]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_demographics(root: Path) -> dict[str, dict[str, str]]:
    """Actor id -> {age, sex, race, ethnicity} from VideoDemographics.csv, if present."""
    path = root / "VideoDemographics.csv"
    if not path.is_file():
        return {}
    return {
        row["ActorID"]: {k.lower(): v for k, v in row.items() if k != "ActorID"}
        for row in read_table(path, ("ActorID",))
        if row["ActorID"]
    }


def read_face_votes(root: Path) -> dict[str, str]:
    """Clip name -> FaceVote letters (e.g. 'H', or 'A:D' for a tie) from processedResults/summaryTable.csv."""
    path = root / "processedResults" / "summaryTable.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: needed for prepare.target=face-vote (CREMA-D's processedResults/)")
    return {row["FileName"]: row["FaceVote"] for row in read_table(path, ("FileName", "FaceVote")) if row["FileName"]}


def _vote_label(vote: str | None) -> str:
    """The crowd's face-only label; ValueError for a missing vote, a tie or an unknown letter."""
    if not vote:
        raise ValueError("no FaceVote for this clip in summaryTable.csv")
    if ":" in vote:
        raise ValueError(f"the crowd's FaceVote is a tie ({vote}): no single perceived label")
    if vote not in VOTE_CODES:
        raise ValueError(f"unknown FaceVote {vote!r}")
    return VOTE_CODES[vote]


def read_crema_d(root: str | Path, target: str = "acted") -> tuple[list[Record], list[Skipped], tuple[str, ...]]:
    """Records for every clip under `root/VideoFlash` (or `root` itself if it holds the clips).

    target "acted": the emotion the actor was asked to show (from the file name); "face-vote": the
    emotion the crowd perceived from the face alone (FaceVote), which is noisier but is what a face
    actually showed. The acted label, intensity, sentence and any actor demographics go into `meta`.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown CREMA-D target {target!r}; use one of {', '.join(TARGETS)}")
    root = Path(root)
    folder = root / "VideoFlash" if (root / "VideoFlash").is_dir() else root
    if not folder.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected a CREMA-D root holding VideoFlash/)")
    base = root if folder != root else root.parent
    demographics = read_demographics(base)
    votes = read_face_votes(base) if target == "face-vote" else {}
    records: list[Record] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS):
        try:
            f = parse_name(path)
        except ValueError as err:
            skipped.append(Skipped(str(path), str(err), "bad-name"))
            continue
        acted = CREMA_D_CODES[f["emotion"]]
        try:
            label = _vote_label(votes.get(path.stem)) if target == "face-vote" else acted
        except ValueError as err:
            skipped.append(Skipped(str(path), str(err), "no-label"))
            continue
        meta = {"sentence": f["sentence"], "intensity": f["level"], "acted": acted, **demographics.get(f["actor"], {})}
        records.append(Record(str(path), label, f["actor"], None, meta))
    return records, skipped, CREMA_D_LABELS
