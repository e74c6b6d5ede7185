import numpy as np
import pytest

from vemo.evaluation.metrics import classification_metrics, confusion_matrix


def test_hand_computed_example():
    # true:  a a a b b c      pred: a a b b c c
    labels = ["a", "b", "c"]
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, labels)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=2/2 R=2/3 F1=0.8 ; b: P=1/2 R=1/2 F1=0.5 ; c: P=1/2 R=1 F1=2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["n"] == 6 and m["labels"] == labels


def test_never_predicted_and_absent_classes():
    m = classification_metrics([0, 0, 1], [0, 0, 0], ["a", "b", "c"])
    assert m["per_class"]["b"]["precision"] == 0.0  # never predicted: 0, not NaN
    assert m["per_class"]["c"]["support"] == 0
    # c has no true samples, so the macro average covers a and b only
    f1_a = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert m["macro_f1"] == pytest.approx(f1_a / 2)


def test_confusion_matrix_counts_duplicates():
    cm = confusion_matrix(np.array([1, 1, 1]), np.array([0, 0, 1]), 2)
    assert cm.tolist() == [[0, 0], [2, 1]]
