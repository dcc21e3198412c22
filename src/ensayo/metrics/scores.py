"""Scores of a classifier's answers: each row summarised in 20 bytes (`ROW`), the quality metrics of those rows,
per-class scores, the most confused pairs, and a Student-t interval over repeated figures. scikit-learn and scipy
(3 s of import on this project's 2-core machine) are imported where they score, so that the commands that only
read a recipe or answer do not pay for them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ensayo.outputs.category import CategoryOutput

ROW = np.dtype([("label", np.int32), ("predicted", np.int32), ("confidence", np.float32),
                ("true_p", np.float32), ("raw_confidence", np.float32)])
"""What scoring keeps of each row's class probabilities (20 bytes a row instead of 4 a class): the true
label's index (-1 where the model never saw it), the top class, its probability, the true label's probability
(NaN where unknown), and the top probability before a calibration temperature."""

QUALITY = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision",
           "weighted_recall", "weighted_f1", "loss")


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softened (temperature > 1) or sharpened: softmax(log p / T), which is softmax(logits / T)."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(probabilities, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    tempered = np.exp(logits)
    return (tempered / tempered.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def summarise(probabilities: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The `ROW` record of each row of a (rows, classes) probability matrix, the probabilities tempered by
    `temperature` (which leaves the top class as it is); `labels` are class indices, -1 where unknown."""
    rows = np.empty(len(labels), dtype=ROW)
    if not len(labels):
        return rows
    tempered = temper(probabilities, temperature)
    rows["label"] = labels
    rows["predicted"] = probabilities.argmax(axis=1)
    rows["confidence"] = tempered.max(axis=1)
    rows["raw_confidence"] = probabilities.max(axis=1)
    known = labels >= 0
    rows["true_p"] = np.nan
    rows["true_p"][known] = tempered[np.flatnonzero(known), labels[known]]
    return rows


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy over rows whose label the model knows (label index >= 0)."""
    known = np.flatnonzero(labels >= 0)
    return _mean_negative_log(probabilities[known, labels[known]])


def rows_log_loss(rows: np.ndarray) -> float:
    """`log_loss` of `summarise`d rows."""
    return _mean_negative_log(rows["true_p"][rows["label"] >= 0])


def _mean_negative_log(true_p: np.ndarray) -> float:
    return float(-np.log(np.clip(true_p.astype(np.float64), 1e-12, None)).mean()) if len(true_p) else float("nan")


def score(probabilities: np.ndarray, true: list[str], output: CategoryOutput, prefix: str = "") -> dict[str, float]:
    """All metrics of one split from a model's probabilities and the split's true labels."""
    return score_rows(summarise(probabilities, output.transform(true)), true, output, prefix)


def score_rows(rows: np.ndarray, true: list[str], output: CategoryOutput, prefix: str = "") -> dict[str, float]:
    """All metrics of one split from its `summarise`d rows and true labels."""
    metrics: dict[str, float] = {}
    if true:
        metrics = classification_metrics(true, output.inverse(rows["predicted"]), prefix)
    metrics[f"{prefix}loss"] = rows_log_loss(rows)
    return metrics


def classification_metrics(true: Sequence[str], predicted: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Accuracy, balanced accuracy (scikit-learn's, as in the MeLi challenge) and macro / weighted P, R, F1.

    Labels are strings, so a true label the model never saw counts as a class it always gets wrong.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support

    metrics = {
        "accuracy": accuracy_score(true, predicted),
        "balanced_accuracy": balanced_accuracy_score(true, predicted),
    }
    labels = sorted(set(true))
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true, predicted, labels=labels, average=average, zero_division=0
        )
        metrics |= {f"{average}_precision": precision, f"{average}_recall": recall, f"{average}_f1": f1}
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}


def per_class_report(true: Sequence[str], predicted: Sequence[str]) -> list[dict[str, Any]]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = sorted(set(true) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=0
    )
    rows = [
        {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]
    return sorted(rows, key=lambda row: (row["f1"], -row["support"]))


def most_confused(true: Sequence[str], predicted: Sequence[str], top: int = 20) -> list[dict[str, Any]]:
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(true) | set(predicted))
    matrix = confusion_matrix(true, predicted, labels=labels)
    np.fill_diagonal(matrix, 0)
    flat = np.argsort(matrix, axis=None)[::-1][:top]
    pairs = []
    for position in flat:
        i, j = divmod(int(position), len(labels))
        if matrix[i, j] == 0:
            break
        pairs.append({"true": labels[i], "predicted": labels[j], "count": int(matrix[i, j])})
    return pairs


def confusion_text(true: Sequence[str], predicted: Sequence[str], max_classes: int = 30) -> str:
    labels = sorted(set(true) | set(predicted))
    if len(labels) > max_classes:
        return "\n".join(f"{p['count']:5d}  {p['true']} -> {p['predicted']}" for p in most_confused(true, predicted))
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(true, predicted, labels=labels)
    width = max(len(str(matrix.max())), max(len(label) for label in labels), 4)
    header = " " * (width + 2) + " ".join(label[:width].rjust(width) for label in labels)
    rows = [label[:width].rjust(width) + "  " + " ".join(str(v).rjust(width) for v in row)
            for label, row in zip(labels, matrix, strict=True)]
    return "\n".join([header, *rows])


def interval95(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half width of a Student-t interval (95 % unless told)."""
    from scipy.special import stdtrit  # Student's t quantile: scipy.stats, which has it too, takes 2.5 s to import

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, float("nan"), float("nan")
    std = float(data.std(ddof=1))
    return mean, std, float(stdtrit(len(data) - 1, 0.5 + confidence / 2) * std / math.sqrt(len(data)))
