"""End to end: recipe -> saved run, on small data the tests make."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import interrupt_training, make_titles, recipe_dict, write_challenge_csv
from safetensors.torch import load_file

import ensayo
from ensayo.models import load_recipe
from ensayo.runs import SavedRun
from ensayo.layout import CHECKPOINT
from ensayo.training import EncodedSplit

REQUIRED_METRICS = {"test/balanced_accuracy", "test/accuracy", "test/macro_f1", "val/balanced_accuracy",
                    "train/loss", "fit_seconds", "test/macro_precision", "test/macro_recall", "test/loss",
                    "test/weighted_f1"}


@pytest.mark.parametrize("encoder", [
    {"type": "bag", "embedding_dim": 16},
    {"type": "cnn", "embedding_dim": 16, "filters_count": 16, "filter_widths": [1, 2]},
    {"type": "rnn", "embedding_dim": 16, "hidden_size": 16},
])
def test_each_encoder_learns_and_its_run_reloads(titles_csv: Path, tmp_path: Path, encoder: dict) -> None:
    raw = recipe_dict(titles_csv, encoder, epochs=10 if encoder["type"] == "rnn" else 6)
    raw["inputs"][0]["preprocessing"]["char_ngrams"] = [3, 4]
    saved = ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) >= REQUIRED_METRICS
    assert metrics["test/balanced_accuracy"] >= 0.9
    for name in ("recipe.yaml", "features.json", "model.safetensors", "learning_curves.png", "confusion.png",
                 "per_class.csv", "confusion.txt", "history.json", "data_report.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / CHECKPOINT).exists()

    reloaded = SavedRun.load(tmp_path / "run")
    table = pl.DataFrame({"title": ["Taladro Bosch percutor 700 watts", "Novela tapa dura edicion 2"]})
    np.testing.assert_allclose(reloaded.predict_proba(table), saved.predict_proba(table), rtol=1e-5)
    labels, probabilities = reloaded.predict(table, top_k=2)
    assert [row[0] for row in labels] == ["DRILLS", "BOOKS"]
    assert np.all(np.diff(probabilities, axis=1) <= 0)


def test_training_is_deterministic(titles_csv: Path, tmp_path: Path) -> None:
    recipe = load_recipe(recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 8, "filters_count": 8}))
    ensayo.run(recipe, output=tmp_path / "a", track=False)
    ensayo.run(recipe, output=tmp_path / "b", track=False)
    first = load_file(str(tmp_path / "a" / "model.safetensors"))
    second = load_file(str(tmp_path / "b" / "model.safetensors"))
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_interrupted_training_resumes_to_the_same_model(titles_csv: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 8, "filters_count": 8, "dropout": 0.3},
                      epochs=3, schedule="cosine", warmup_epochs=0.5)
    recipe = load_recipe(raw)
    ensayo.run(recipe, output=tmp_path / "whole", track=False)

    # the interrupt lands mid-way through epoch 2
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=15)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(recipe, output=tmp_path / "cut", track=False)
    restore()
    assert (tmp_path / "cut" / CHECKPOINT).is_file()
    assert not (tmp_path / "cut" / "metrics.json").exists()
    checkpoint = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    # 11 batches an epoch: 14 were done when the 15th was refused
    assert checkpoint["state"]["epoch"] == 1 and checkpoint["state"]["step_in_epoch"] == 3

    ensayo.run(None, resume=tmp_path / "cut", track=False)
    with pytest.raises(ValueError, match="has finished"):
        ensayo.run(None, resume=tmp_path / "cut", track=False)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert resumed["test/loss"] == pytest.approx(whole["test/loss"], rel=1e-6)
    first = load_file(str(tmp_path / "whole" / "model.safetensors"))
    second = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for key in first:
        torch.testing.assert_close(first[key], second[key])


def test_early_stopping_keeps_the_best_epoch(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv, epochs=30, early_stopping=2, lr=0.05)
    ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(history) < 30
    best = max(h["val/balanced_accuracy"] for h in history)
    best_epoch = int(metrics["best_epoch"])
    assert history[best_epoch - 1]["val/balanced_accuracy"] == best
    assert all(h["val/balanced_accuracy"] <= best for h in history[best_epoch:])
    assert len(history) == best_epoch + 2
    # the saved model is the best epoch's, not the last one's
    assert metrics["val/loss"] == pytest.approx(history[best_epoch - 1]["val/loss"], rel=1e-5)


def test_tfidf_linear_run_saves_without_pickle(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv)
    raw["model"] = {"type": "tfidf_linear", "linear": {"classifier": "logistic_regression", "C": 5.0}}
    saved = ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    metrics = saved.metrics
    assert metrics["test/balanced_accuracy"] >= 0.9
    assert REQUIRED_METRICS - {"val/balanced_accuracy"} <= set(metrics)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert "linear.safetensors" in files
    assert not any(name.endswith((".pkl", ".joblib", ".pickle")) for name in files)
    table = pl.DataFrame({"title": ["Zapatillas Nike running talle 42", "Lego bloques juguete"]})
    np.testing.assert_allclose(SavedRun.load(tmp_path / "run").predict_proba(table), saved.predict_proba(table),
                               rtol=1e-5)
    assert [r[0] for r in saved.predict(table)[0]] == ["SHOES", "TOYS"]


def test_labels_only_in_test_count_as_errors(tmp_path: Path) -> None:
    train = write_challenge_csv(tmp_path / "train.csv", make_titles(30))
    test_rows = make_titles(4, seed=9)
    test = write_challenge_csv(tmp_path / "test.csv", test_rows + [("Guitarra criolla", "GUITARS")] * 4)
    raw = recipe_dict(train)
    raw["data"].update(source=None, filters=[], split={"method": "files", "files": {"train": str(train),
                                                                                    "test": str(test)}})
    saved = ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["labels_only_in_eval"] == {"test": ["GUITARS"]}
    # the unseen class has recall 0: balanced accuracy averages it in as one of six classes
    assert saved.metrics["test/balanced_accuracy"] <= 5 / 6 + 1e-9


def test_tracking_logs_params_epochs_and_artifacts(titles_csv: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    raw = recipe_dict(titles_csv, epochs=3)
    raw["track"] = {"enabled": True, "uri": uri, "experiment": "tests"}
    ensayo.run(load_recipe(raw), output=tmp_path / "run", track=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["train.lr"] == "0.02"
    assert found.data.params["model.encoders.title.type"] == "bag"
    assert len(client.get_metric_history(found.info.run_id, "val/balanced_accuracy")) == 4  # 3 epochs + final
    assert found.data.metrics["test/balanced_accuracy"] > 0.5
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"metrics.json", "model.safetensors", "recipe.yaml", "confusion.png"} <= artifacts


def test_frozen_pretrained_vectors_stay_as_loaded(titles_csv: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 4\ntaladro 1 2 3 4\nnovela -1 -2 -3 -4\n")
    raw = recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 4, "filters_count": 8,
                                   "freeze_embeddings": True}, epochs=2)
    raw["inputs"][0]["preprocessing"]["embeddings"] = {"path": str(vectors)}
    saved = ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    weights = saved.model.network.encoders["title"].embed.words.weight
    vocabulary = saved.model.features[0].vocab.index
    assert weights[vocabulary["taladro"]].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert weights[vocabulary["novela"]].tolist() == [-1.0, -2.0, -3.0, -4.0]
    coverage = json.loads((tmp_path / "run" / "features.json").read_text())["inputs"]["title"]["coverage"]
    assert coverage["dimension"] == 4 and 0 < coverage["vocabulary_found"] < 0.1


def test_tracking_store_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ensayo.recipe import TrackConfig
    from ensayo.tracking import tracking_uri

    assert tracking_uri(TrackConfig()) == f"sqlite:///{tmp_path / 'mlflow.db'}"  # the working directory
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert tracking_uri(TrackConfig()) == "sqlite:////elsewhere/m.db"
    assert tracking_uri(TrackConfig(uri="sqlite:////recipe.db")) == "sqlite:////recipe.db"


def test_without_validation_the_lowest_training_loss_is_kept(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv, epochs=4)
    raw["data"]["split"].update(train=0.8, validation=0.0, test=0.2)
    ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    losses = [h["train/loss"] for h in history]
    assert losses[-1] < losses[0]
    assert int(metrics["best_epoch"]) == 1 + losses.index(min(losses))
