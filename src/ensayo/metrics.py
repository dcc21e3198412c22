"""Predictions -> metrics, intervals, per-class report and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import csv
import math

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from ensayo import layout
from ensayo.outputs.category import CategoryOutput
from ensayo.store import atomic_path, write_text


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy over rows whose label the model knows (label index >= 0)."""
    known = labels >= 0
    if not known.any():
        return float("nan")
    picked = probabilities[np.flatnonzero(known), labels[known]]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def score(probabilities: np.ndarray, true: list[str], output: CategoryOutput, prefix: str = "") -> dict[str, float]:
    """All metrics of one split from a model's probabilities and the split's true labels."""
    metrics: dict[str, float] = {}
    if true:
        metrics = classification_metrics(true, output.inverse(probabilities.argmax(axis=1)), prefix)
    metrics[f"{prefix}loss"] = log_loss(probabilities, output.transform(true))
    return metrics


def classification_metrics(true: Sequence[str], predicted: Sequence[str], prefix: str = "") -> dict[str, float]:
    """Accuracy, balanced accuracy (scikit-learn's, as in the MeLi challenge) and macro / weighted P, R, F1.

    Labels are strings, so a true label the model never saw counts as a class it always gets wrong.
    """
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


# -------------------------------------------------------------------------------------------- plots
def plot_learning_curves(history: list[dict[str, float]], path: Path, metric: str = "balanced_accuracy") -> Path:
    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train/loss", "train"), ("val/loss", "validation"),
                       ("train/auxiliary_loss", "train, auxiliary targets")):
        if any(key in h for h in history):
            left.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=label)
    left.set(title="loss (train: epoch mean, with dropout and label smoothing)", xlabel="epoch")
    left.legend()
    for key in (f"val/{metric}", f"val/{metric.replace('balanced_', '')}"):
        if any(key in h for h in history):
            right.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    right.set(title="validation metrics", xlabel="epoch")
    if right.lines:
        right.legend()
    _save(figure, path)
    return path


def plot_confusion(true: Sequence[str], predicted: Sequence[str], path: Path, max_classes: int = 30) -> Path:
    """The full matrix for a few classes; for many, a bar chart of the most confused pairs."""
    labels = sorted(set(true) | set(predicted))
    if len(labels) <= max_classes:
        matrix = confusion_matrix(true, predicted, labels=labels)
        size = 3 + 0.35 * len(labels)
        figure, axes = plt.subplots(figsize=(size + 1, size))
        image = axes.imshow(matrix, cmap="Blues")
        axes.set_xticks(range(len(labels)), labels, rotation=90)
        axes.set_yticks(range(len(labels)), labels)
        axes.set(xlabel="predicted", ylabel="true", title="confusion matrix")
        limit = matrix.max() / 2 if matrix.size else 0
        for i in range(len(labels)):
            for j in range(len(labels)):
                if matrix[i, j]:
                    axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                              color="white" if matrix[i, j] > limit else "black")
        figure.colorbar(image, ax=axes, fraction=0.046)
    else:
        pairs = most_confused(true, predicted, top=25)
        figure, axes = plt.subplots(figsize=(9, 1 + 0.3 * max(len(pairs), 1)))
        names = [f"{p['true']} → {p['predicted']}" for p in pairs][::-1]
        axes.barh(names, [p["count"] for p in pairs][::-1], color="tab:red")
        axes.set(xlabel="test rows", title=f"most confused pairs ({len(labels)} classes)")
        axes.tick_params(axis="y", labelsize=7)
    _save(figure, path)
    return path


def confusion_text(true: Sequence[str], predicted: Sequence[str], max_classes: int = 30) -> str:
    labels = sorted(set(true) | set(predicted))
    if len(labels) > max_classes:
        return "\n".join(f"{p['count']:5d}  {p['true']} -> {p['predicted']}" for p in most_confused(true, predicted))
    matrix = confusion_matrix(true, predicted, labels=labels)
    width = max(len(str(matrix.max())), max(len(label) for label in labels), 4)
    header = " " * (width + 2) + " ".join(label[:width].rjust(width) for label in labels)
    rows = [label[:width].rjust(width) + "  " + " ".join(str(v).rjust(width) for v in row)
            for label, row in zip(labels, matrix, strict=True)]
    return "\n".join([header, *rows])


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)


def write_test_report(directory: Path, true: Sequence[str], predicted: Sequence[str]) -> None:
    """The test split's confusion (a plot and as text) and per-class scores, into a run directory."""
    plot_confusion(true, predicted, directory / layout.CONFUSION)
    write_text(directory / layout.CONFUSION_TEXT, confusion_text(true, predicted) + "\n")
    with atomic_path(directory / layout.PER_CLASS) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["label", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(per_class_report(true, predicted))


# ----------------------------------------------------------------------------------------- intervals
def interval95(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half width of a 95 % Student-t interval."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, float("nan"), float("nan")
    std = float(data.std(ddof=1))
    return mean, std, float(stats.t.ppf(0.975, len(data) - 1) * std / math.sqrt(len(data)))
