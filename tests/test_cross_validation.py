"""Cross-validation: K fold runs, each fitting its preprocessing on its own training part; the recipe's run
summarizes them, saves the out-of-fold predictions and predicts with the mean of its fold models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import cv_recipe, interrupt_training, make_titles, write_challenge_csv

import ensayo
from ensayo import layout
from ensayo.data import load_splits
from ensayo.features.text import TextFeature
from ensayo.models.registry import run_recipe
from ensayo.runs import SavedRun
from ensayo.store import read_json
from ensayo.training import EncodedSplit

TITLES = ["Zapatilla running hombre", "Celular libre 64gb", "Taladro percutor", "Muñeca bebote"]


def test_each_fold_is_the_test_set_once_and_fits_its_preprocessing_on_its_own_training_rows(cv_run: Path) -> None:
    folds = sorted((cv_run / layout.FOLDS).iterdir())
    assert [f.name for f in folds] == ["fold0", "fold1", "fold2"]
    tests, vocabularies = [], []
    for fold, folder in enumerate(folds):
        recipe = run_recipe(folder)
        assert recipe.data.split.fold == fold
        splits = load_splits(recipe)
        tests.append(set(splits.test["__line__"].to_list()))
        train_lines = set(splits.train["__line__"].to_list()) | set(splits.validation["__line__"].to_list())
        assert not train_lines & tests[-1]
        refit = TextFeature("title", "title", recipe.inputs[0].preprocessing).fit(splits.train["title"].to_list())
        saved = read_json(folder / layout.STATE)["inputs"]["title"]
        assert saved == refit.state()  # fitted on this fold's training rows, no other
        vocabularies.append(tuple(saved["vocabulary"]))
    assert not any(a & b for i, a in enumerate(tests) for b in tests[i + 1:])
    out_of_fold = pl.read_csv(cv_run / layout.OUT_OF_FOLD)
    assert set(out_of_fold["line"].to_list()) == set().union(*tests)
    assert out_of_fold.height == sum(len(t) for t in tests)
    assert len(set(vocabularies)) > 1


def test_metrics_summarize_the_folds_with_an_interval_and_score_the_out_of_fold_predictions(cv_run: Path) -> None:
    metrics = read_json(cv_run / layout.METRICS)
    per_fold = [read_json(cv_run / layout.FOLDS / f"fold{k}" / layout.METRICS) for k in range(3)]
    for name in ("balanced_accuracy", "accuracy", "macro_f1", "loss"):
        values = np.array([m[f"test/{name}"] for m in per_fold])
        assert [metrics[f"cv/{name}_fold{k}"] for k in range(3)] == pytest.approx(values)
        assert metrics[f"cv/{name}_mean"] == pytest.approx(values.mean())
        assert metrics[f"cv/{name}_std"] == pytest.approx(values.std(ddof=1))
        half = 4.302653 * values.std(ddof=1) / np.sqrt(3)  # Student t, 2 degrees of freedom, 97.5 %
        assert metrics[f"cv/{name}_low"] == pytest.approx(values.mean() - half, abs=1e-6)
        assert metrics[f"cv/{name}_high"] == pytest.approx(values.mean() + half, abs=1e-6)
    rows = pl.read_csv(cv_run / layout.OUT_OF_FOLD)
    assert metrics["test/accuracy"] == pytest.approx((rows["true"] == rows["predicted"]).mean())
    assert metrics["test/accuracy_low"] <= metrics["test/accuracy"] <= metrics["test/accuracy_high"]
    for fold in per_fold:  # each fold calibrated on its own validation rows
        assert fold["temperature"] > 0 and "test/ece_uncalibrated" in fold


def test_a_cross_validated_run_predicts_with_the_mean_of_its_fold_models(cv_run: Path) -> None:
    table = pl.DataFrame({"title": TITLES})
    run = SavedRun.load(cv_run)
    folds = [SavedRun.load(cv_run / layout.FOLDS / f"fold{k}") for k in range(3)]
    expected = np.zeros((len(TITLES), len(run.output.classes)))
    for fold in folds:
        columns = [run.output.classes.index(c) for c in fold.output.classes]
        expected[:, columns] += fold.predict_proba(table) / 3
    assert run.predict_proba(table) == pytest.approx(expected, abs=1e-6)
    labels, _ = ensayo.predict(cv_run, [{"title": t} for t in TITLES])
    assert [row[0] for row in labels] == [run.output.classes[i] for i in expected.argmax(axis=1)]


def test_folds_are_mlflow_child_runs_and_an_interrupted_cross_validation_resumes_at_its_fold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    titles = write_challenge_csv(tmp_path / "titles.csv", make_titles(rows_per_class=80, seed=2))
    recipe = cv_recipe(titles, folds=2, epochs=2)
    recipe["track"] = {"enabled": True, "uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    (tmp_path / "cv.yaml").write_text(yaml.safe_dump(recipe))
    output = tmp_path / "run"
    # 135 training rows in batches of 16: 9 steps an epoch, 18 a fold, then 1 batch of its 180 test rows;
    # stop in the second fold's first epoch
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=25)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(tmp_path / "cv.yaml", output=output)
    restore()
    first = output / layout.FOLDS / "fold0" / layout.METRICS
    assert first.is_file() and not (output / layout.METRICS).is_file()
    finished_at = first.stat().st_mtime_ns
    run = ensayo.run(None, resume=output)
    assert first.stat().st_mtime_ns == finished_at  # the finished fold was kept, not trained again
    assert "cv/balanced_accuracy_mean" in run.metrics

    client = MlflowClient(recipe["track"]["uri"])
    parent = read_json(output / layout.TRACKING)["run_id"]
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(c.data.tags["ensayo.fold"] for c in children) == ["0", "1"]
    assert client.get_run(parent).data.metrics["cv/balanced_accuracy_mean"] == run.metrics["cv/balanced_accuracy_mean"]


def test_cross_validation_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    from ensayo.recipe import RecipeError

    titles = write_challenge_csv(tmp_path / "titles.csv", make_titles(rows_per_class=10))
    recipe = cv_recipe(titles, folds=3)
    recipe["data"]["split"]["method"] = "filter"
    with pytest.raises(RecipeError, match="folds: cross-validation splits by method stratified, random or group"):
        ensayo.run(recipe, output=tmp_path / "a", track=False)
    grouped = cv_recipe(titles, folds=30)
    grouped["data"]["split"] |= {"method": "group", "group_column": "label_quality"}
    with pytest.raises(ValueError, match="30 folds need 30 groups or more; column 'label_quality' has 1"):
        ensayo.run(grouped, output=tmp_path / "b", track=False)
    assert not (tmp_path / "b").exists()


def test_a_k_fold_run_exports_to_onnx_and_its_onnx_engine_averages_the_same_folds(cv_run: Path,
                                                                                tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    exported = tmp_path / "exported"
    ensayo.export(cv_run, "onnx", exported)
    assert sorted(p.name for p in (exported / layout.FOLDS).iterdir()) == ["fold0", "fold1", "fold2"]
    table = pl.DataFrame({"title": TITLES})
    by_torch = SavedRun.load(cv_run).predict_proba(table)
    assert SavedRun.load(exported, engine="onnx").predict_proba(table) == pytest.approx(by_torch, abs=1e-4)
    shutil.rmtree(exported)
