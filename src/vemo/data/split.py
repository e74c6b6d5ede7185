"""Group-disjoint, label-stratified splits.

Every group (CREMA-D actor) lands in exactly one split, so test accuracy measures generalisation to
unseen people. Within that constraint the split is stratified: among many seeded random assignments of
groups to splits, the one whose per-split label proportions deviate least from the overall ones wins.
Deterministic for a seed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from vemo.data.records import Record

SPLITS = ("train", "val", "test")


def _imbalance(assign: dict[str, str], counts: dict[str, Counter], labels: list[str], overall: np.ndarray) -> float:
    """Squared distance of each split's label proportions from the overall proportions, summed."""
    cost = 0.0
    for split in SPLITS:
        c = sum((counts[g] for g, s in assign.items() if s == split), Counter())
        v = np.array([c[lab] for lab in labels], dtype=float)
        if v.sum():
            cost += float(((v / v.sum() - overall) ** 2).sum())
    return cost


def split_groups(
    records: list[Record], val_fraction: float, test_fraction: float, seed: int, tries: int = 200
) -> dict[str, str]:
    """Map each group to 'train', 'val' or 'test'. Needs at least 3 groups (one per split)."""
    groups = sorted({r.group for r in records})
    if len(groups) < 3:
        raise ValueError(f"an actor-independent split needs at least 3 actors/groups, found {len(groups)}: {groups}")
    n_test = max(1, round(test_fraction * len(groups)))
    n_val = max(1, round(val_fraction * len(groups)))
    if n_test + n_val >= len(groups):
        raise ValueError(f"{len(groups)} groups cannot give {n_val} val + {n_test} test + >=1 train")
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
        assign = {}
        for rank, gi in enumerate(order):
            assign[groups[gi]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        cost = _imbalance(assign, counts, labels, overall)
        if cost < best_cost - 1e-12:
            best, best_cost = assign, cost
    assert best is not None
    return best


def assign_splits(records: list[Record], val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Split per record: the dataset's own split where it prescribes one, a group-disjoint one for the rest."""
    free = [r for r in records if not r.split]
    by_group = split_groups(free, val_fraction, test_fraction, seed) if free else {}
    return [r.split or by_group[r.group] for r in records]
