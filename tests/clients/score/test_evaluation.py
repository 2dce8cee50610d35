"""Evaluation metrics against values worked out by hand on a toy set."""

from __future__ import annotations

import numpy as np
import pytest

from clients.score.evaluation import ClassificationEvaluator, RegressionEvaluator

# Ten rows, three classes (and a fourth that never occurs). Confusion, rows true, columns predicted:
#   [[2, 1, 0],      class a: P = 2/3, R = 2/3, F1 = 2/3
#    [0, 1, 2],      class b: P = 1/2, R = 1/3, F1 = 2/5
#    [1, 0, 3]]      class c: P = 3/5, R = 3/4, F1 = 2/3     accuracy 6/10
TRUTH = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
PREDICTED = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2, 2])
NAMES = ["a", "b", "c", "never"]


def _scores(predicted: np.ndarray, classes: int = 4) -> np.ndarray:
    scores = np.full((len(predicted), classes), 0.1, np.float32)
    scores[np.arange(len(predicted)), predicted] = 0.9
    return scores


def test_classification_metrics_match_the_hand_computed_values() -> None:
    evaluator = ClassificationEvaluator(4, NAMES)
    evaluator.update(_scores(PREDICTED), TRUTH.astype(np.float64))
    metrics = evaluator.result()
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert metrics["per_class"]["b"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5, "support": 3})
    assert metrics["per_class"]["c"] == pytest.approx({"precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "support": 4})
    assert metrics["per_class"]["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # Macro averages skip the class that is neither a label nor a prediction.
    assert metrics["macro_precision"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 5) / 3)
    assert metrics["macro_recall"] == pytest.approx((2 / 3 + 1 / 3 + 3 / 4) / 3)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3)
    assert metrics["confusion_matrix"]["matrix"] == [[2, 1, 0, 0], [0, 1, 2, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    assert metrics["rows"] == 10 and metrics["unlabelled_rows"] == 0


def test_labels_may_be_names_or_indices_and_unknown_ones_are_counted_not_scored() -> None:
    by_index = ClassificationEvaluator(4, NAMES)
    by_index.update(_scores(PREDICTED), TRUTH.astype(np.float64))
    by_name = ClassificationEvaluator(4, NAMES)
    names = np.asarray([NAMES[i] for i in TRUTH], dtype=str)
    # Fed in two chunks, with two labels that name no class.
    by_name.update(_scores(PREDICTED[:4]), names[:4])
    by_name.update(_scores(np.array([*PREDICTED[4:], 0, 1])), np.asarray([*names[4:], "zebra", ""], dtype=str))
    np.testing.assert_array_equal(by_name.confusion, by_index.confusion)
    assert by_name.result()["unlabelled_rows"] == 2


def test_numeric_labels_outside_the_classes_are_unlabelled() -> None:
    evaluator = ClassificationEvaluator(3, ["a", "b", "c"])
    evaluator.update(_scores(np.array([0, 1, 2, 0]), 3), np.array([0.0, 7.0, 1.5, np.nan]))
    assert evaluator.result()["rows"] == 1 and evaluator.result()["unlabelled_rows"] == 3


def test_regression_mae_and_rmse_match_the_hand_computed_values() -> None:
    evaluator = RegressionEvaluator()
    # Errors -0.5, 0, 1, -2 (the NaN label is skipped): MAE 3.5/4, RMSE sqrt(5.25/4).
    evaluator.update(np.array([[1.0], [2.0]], np.float32), np.array([1.5, 2.0]))
    evaluator.update(np.array([[3.0], [4.0], [9.0]], np.float32), np.asarray(["2", "6", "n/a"], dtype=str))
    metrics = evaluator.result()
    assert metrics["mae"] == pytest.approx(0.875)
    assert metrics["rmse"] == pytest.approx(np.sqrt(5.25 / 4))
    assert metrics["rows"] == 4 and metrics["unlabelled_rows"] == 1


def test_regression_needs_one_value_per_row() -> None:
    with pytest.raises(ValueError, match="one value per row, the output has 3"):
        RegressionEvaluator().update(np.ones((2, 3), np.float32), np.ones(2))
