"""A run's plots and test report: learning curves, the confusion matrix (or the most confused pairs), the
reliability diagram, and per-class scores as CSV. Drawn on figures of their own (`ensayo.figures`), never pyplot."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ensayo import figures, layout
from ensayo.metrics.calibration import _calibration_bins, calibration_error
from ensayo.metrics.scores import confusion_text, most_confused, per_class_report
from ensayo.store import atomic_path, write_text


def plot_learning_curves(history: list[dict[str, float]], path: Path, metric: str = "balanced_accuracy") -> Path:
    epochs = [h["epoch"] for h in history]
    figure = figures.figure(figsize=(10, 4), layout="tight")
    left, right = figure.subplots(1, 2)
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
    return figures.save(figure, path)


def plot_confusion(true: Sequence[str], predicted: Sequence[str], path: Path, max_classes: int = 30) -> Path:
    """The full matrix for a few classes; for many, a bar chart of the most confused pairs."""
    labels = sorted(set(true) | set(predicted))
    if len(labels) <= max_classes:
        from sklearn.metrics import confusion_matrix

        matrix = confusion_matrix(true, predicted, labels=labels)
        size = 3 + 0.35 * len(labels)
        figure = figures.figure(figsize=(size + 1, size), layout="tight")
        axes = figure.subplots()
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
        figure = figures.figure(figsize=(9, 1 + 0.3 * max(len(pairs), 1)), layout="tight")
        axes = figure.subplots()
        names = [f"{p['true']} → {p['predicted']}" for p in pairs][::-1]
        axes.barh(names, [p["count"] for p in pairs][::-1], color="tab:red")
        axes.set(xlabel="test rows", title=f"most confused pairs ({len(labels)} classes)")
        axes.tick_params(axis="y", labelsize=7)
    return figures.save(figure, path)


def write_test_report(directory: Path, true: Sequence[str], predicted: Sequence[str]) -> None:
    """The test split's confusion (a plot and as text) and per-class scores, into a run directory."""
    plot_confusion(true, predicted, directory / layout.CONFUSION)
    write_text(directory / layout.CONFUSION_TEXT, confusion_text(true, predicted) + "\n")
    with atomic_path(directory / layout.PER_CLASS) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["label", "precision", "recall", "f1", "support"])
        writer.writeheader()
        writer.writerows(per_class_report(true, predicted))


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 15) -> Path:
    """Accuracy against confidence in `bins` bins, one line per (name: `reliability_points`), with the
    diagonal of perfect calibration and each curve's expected calibration error."""
    figure = figures.figure(figsize=(5.5, 5), layout="tight")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, (confidence, right) in curves.items():
        _, mean_confidence, accuracy = _calibration_bins(confidence, right, bins)
        axes.plot(mean_confidence, accuracy, marker="o",
                  label=f"{name} (ECE {calibration_error(confidence, right, bins):.3f})")
    axes.set(xlabel="confidence (top class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02),
             title=f"reliability on the test split ({bins} bins)")
    axes.legend(loc="upper left")
    return figures.save(figure, path)
