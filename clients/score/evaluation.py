"""Scores against true labels, accumulated a chunk at a time: classification and regression metrics.

Classification takes the argmax of the first output as the predicted class. A
label is a class index (a number) or a class name (a string, looked up in the
model's labels). Per class: precision = TP / predicted, recall = TP / actual,
F1 = 2PR / (P + R), each 0 when its denominator is 0. Macro averages are over the
classes that occur in the labels or the predictions (as scikit-learn's). The
confusion matrix has true classes as rows, predicted classes as columns.
Regression compares the first output's single value per row with the label: MAE,
RMSE. Rows without a usable label are counted, not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class and macro precision/recall/F1, from a confusion matrix (rows: true)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    total = int(confusion.sum())
    true_positives = np.diag(confusion).astype(np.float64)
    actual = confusion.sum(axis=1).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros_like(true_positives), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
    present = (actual > 0) | (predicted > 0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, name in enumerate(class_names)
    }

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "task": "classification",
        "rows": total,
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(class_names), "matrix": confusion.tolist()},
    }


def regression_metrics(absolute_error_sum: float, squared_error_sum: float, rows: int) -> dict[str, Any]:
    return {
        "task": "regression",
        "rows": rows,
        "mae": absolute_error_sum / rows if rows else 0.0,
        "rmse": float(np.sqrt(squared_error_sum / rows)) if rows else 0.0,
    }


class ClassificationEvaluator:
    """A confusion matrix that grows one chunk at a time."""

    def __init__(self, classes: int, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names) if len(class_names) == classes else [str(i) for i in range(classes)]
        self._index_by_name = {name: index for index, name in enumerate(self.class_names)}
        self.confusion = np.zeros((classes, classes), np.int64)
        self.unlabelled_rows = 0

    def _class_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each label's class index, and which labels name a class at all."""
        classes = len(self.class_names)
        if labels.dtype.kind == "U":
            found = [self._index_by_name.get(label, int(label) if label.isdecimal() else -1) for label in labels]
            indices = np.asarray(found, dtype=np.int64)
        else:
            whole = np.isfinite(labels) & (np.floor(labels) == labels)
            indices = np.where(whole, labels, -1).astype(np.int64)
        valid = (indices >= 0) & (indices < classes)
        return indices, valid

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        rows = len(labels)
        predicted = scores.reshape(rows, -1).argmax(axis=1)
        truth, valid = self._class_indices(labels)
        self.unlabelled_rows += int((~valid).sum())
        classes = len(self.class_names)
        cells = truth[valid] * classes + predicted[valid]
        self.confusion += np.bincount(cells, minlength=classes * classes).reshape(classes, classes)

    def result(self) -> dict[str, Any]:
        metrics = classification_metrics(self.confusion, self.class_names)
        metrics["unlabelled_rows"] = self.unlabelled_rows
        return metrics


class RegressionEvaluator:
    """Running sums of absolute and squared errors."""

    def __init__(self) -> None:
        self._absolute = 0.0
        self._squared = 0.0
        self._rows = 0
        self.unlabelled_rows = 0

    def update(self, predictions: np.ndarray, labels: np.ndarray) -> None:
        rows = len(labels)
        values = predictions.reshape(rows, -1)
        if values.shape[1] != 1:
            raise ValueError(f"--task regression needs one value per row, the output has {values.shape[1]}")
        if labels.dtype.kind == "U":
            labels = np.asarray([_as_float(label) for label in labels])
        valid = np.isfinite(labels)
        self.unlabelled_rows += int((~valid).sum())
        errors = values[valid, 0].astype(np.float64) - labels[valid]
        self._absolute += float(np.abs(errors).sum())
        self._squared += float((errors**2).sum())
        self._rows += int(valid.sum())

    def result(self) -> dict[str, Any]:
        metrics = regression_metrics(self._absolute, self._squared, self._rows)
        metrics["unlabelled_rows"] = self.unlabelled_rows
        return metrics


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


Evaluator = ClassificationEvaluator | RegressionEvaluator
