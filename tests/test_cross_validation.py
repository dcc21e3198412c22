"""Cross-validation: K fold runs, each fitting its preprocessing on its own training part; the recipe's run
summarizes them, saves the out-of-fold predictions and predicts with the mean of its fold models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from helpers.data import cv_recipe, make_titles, write_challenge_csv
from helpers.training import interrupt_training

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


@pytest.mark.slow
def test_folds_are_mlflow_child_runs_and_an_interrupted_cross_validation_resumes_at_its_fold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    titles = write_challenge_csv(tmp_path / "titles.csv", make_titles(rows_per_class=40, seed=2))
    recipe = cv_recipe(titles, folds=2, epochs=2)
    recipe["track"] = {"enabled": True, "uri": f"sqlite:///{mlflow_db}"}
    (tmp_path / "cv.yaml").write_text(yaml.safe_dump(recipe))
    output = tmp_path / "run"
    # about 67 training rows in batches of 16: 5 steps an epoch, 10 a fold, then 1 batch of its 90 test rows
    # (the 23 validation rows are not counted); stop in the second fold's first epoch
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=14, min_rows=60)
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
    by_onnx = SavedRun.load(exported, engine="onnx")
    assert by_onnx.predict_proba(table) == pytest.approx(by_torch, abs=1e-4)
    # the average's own reason, not its folds' engine: what a cross-validated run never does
    with pytest.raises(TypeError, match="does not explain its answers: a cross-validated run averages its fold"):
        by_onnx.explain(table)
    shutil.rmtree(exported)


@pytest.mark.slow
def test_a_sweep_trains_k_folds_per_trial_and_the_report_pairs_two_runs_on_the_same_folds(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ensayo.cli import app

    titles = write_challenge_csv(tmp_path / "titles.csv", make_titles(rows_per_class=30, seed=3))
    recipe = cv_recipe(titles, folds=2, epochs=1)
    recipe["evaluate"] = {"bootstrap": 0}
    (tmp_path / "cv.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["sweep", str(tmp_path / "cv.yaml"), "--grid", "train.lr=0.002,0.05",
                                      "--no-track", "-o", str(tmp_path / "study")])
    assert result.exit_code == 0, result.output
    trials = sorted((tmp_path / "study" / "trials").glob("*/seed0"))
    assert len(trials) == 2
    assert all(sorted(p.name for p in (t / layout.FOLDS).iterdir()) == ["fold0", "fold1"] for t in trials)
    report = CliRunner().invoke(app, ["report", *map(str, trials), "-o", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Paired differences of test/balanced_accuracy over the same folds" in text
    folds = [[read_json(t / layout.METRICS)[f"cv/balanced_accuracy_fold{k}"] for k in range(2)] for t in trials]
    differences = np.subtract(*folds)
    assert f"{differences.mean():+.4f}" in text and "2 folds" in text


@pytest.mark.server
def test_a_k_fold_run_is_served_and_exported_to_mlflow_with_its_folds_averaged(cv_run: Path, tmp_path: Path) -> None:
    import mlflow
    import requests
    from helpers.servers import LiveServer

    from ensayo.runs import load_run
    from ensayo.serving import ServeOptions, create_app

    rows = [{"title": t} for t in TITLES]
    labels, probabilities = ensayo.predict(cv_run, rows, top_k=2)
    server = LiveServer(create_app({"tiny-cv": load_run(cv_run)}, ServeOptions(max_rows=16)))
    try:
        answer = requests.post(server.url + "/v1/models/tiny-cv/predict", json={"rows": rows, "top_k": 2}, timeout=30)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    assert [p["labels"] for p in answer.json()["predictions"]] == labels
    assert np.allclose([p["probabilities"] for p in answer.json()["predictions"]], probabilities, atol=1e-6)

    ensayo.export(cv_run, "mlflow", tmp_path / "model")
    assert len([p for p in (tmp_path / "model").rglob(layout.WEIGHTS) if "fold" in str(p)]) == 3
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    predicted = loaded.predict(pl.DataFrame(rows).to_pandas(), params={"top_k": 2})
    assert predicted["labels"].tolist() == labels
    assert np.allclose(np.array(predicted["probabilities"].tolist()), probabilities, atol=1e-6)
