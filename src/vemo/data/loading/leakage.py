"""Leaks between the splits a prepared cache holds: a group (actor) on both sides of a split, which is a
bug, and identical pixels in train and val/test, which FER2013 ships across its official splits (a test
image seen in training inflates test accuracy). `prepare` raises on the first and reports the second."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from vemo.data.sources.records import Record


def mixed_groups(records: list[Record], splits: list[str]) -> dict[str, list[str]]:
    """{group: its splits} for every group vemo put in more than one split. A group (actor) split by vemo
    must sit in one split only, or test accuracy would measure recognising people already seen in
    training; dataset-prescribed splits are the dataset's business and not checked."""
    seen: dict[str, set[str]] = {}
    for r, split in zip(records, splits, strict=True):
        if not r.split:
            seen.setdefault(r.group, set()).add(split)
    return {g: sorted(s) for g, s in sorted(seen.items()) if len(s) > 1}


def cross_split_duplicates(splits: list[str], frames: np.ndarray) -> dict[int, int]:
    """{index of a val/test item: index of a train item with identical pixels}."""
    train: dict[bytes, int] = {}
    others: list[tuple[int, bytes]] = []
    for k, split in enumerate(splits):
        digest = hashlib.sha1(np.ascontiguousarray(frames[k]).tobytes()).digest()
        if split == "train":
            train.setdefault(digest, k)
        else:
            others.append((k, digest))
    return {k: train[d] for k, d in others if d in train}


def duplicates_report(
    records: list[Record], splits: list[str], dups: dict[int, int], dedupe: bool, noun: str, log
) -> tuple[dict, dict[int, str]]:
    """Say loudly how many val/test items repeat a training item; returns the manifest's "leakage" entry
    and, with `dedupe`, {index to drop: reason} (else empty: the copies are kept, and counted)."""
    fate = "dropped (prepare.dedupe)" if dedupe else "kept (set prepare.dedupe=true to drop them)"
    if not dedupe and any(records[k].split for k in dups):
        fate = "official split kept"
    for split, n in sorted(Counter(splits[k] for k in dups).items()):
        log(f"warning: {n} {noun} in {split} also appear in train (identical pixels); {fate}")
    examples = [{"train": records[t].source, splits[k]: records[k].source} for k, t in list(dups.items())[:5]]
    leakage = {"duplicates_across_splits": len(dups), "examples": examples, "dropped": len(dups) if dedupe else 0}
    drop = {k: f"identical pixels to training file {records[t].source}" for k, t in dups.items()} if dedupe else {}
    return leakage, drop
