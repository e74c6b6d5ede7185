import pytest

from vemo.data.preprocessing.split import assign_splits, split_groups
from vemo.data.sources.records import Record

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad"]


def _records(n_actors=20):
    return [Record(f"{a}_{lab}.flv", lab, f"{1001 + a}") for a in range(n_actors) for lab in LABELS for _ in range(2)]


def test_actor_disjoint_and_sized():
    recs = _records()
    splits = assign_splits(recs, 0.15, 0.2, seed=0)
    actors = {s: {r.group for r, sp in zip(recs, splits, strict=False) if sp == s} for s in ("train", "val", "test")}
    assert not actors["train"] & actors["val"]
    assert not actors["train"] & actors["test"]
    assert not actors["val"] & actors["test"]
    assert (len(actors["train"]), len(actors["val"]), len(actors["test"])) == (13, 3, 4)


def test_deterministic_for_seed_and_seed_matters():
    recs = _records()
    assert split_groups(recs, 0.15, 0.2, seed=1) == split_groups(recs, 0.15, 0.2, seed=1)
    assert any(split_groups(recs, 0.15, 0.2, seed=1) != split_groups(recs, 0.15, 0.2, seed=s) for s in range(2, 6))


def test_stratification_balances_unequal_actors():
    # actors 0-9 recorded only 'happy', actors 10-19 only 'sad': a stratified split keeps both in each split
    recs = [Record(f"{a}.flv", "happy" if a < 10 else "sad", str(a)) for a in range(20) for _ in range(3)]
    assign = split_groups(recs, 0.2, 0.2, seed=0)
    for split in ("val", "test"):
        members = [int(g) for g, s in assign.items() if s == split]
        assert sum(m < 10 for m in members) == sum(m >= 10 for m in members) == 2


def test_too_few_actors_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 actors"):
        split_groups([Record("a", "happy", "1"), Record("b", "sad", "2")], 0.2, 0.2, seed=0)


def test_prescribed_splits_are_kept():
    recs = [Record("a", "happy", "1", "train"), Record("b", "sad", "2", "test")]
    assert assign_splits(recs, 0.2, 0.2, seed=0) == ["train", "test"]


def test_k_fold_is_actor_independent_and_partitions_the_actors():
    from vemo.data.preprocessing.split import assign_splits

    records = [
        Record(f"{a}_{e}_{i}", e, str(a)) for a in range(10) for e in ("happy", "sad", "angry") for i in range(2)
    ]
    tests = []
    for fold in range(5):
        splits = assign_splits(records, 0.15, 0.2, seed=3, folds=5, fold=fold)
        by_split = {
            s: {r.group for r, sp in zip(records, splits, strict=True) if sp == s} for s in ("train", "val", "test")
        }
        assert not (by_split["test"] & by_split["train"]) and not (by_split["val"] & by_split["train"])
        assert not (by_split["test"] & by_split["val"]) and len(by_split["test"]) == 2
        tests.append(by_split["test"])
    # every actor is tested exactly once across the 5 folds
    assert sorted(g for t in tests for g in t) == sorted(str(a) for a in range(10))
    with pytest.raises(ValueError, match="at least 5 actors"):
        assign_splits(records[:6], 0.15, 0.2, seed=3, folds=5, fold=0)
