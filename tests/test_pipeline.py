"""End to end: recipe -> saved run, on small data the tests make."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers.data import make_titles, recipe_dict, write_challenge_csv

import ensayo
from ensayo.layout import CHECKPOINT
from ensayo.models import load_recipe
from ensayo.runs import SavedRun

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
