"""Intervals, calibration and imbalance: bootstrap intervals of a single run's test metrics, a temperature
fitted on validation and applied when predicting, class-weighted and focal losses."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from helpers.data import CLASSES, make_titles, recipe_dict, write_challenge_csv
from sklearn.metrics import balanced_accuracy_score, f1_score

import ensayo
from ensayo import layout
from ensayo import metrics as ev
from ensayo.metrics.bootstrap import weighted_scores
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import TrainConfig
from ensayo.store import read_json
from ensayo.training import FocalLoss, balanced_weights, classification_loss


def noisy_predictions(rows: int = 300, seed: int = 0) -> tuple[list[str], np.ndarray, CategoryOutput]:
    """Labels and calibrated probabilities: scores N(2, 1) for the true class and N(0, 1) for the others, whose
    exact posterior is softmax(2 x score + log prior)."""
    rng = np.random.default_rng(seed)
    output = CategoryOutput("label").fit(list("abcd"))
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    true = rng.choice(list("abcd"), rows, p=prior).tolist()
    scores = rng.normal(size=(rows, 4)) + 2.0 * np.eye(4)[output.transform(true)]
    logits = 2 * scores + np.log(prior)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return true, probabilities, output


def test_the_bootstrap_resamples_the_same_metrics_from_its_own_seed() -> None:
    true, probabilities, output = noisy_predictions()
    rows = ev.summarise(probabilities, output.transform(true))
    np.random.seed(1)
    first = ev.bootstrap_intervals(true, rows, output, "test/", resamples=300, seed=7)
    np.random.seed(2)  # the global generator does not move it
    assert ev.bootstrap_intervals(true, rows, output, "test/", resamples=300, seed=7) == first
    assert ev.bootstrap_intervals(true, rows, output, "test/", resamples=300, seed=8) != first
    point = ev.score(probabilities, true, output, "test/")
    for name in ev.QUALITY:
        assert first[f"test/{name}_low"] < point[f"test/{name}"] < first[f"test/{name}_high"], name
    # the resampled figures are scikit-learn's definitions: all weights 1 gives the point estimate
    codes = output.transform(true)
    predicted = probabilities.argmax(axis=1)
    log_p = np.log(probabilities[np.arange(len(true)), codes])
    unweighted = {k: v[0] for k, v in weighted_scores(codes, predicted, log_p, np.ones((1, len(true))), 4).items()}
    labels = output.inverse(predicted)
    assert unweighted["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(true, labels))
    assert unweighted["macro_f1"] == pytest.approx(f1_score(true, labels, average="macro"))
    assert unweighted["weighted_f1"] == pytest.approx(f1_score(true, labels, average="weighted"))
    # a test set four times larger gives an interval about half as wide
    big_true, big_p, _ = noisy_predictions(1200, seed=3)
    wide = first["test/accuracy_high"] - first["test/accuracy_low"]
    big = ev.bootstrap_intervals(big_true, ev.summarise(big_p, output.transform(big_true)), output, "test/",
                                 resamples=300, seed=7)
    assert 0.35 < (big["test/accuracy_high"] - big["test/accuracy_low"]) / wide < 0.7


def test_temperature_scaling_undoes_overconfidence_and_keeps_the_ranking() -> None:
    true, probabilities, output = noisy_predictions(2000, seed=4)
    labels = output.transform(true)
    overconfident = ev.temper(probabilities, 0.25)  # what a network that learned too hard says
    temperature = ev.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(4.0, rel=0.1)
    calibrated = ev.temper(overconfident, temperature)
    assert (calibrated.argmax(axis=1) == overconfident.argmax(axis=1)).all()
    assert ev.expected_calibration_error(calibrated, labels) < 0.5 * ev.expected_calibration_error(overconfident,
                                                                                                    labels)
    assert ev.log_loss(calibrated, labels) < ev.log_loss(overconfident, labels)
    # 15 equal bins by hand: one bin of rows at confidence 0.9 that are right 60 % of the time
    flat = np.tile([[0.9, 0.1]], (10, 1))
    assert ev.expected_calibration_error(flat, np.array([0] * 6 + [1] * 4)) == pytest.approx(0.3)


def test_a_few_rows_all_right_do_not_sharpen_the_temperature_without_end() -> None:
    probabilities = np.array([[0.8, 0.2]] * 5 + [[0.3, 0.7]] * 4)  # nine validation rows, all right
    labels = np.array([0] * 5 + [1] * 4)
    tiny = ev.fit_temperature(probabilities, labels)
    assert 0.2 < tiny < 1.0  # sharper, as the rows say, but not to the bound (0.05: 100 % on every answer)
    many = ev.fit_temperature(np.tile(probabilities, (200, 1)), np.tile(labels, 200))
    assert many < tiny / 2  # 1,800 such rows are evidence enough


def test_rows_scored_a_batch_at_a_time_give_the_metrics_of_the_whole_matrix() -> None:
    true, probabilities, output = noisy_predictions(500, seed=5)
    true[:7] = ["never seen"] * 7  # a label the model does not know: always wrong, left out of the loss and ECE
    labels = output.transform(true)
    whole = ev.summarise(probabilities, labels, temperature=1.7)
    batched = np.concatenate([ev.summarise(probabilities[start: start + 64], labels[start: start + 64], 1.7)
                              for start in range(0, 500, 64)])
    assert all(np.array_equal(whole[field], batched[field], equal_nan=True) for field in ev.ROW.names)
    assert batched.nbytes < probabilities.nbytes
    tempered = ev.temper(probabilities, 1.7)
    assert ev.score_rows(batched, true, output) == pytest.approx(ev.score(tempered, true, output))
    assert ev.calibration_error(*ev.reliability_points(batched)) == pytest.approx(
        ev.expected_calibration_error(tempered, labels))
    assert ev.calibration_error(*ev.reliability_points(batched, raw=True)) == pytest.approx(
        ev.expected_calibration_error(probabilities, labels))
    assert np.isnan(batched["true_p"][:7]).all() and (batched["label"][:7] == -1).all()


def test_a_calibrated_run_saves_its_temperature_and_predicts_with_it(tmp_path: Path, titles_csv: Path) -> None:
    recipe = recipe_dict(titles_csv, calibrate="temperature", epochs=2)
    recipe["evaluate"] = {"bootstrap": 200}
    run = ensayo.run(recipe, output=tmp_path / "run", track=False)
    temperature = read_json(run.path / layout.CALIBRATION)["temperature"]
    assert run.metrics["temperature"] == temperature and temperature != 1.0
    assert {"test/ece", "test/ece_uncalibrated", "test/balanced_accuracy_low", "val/ece"} <= run.metrics.keys()
    assert (run.path / layout.RELIABILITY).is_file()
    table = pl.DataFrame({"title": ["Zapatilla running", "Taladro percutor 600w"]})
    raw = run.classifier._predict_proba(table)
    assert run.predict_proba(table) == pytest.approx(ev.temper(raw, temperature), abs=1e-6)
    with pytest.raises(ensayo.RecipeError, match="train.calibrate: the temperature is fitted on the validation"):
        no_validation = recipe_dict(titles_csv, calibrate="temperature")
        no_validation["data"]["split"] |= {"train": 0.8, "validation": 0.0}
        ensayo.run(no_validation, output=tmp_path / "other", track=False)


def test_balanced_class_weights_and_the_focal_loss() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [-1])
    weights = balanced_weights(labels, 3)
    assert weights.tolist() == pytest.approx([100 / 180, 100 / 20, 0.0])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 3.0]])
    targets = torch.tensor([0, 1, 2])
    plain = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert FocalLoss(0.0)(logits, targets) == pytest.approx(plain.mean().item())  # gamma 0 is cross-entropy
    p_true = torch.exp(-plain)
    focal = ((1 - p_true) ** 2 * plain).mean()
    assert FocalLoss(2.0)(logits, targets) == pytest.approx(focal.item())
    # the rows the model already gets right (the first and the third) count for less than under cross-entropy
    assert (((1 - p_true) ** 2)[[0, 2]] < 0.1).all()
    config = TrainConfig(loss="focal", focal_gamma=1.0, class_weights="balanced")
    loss = classification_loss(config, labels, 3)
    assert isinstance(loss, FocalLoss) and loss.weight.tolist() == pytest.approx(weights.tolist())


@pytest.mark.slow
def test_a_rare_class_is_found_more_often_with_balanced_weights(tmp_path: Path) -> None:
    from helpers.data import make_titles, write_challenge_csv

    rows = [row for row in make_titles(rows_per_class=80, seed=1) if row[1] != "TOYS"]
    rare = [row for row in make_titles(rows_per_class=80, seed=1) if row[1] == "TOYS"][:8]
    titles = write_challenge_csv(tmp_path / "titles.csv", rows + rare)
    recall = {}
    for weights in ("none", "balanced"):
        recipe = recipe_dict(titles, epochs=2, lr=0.01, class_weights=weights)
        recipe["data"]["filters"] = []
        recipe["data"]["split"] = {"method": "stratified", "train": 0.6, "validation": 0.2, "test": 0.2, "seed": 1}
        recipe["evaluate"] = {"bootstrap": 0}
        run = ensayo.run(recipe, output=tmp_path / weights, track=False)
        assert "test/balanced_accuracy_low" not in run.metrics  # bootstrap: 0 turns the intervals off
        train_labels = np.array(run.classifier.classes.transform(["TOYS"] * 40 + ["SHOES"] * 40))
        probabilities = run.predict_proba(pl.DataFrame({"title": [t for t, _ in rare]}))
        recall[weights] = float(probabilities[:, train_labels[0]].mean())
    assert recall["balanced"] > recall["none"]


def noisy_points(path: Path, rows: int = 6000, seed: int = 0) -> dict[str, Any]:
    """Three overlapping classes in 2 of 20 numbers, and a recipe whose network ends overconfident on them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, rows)
    informative = np.array([[0, 0], [1.2, 0], [0.6, 1.0]])[labels] + rng.normal(0, 0.7, (rows, 2))
    columns = np.column_stack([informative, rng.normal(0, 1, (rows, 18))])
    pl.DataFrame({**{f"x{i}": columns[:, i] for i in range(20)}, "label": [f"c{k}" for k in labels]}).write_csv(path)
    return {"name": "points", "data": {"source": str(path), "split": {"train": 0.6, "validation": 0.15, "test": 0.25}},
            "inputs": [{"name": f"x{i}", "type": "number"} for i in range(20)], "output": {"column": "label"},
            "model": {"encoders": {f"x{i}": {"type": "passthrough"} for i in range(20)},
                      "head": {"hidden": [32], "dropout": 0.0}},
            "train": {"lr": 0.02, "epochs": 30, "batch_size": 32, "seed": 0, "monitor": "train/loss"},
            "evaluate": {"bootstrap": 0}, "track": {"enabled": False}}


@pytest.mark.slow
def test_a_classifier_is_calibrated_by_default_and_its_ranking_kept(tmp_path: Path) -> None:
    recipe = noisy_points(tmp_path / "points.csv")
    calibrated = ensayo.run(recipe, output=tmp_path / "auto", track=False).metrics
    raw = ensayo.run({**recipe, "train": {**recipe["train"], "calibrate": "none"}}, output=tmp_path / "none",
                     track=False).metrics
    assert raw["test/ece"] > 0.08 and calibrated["test/ece"] < 0.05  # overconfident, then not
    assert calibrated["test/ece_uncalibrated"] == pytest.approx(raw["test/ece"], abs=1e-6)
    assert calibrated["temperature"] > 1 and calibrated["test/accuracy"] == raw["test/accuracy"]
    assert (tmp_path / "auto" / "calibration.json").is_file() and not (tmp_path / "none" / "calibration.json").exists()


def test_without_a_validation_split_held_out_training_rows_calibrate(tmp_path: Path) -> None:
    rng = random.Random(1)
    titles = [(title, rng.choice(list(CLASSES)) if rng.random() < 0.15 else label)
              for title, label in make_titles(800, seed=2)]
    raw = {**recipe_dict(write_challenge_csv(tmp_path / "titles.csv", titles)),
           "model": {"type": "tfidf_linear", "linear": {"word_ngrams": [1, 1], "char_ngrams": [2, 3]}},
           "evaluate": {"bootstrap": 0}}
    raw["data"]["split"] = {"method": "stratified", "train": 0.75, "validation": 0.0, "test": 0.25, "seed": 1}
    run = ensayo.run(raw, output=tmp_path / "run", track=False)
    sizes = json.loads((tmp_path / "run" / "data_report.json").read_text())["split_sizes"]
    assert sizes["validation"] == pytest.approx(0.1 * (sizes["train"] + sizes["validation"]), abs=1)
    assert run.metrics["temperature"] < 1  # a linear SVM's softmaxed margins are too flat: sharpened
    assert run.metrics["test/ece_uncalibrated"] > 0.2 and run.metrics["test/ece"] < 0.05
