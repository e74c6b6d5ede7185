"""Group-disjoint, label-stratified splits.

Every group (CREMA-D actor) lands in exactly one split, so test accuracy measures generalisation to
unseen people. Within that constraint the split is stratified: among many seeded random assignments of
groups to splits, the one whose per-split label proportions deviate least from the overall ones wins.
Deterministic for a seed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from vemo.data.sources.records import Record

SPLITS = ("train", "val", "test")


class TooFewGroups(ValueError):
    """The data has too few actors/groups for the requested split (e.g. a folder from one actor)."""


def _imbalance(assign: dict[str, str], counts: dict[str, Counter], labels: list[str], overall: np.ndarray) -> float:
    """Squared distance of each part's label proportions from the overall proportions, summed."""
    cost = 0.0
    parts = set(assign.values())
    for part in [p for p in SPLITS if p in parts] or sorted(parts):  # fixed order: float sums reproduce
        c = sum((counts[g] for g, s in assign.items() if s == part), Counter())
        v = np.array([c[lab] for lab in labels], dtype=float)
        if v.sum():
            cost += float(((v / v.sum() - overall) ** 2).sum())
    return cost


def _stratified(records: list[Record], part_of_rank, seed: int, tries: int) -> dict[str, str]:
    """Among `tries` seeded random orders of the groups, the assignment (rank -> part) that is most
    label-balanced. Deterministic for a seed."""
    groups = sorted({r.group for r in records})
    counts: dict[str, Counter] = {g: Counter() for g in groups}
    for r in records:
        counts[r.group][r.label] += 1
    labels = sorted({r.label for r in records})
    total = Counter(r.label for r in records)
    overall = np.array([total[lab] for lab in labels], dtype=float) / len(records)
    rng = np.random.default_rng(seed)
    best, best_cost = None, float("inf")
    for _ in range(tries):
        order = rng.permutation(len(groups))
        assign = {groups[gi]: part_of_rank(rank) for rank, gi in enumerate(order)}
        cost = _imbalance(assign, counts, labels, overall)
        if cost < best_cost - 1e-12:
            best, best_cost = assign, cost
    assert best is not None
    return best


def split_groups(
    records: list[Record], val_fraction: float, test_fraction: float, seed: int, tries: int = 200
) -> dict[str, str]:
    """Map each group to 'train', 'val' or 'test'. Needs at least 3 groups (one per split)."""
    groups = sorted({r.group for r in records})
    if len(groups) < 3:
        raise TooFewGroups(f"an actor-independent split needs at least 3 actors/groups, found {len(groups)}: {groups}")
    n_test = max(1, round(test_fraction * len(groups)))
    n_val = max(1, round(val_fraction * len(groups)))
    if n_test + n_val >= len(groups):
        raise ValueError(f"{len(groups)} groups cannot give {n_val} val + {n_test} test + >=1 train")
    return _stratified(
        records, lambda rank: "test" if rank < n_test else "val" if rank < n_test + n_val else "train", seed, tries
    )


def fold_groups(records: list[Record], folds: int, fold: int, seed: int, tries: int = 200) -> dict[str, str]:
    """Actor-independent k-fold: fold `fold`'s groups are test, the next fold's are val, the rest train.

    Groups are dealt round-robin into k folds in a seeded order, the most label-balanced of `tries`.
    The fold assignment depends only on (records, k, seed), so folds 0..k-1 partition the groups.
    """
    groups = sorted({r.group for r in records})
    if not 0 <= fold < folds or folds < 3:
        raise ValueError(f"k-fold needs folds >= 3 and 0 <= fold < folds (got folds={folds}, fold={fold})")
    if len(groups) < folds:
        raise TooFewGroups(f"{folds}-fold cross-validation needs at least {folds} actors/groups, found {len(groups)}")
    part = _stratified(records, lambda rank: str(rank % folds), seed, tries)
    role = {str(fold): "test", str((fold + 1) % folds): "val"}
    return {g: role.get(p, "train") for g, p in part.items()}


def assign_splits(
    records: list[Record], val_fraction: float, test_fraction: float, seed: int, folds: int = 0, fold: int = 0
) -> list[str]:
    """Split per record: the dataset's own split where it prescribes one, a group-disjoint one for the rest
    (a train/val/test split, or fold `fold` of an actor-independent k-fold when folds > 0)."""
    free = [r for r in records if not r.split]
    if not free:
        by_group: dict[str, str] = {}
    elif folds:
        by_group = fold_groups(free, folds, fold, seed)
    else:
        by_group = split_groups(free, val_fraction, test_fraction, seed)
    return [r.split or by_group[r.group] for r in records]
