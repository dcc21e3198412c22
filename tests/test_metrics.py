from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from ensayo.metrics import (
    classification_metrics,
    confusion_text,
    log_loss,
    most_confused,
    per_class_report,
    plot_confusion,
    plot_learning_curves,
)


def test_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    true = rng.choice(list("abcd"), 200).tolist()
    predicted = [t if rng.random() < 0.7 else rng.choice(list("abcd")) for t in true]
    metrics = classification_metrics(true, predicted, "test/")
    assert metrics["test/balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, predicted))
    assert metrics["test/macro_f1"] == pytest.approx(f1_score(true, predicted, average="macro"))
    assert metrics["test/weighted_f1"] == pytest.approx(f1_score(true, predicted, average="weighted"))


def test_log_loss_skips_unknown_labels() -> None:
    probabilities = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    assert log_loss(probabilities, np.array([0, -1, 1])) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)


def test_confusions_and_reports() -> None:
    true = ["a"] * 5 + ["b"] * 5 + ["c"] * 2
    predicted = ["a"] * 2 + ["b"] * 3 + ["b"] * 5 + ["a"] * 2
    assert most_confused(true, predicted)[0] == {"true": "a", "predicted": "b", "count": 3}
    assert {p["true"] for p in most_confused(true, predicted)} == {"a", "c"}
    report = per_class_report(true, predicted)
    assert report[0]["label"] == "c" and report[0]["recall"] == 0.0
    text = confusion_text(true, predicted)
    assert text.splitlines()[1].split() == ["a", "2", "3", "0"]


def test_plots_are_written(tmp_path: Path) -> None:
    history = [{"epoch": 1, "train/loss": 1.0, "val/loss": 1.1, "val/balanced_accuracy": 0.5},
               {"epoch": 2, "train/loss": 0.5, "val/loss": 0.8, "val/balanced_accuracy": 0.7}]
    assert plot_learning_curves(history, tmp_path / "c.png").stat().st_size > 5000
    few = plot_confusion(["a", "b"], ["a", "a"], tmp_path / "few.png")
    many_labels = [f"C{i}" for i in range(40)]
    many = plot_confusion(many_labels, many_labels[1:] + many_labels[:1], tmp_path / "many.png")
    assert few.stat().st_size > 5000 and many.stat().st_size > 5000
