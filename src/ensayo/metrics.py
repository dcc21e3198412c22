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

ROW = np.dtype([("label", np.int32), ("predicted", np.int32), ("confidence", np.float32),
                ("true_p", np.float32), ("raw_confidence", np.float32)])
"""What scoring keeps of each row's class probabilities (20 bytes a row instead of 4 a class): the true
label's index (-1 where the model never saw it), the top class, its probability, the true label's probability
(NaN where unknown), and the top probability before a calibration temperature."""


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
def interval95(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half width of a Student-t interval (95 % unless told)."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, float("nan"), float("nan")
    std = float(data.std(ddof=1))
    return mean, std, float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1) * std / math.sqrt(len(data)))


TEMPERATURE_BOUNDS = (0.05, 20.0)
QUALITY = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision",
           "weighted_recall", "weighted_f1", "loss")


BOOTSTRAP_CELLS = 4_000_000  # resample weights held at once (resamples x rows), about 32 MB


def _weighted_scores(true: np.ndarray, predicted: np.ndarray, true_log_p: np.ndarray, weights: np.ndarray,
                     classes: int) -> dict[str, np.ndarray]:
    """The quality metrics of each row of `weights` (resamples, rows): every row counted as often as its weight
    says, from integer labels, with the definitions of `classification_metrics` (macro over the classes present
    in the resample's true labels)."""
    import scipy.sparse as sp

    rows = np.arange(len(true))

    def counts(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:  # (resamples, classes) weighted counts
        one_hot = sp.csr_matrix((mask.astype(float), (rows, labels)), shape=(len(true), classes))
        return np.asarray((one_hot.T @ weights.T).T)

    total = weights.sum(axis=1)
    true_count = counts(true, np.ones(len(true), dtype=bool))
    predicted_count = counts(predicted, np.ones(len(true), dtype=bool))
    hits = counts(true, true == predicted)
    present = true_count > 0
    recall = np.divide(hits, true_count, out=np.zeros_like(hits), where=present)
    precision = np.divide(hits, predicted_count, out=np.zeros_like(hits), where=predicted_count > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits), where=precision + recall > 0)
    share = true_count / total[:, None]
    classes_present = present.sum(axis=1)
    scores = {"accuracy": hits.sum(axis=1) / total,
              "balanced_accuracy": (recall * present).sum(axis=1) / classes_present}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        scores[f"macro_{name}"] = (values * present).sum(axis=1) / classes_present
        scores[f"weighted_{name}"] = (values * share).sum(axis=1)
    known = np.isfinite(true_log_p)
    scores["loss"] = -(weights[:, known] @ true_log_p[known]) / np.maximum(weights[:, known].sum(axis=1), 1e-12)
    return scores


def bootstrap_intervals(true: Sequence[str], rows: np.ndarray, output: CategoryOutput, prefix: str = "",
                        resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """`<prefix><metric>_low` and `_high`: a percentile bootstrap interval of each quality metric of these
    `summarise`d rows, resampled with replacement `resamples` times by a generator of its own (`seed`), so
    that no other randomness moves it."""
    if resamples <= 0 or not len(true):
        return {}
    names = sorted(set(true) | set(output.classes))
    code = {label: index for index, label in enumerate(names)}
    true_codes = np.array([code[label] for label in true])
    predicted = np.array([code[label] for label in output.inverse(rows["predicted"])])
    known = rows["label"] >= 0
    true_log_p = np.full(len(true), np.nan)
    true_log_p[known] = np.log(np.clip(rows["true_p"][known].astype(np.float64), 1e-12, None))
    generator = np.random.default_rng(seed)
    block = max(1, min(resamples, BOOTSTRAP_CELLS // len(true)))
    draws: dict[str, list[np.ndarray]] = {name: [] for name in QUALITY}
    for start in range(0, resamples, block):
        weights = generator.multinomial(len(true), np.full(len(true), 1 / len(true)),
                                        size=min(block, resamples - start)).astype(float)
        for name, values in _weighted_scores(true_codes, predicted, true_log_p, weights, len(names)).items():
            draws[name].append(values)
    tail = (1 - confidence) / 2 * 100
    intervals = {}
    for name, parts in draws.items():
        values = np.concatenate(parts)
        finite = values[np.isfinite(values)]
        if len(finite):
            low, high = np.percentile(finite, [tail, 100 - tail])
            intervals |= {f"{prefix}{name}_low": float(low), f"{prefix}{name}_high": float(high)}
    return intervals


# ----------------------------------------------------------------------------------------- calibration
def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """The gap between confidence and accuracy, averaged over `bins` equal-width confidence bins weighted by
    their rows (rows whose label the model knows)."""
    return calibration_error(*reliability_points(summarise(probabilities, labels)), bins)


def calibration_error(confidence: np.ndarray, right: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of rows given as (top-class confidence, 1.0 where the top class is right)."""
    rows, mean_confidence, accuracy = _calibration_bins(confidence, right, bins)
    return float(np.abs(mean_confidence - accuracy) @ rows / rows.sum()) if rows.sum() else float("nan")


def _calibration_bins(confidence: np.ndarray, right: np.ndarray,
                      bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, mean confidence and accuracy of each non-empty equal-width confidence bin."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = np.bincount(which, minlength=bins)
    filled = rows > 0
    return (rows[filled], np.bincount(which, confidence, bins)[filled] / rows[filled],
            np.bincount(which, right, bins)[filled] / rows[filled])


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softened (temperature > 1) or sharpened: softmax(log p / T), which is softmax(logits / T)."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(probabilities, 1e-12, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    tempered = np.exp(logits)
    return (tempered / tempered.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimizes the log loss of these rows (a validation split), by L-BFGS on log T."""
    import torch

    known = labels >= 0
    logits = torch.log(torch.as_tensor(probabilities[known], dtype=torch.float64).clamp_min(1e-12))
    target = torch.as_tensor(labels[known], dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    # rows the model already separates perfectly pull T towards 0 without end; past these bounds nothing is
    # gained but overconfidence on new rows
    return float(np.clip(log_t.exp().item(), *TEMPERATURE_BOUNDS))


def reliability_points(rows: np.ndarray, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, 1.0 where the top class is right) of each `summarise`d row whose label the model knows,
    before the temperature with `raw`: all a reliability diagram and the calibration error need."""
    known = rows[rows["label"] >= 0]
    confidence = known["raw_confidence" if raw else "confidence"].astype(np.float64)
    return confidence, (known["predicted"] == known["label"]).astype(float)


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 15) -> Path:
    """Accuracy against confidence in `bins` bins, one line per (name: `reliability_points`), with the
    diagonal of perfect calibration and each curve's expected calibration error."""
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, (confidence, right) in curves.items():
        _, mean_confidence, accuracy = _calibration_bins(confidence, right, bins)
        axes.plot(mean_confidence, accuracy, marker="o",
                  label=f"{name} (ECE {calibration_error(confidence, right, bins):.3f})")
    axes.set(xlabel="confidence (top class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02),
             title=f"reliability on the test split ({bins} bins)")
    axes.legend(loc="upper left")
    _save(figure, path)
    return path
