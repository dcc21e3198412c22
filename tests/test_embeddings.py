"""Self-trained word vectors (gensim) and pretrained sentence encoders (MiniLM, Universal Sentence Encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers.data import make_titles, recipe_dict
from safetensors.torch import load_file
from typer.testing import CliRunner

import ensayo
from ensayo.cli import app
from ensayo.features import sentence
from ensayo.features.sentence import SentenceFeature, SentencePreprocessing
from ensayo.features.text import load_word_vectors
from ensayo.models import load_recipe
from ensayo.recipe import RecipeError
from ensayo.studies.embeddings import EmbeddingJob, read_texts, train_word_vectors


def test_word_vectors_use_the_text_features_tokens(tmp_path: Path) -> None:
    texts = [title for title, _ in make_titles(40)]
    normalized = train_word_vectors(texts, EmbeddingJob(dim=12, min_count=1, epochs=2), tmp_path / "n.vec")
    train_word_vectors(texts, EmbeddingJob(dim=12, min_count=1, epochs=2, normalize=False), tmp_path / "r.vec")
    vectors = load_word_vectors(tmp_path / "n.vec")
    assert vectors.vector_size == 12 and normalized["words"] == len(vectors)
    assert "muneca" in vectors.key_to_index and "Muñeca" not in vectors.key_to_index  # accents, case gone
    assert "Muñeca" in load_word_vectors(tmp_path / "r.vec").key_to_index
    assert not (tmp_path / "n.partial").exists()


@pytest.mark.slow
def test_a_recipe_finds_its_words_in_vectors_trained_on_its_titles(tmp_path: Path, titles_csv: Path) -> None:
    texts = read_texts(titles_csv, "title", ["language == spanish"])
    train_word_vectors(texts, EmbeddingJob(method="fasttext", dim=16, min_count=1, epochs=3), tmp_path / "t.vec")
    recipe = recipe_dict(titles_csv, {"type": "bag", "embedding_dim": 16, "freeze_embeddings": True}, epochs=1)
    recipe["inputs"][0]["preprocessing"] = {"embeddings": {"path": str(tmp_path / "t.vec")}}
    saved = ensayo.run(recipe, output=tmp_path / "run", track=False)
    coverage = saved.model.features[0].coverage
    assert coverage["vocabulary_found"] > 0.95 and coverage["dimension"] == 16
    weights = load_file(tmp_path / "run" / "model.safetensors")
    table = next(v for k, v in weights.items() if k.endswith("embed.words.weight"))
    index = saved.model.features[0].vocab.lookup(["celular"])[0]
    assert torch.allclose(table[index], torch.tensor(load_word_vectors(tmp_path / "t.vec")["celular"]))


def test_vectors_trained_on_the_training_split_only(tmp_path: Path, titles_csv: Path) -> None:
    train = {"dim": 16, "min_count": 1, "epochs": 2}
    recipe = recipe_dict(titles_csv, {"type": "bag", "embedding_dim": 16}, epochs=1)
    recipe["inputs"][0]["preprocessing"] = {"embeddings": {"train": train}}
    saved = ensayo.run(recipe, output=tmp_path / "run", track=False)
    # min_count 1: a vector for every word of the training split, the vocabulary's own source
    assert saved.model.features[0].coverage == {"vocabulary_found": 1.0, "tokens_found": 1.0, "dimension": 16}
    with pytest.raises(RecipeError, match=r"embeddings.path .* or embeddings.train"):
        recipe["inputs"][0]["preprocessing"] = {"embeddings": {"train": train, "path": "v.vec"}}
        load_recipe(recipe)


def test_cli_trains_vectors_and_names_a_missing_column(tmp_path: Path, titles_csv: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["embeddings", "train", str(titles_csv), "-o", str(tmp_path / "v.vec"),
                                 "--dim", "8", "--min-count", "1", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert load_word_vectors(tmp_path / "v.vec").vector_size == 8
    result = runner.invoke(app, ["embeddings", "train", str(titles_csv), "-o", str(tmp_path / "w.vec"),
                                 "--column", "name"])
    assert result.exit_code == 2 and "no column 'name'" in result.output and str(titles_csv) in result.output


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_sentence_vectors_are_cached_by_text_whatever_split_they_come_in(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The folds of a cross-validation, or another split of the same file, encode no text twice."""
    monkeypatch.setenv("ENSAYO_CACHE", str(tmp_path))
    encoded: list[str] = []

    def fake_vectors(texts: list[str]) -> np.ndarray:
        return np.array([[len(t), sum(map(ord, t)) % 97, *range(382)] for t in texts], dtype=np.float32)

    def encode(self: SentenceFeature, texts: list[str]) -> np.ndarray:
        encoded.extend(texts)
        return fake_vectors(texts)

    monkeypatch.setattr(SentenceFeature, "_encode", encode)
    monkeypatch.setattr(sentence, "CACHED_FROM", 3)
    feature = SentenceFeature("title", "title", SentencePreprocessing(model="minilm", batch_size=2))
    first = ["red shoes", "a bank", "red shoes", "blue shoes", ""]
    assert np.array_equal(feature.vectors(first), fake_vectors(first))
    assert encoded == ["red shoes", "a bank", "blue shoes", ""]  # a text twice in one call is encoded once
    second = ["a bank", "green shoes", "red shoes", "green shoes"]
    assert np.array_equal(feature.vectors(second), fake_vectors(second))
    assert encoded[4:] == ["green shoes"]  # another split: only the text never seen is encoded
    fresh = SentenceFeature("title", "title", SentencePreprocessing(model="minilm"))
    assert np.array_equal(fresh.vectors(first + second), fake_vectors(first + second)) and len(encoded) == 5
    assert not list(tmp_path.rglob("*.partial.npy"))
    three = ["a bank", "red shoes", "blue shoes"]
    longer = SentenceFeature("title", "title", SentencePreprocessing(model="minilm", max_length=32))
    longer.vectors(three)  # another length cuts the texts elsewhere: another cache
    SentenceFeature("title", "title", SentencePreprocessing(model="minilm", cache=False)).vectors(three)
    feature.vectors(["a bank", "red shoes"])  # fewer than CACHED_FROM (a served request): encoded, not looked up
    assert encoded[5:] == [*three, *three, "a bank", "red shoes"]
    assert len(list(tmp_path.rglob("*.keys.npy"))) == 3


@pytest.mark.slow
@pytest.mark.parametrize("model, dim", [("minilm", 384), ("use", 512)])
def test_sentence_vectors_put_paraphrases_together(model: str, dim: int, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENSAYO_CACHE", str(tmp_path))
    monkeypatch.setattr(sentence, "CACHED_FROM", 1)
    feature = SentenceFeature("title", "title", SentencePreprocessing(model=model))
    texts = ["red running shoes for men", "men's red sneakers for running", "quarterly profit of the bank rose"]
    vectors = feature.transform(texts)["vectors"].numpy()
    assert vectors.shape == (3, dim)
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.2

    def refuse(*_: object) -> None:
        raise AssertionError("the cached vectors should have been read")

    monkeypatch.setattr(SentenceFeature, "_encode", refuse)
    again = SentenceFeature("title", "title", SentencePreprocessing(model=model)).transform(texts)["vectors"]
    assert np.array_equal(again.numpy(), vectors)


@pytest.mark.slow
def test_a_frozen_sentence_encoder_classifies_and_its_run_predicts(tmp_path: Path, titles_csv: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENSAYO_CACHE", str(tmp_path / "cache"))
    recipe = recipe_dict(titles_csv, {"type": "mlp", "hidden": [32]}, epochs=8, lr=0.01)
    recipe["inputs"][0] = {"name": "title", "type": "sentence", "preprocessing": {"model": "use"}}
    saved = ensayo.run(recipe, output=tmp_path / "run", track=False)
    assert saved.metrics["test/balanced_accuracy"] > 0.9
    weights = load_file(tmp_path / "run" / "model.safetensors")
    assert not any("transformer" in key for key in weights)  # frozen: the pretrained model is not saved
    labels, _ = ensayo.load_run(tmp_path / "run").predict(pl.DataFrame({"title": ["Taladro percutor Bosch 650"]}))
    assert labels[0][0] == "DRILLS"


@pytest.mark.slow
def test_a_linear_model_reads_sentence_vectors_beside_its_ngrams(tmp_path: Path, titles_csv: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENSAYO_CACHE", str(tmp_path / "cache"))
    recipe = recipe_dict(titles_csv)
    recipe["inputs"].append({"name": "meaning", "type": "sentence", "column": "title",
                             "preprocessing": {"model": "use"}})
    recipe["model"] = {"type": "tfidf_linear", "linear": {"word_ngrams": [1, 1], "char_ngrams": None,
                                                          "sentence_weight": 2.0}}
    saved = ensayo.run(recipe, output=tmp_path / "run", track=False)
    assert saved.metrics["test/balanced_accuracy"] > 0.9
    model = saved.model.linear
    words = len(model.vectorizers[0][2].vocabulary_)
    assert model.coef.shape[1] == words + 512
    table = pl.DataFrame({"title": ["Taladro percutor Bosch 650", "Muñeca articulada con accesorios"]})
    vectors = SentenceFeature("meaning", "title", SentencePreprocessing(model="use")).vectors(table["title"].to_list())
    np.testing.assert_allclose(model._matrix(table, fit=False)[:, words:].toarray(), 2.0 * vectors, rtol=1e-6)
    loaded = ensayo.load_run(tmp_path / "run")
    np.testing.assert_allclose(loaded.predict_proba(table), saved.predict_proba(table), rtol=1e-5)


def test_a_linear_model_refuses_inputs_it_cannot_read(tmp_path: Path, titles_csv: Path) -> None:
    recipe = recipe_dict(titles_csv)
    recipe["inputs"].append({"name": "length", "type": "number", "column": "label_quality"})
    recipe["model"] = {"type": "tfidf_linear"}
    with pytest.raises(RecipeError, match=r"sentence and text inputs only, not 'length' \(number\)"):
        load_recipe(recipe)


@pytest.mark.slow
def test_minilm_fine_tunes_and_its_weights_are_saved(tmp_path: Path, titles_csv: Path) -> None:
    recipe = recipe_dict(titles_csv, {"type": "mlp"}, epochs=1, lr=1e-4, batch_size=32)
    recipe["inputs"][0] = {"name": "title", "type": "sentence",
                           "preprocessing": {"model": "minilm", "fine_tune": True, "max_length": 12}}
    ensayo.run(recipe, output=tmp_path / "run", track=False)
    weights = load_file(tmp_path / "run" / "model.safetensors")
    tuned = {k: v for k, v in weights.items() if ".transformer." in k}
    original = sentence.load_minilm().state_dict()
    assert len(tuned) == len(original)
    key = next(k for k in tuned if k.endswith("encoder.layer.5.output.dense.weight"))
    pretrained = original[key.split(".transformer.", 1)[1]]
    assert not torch.equal(tuned[key], pretrained)  # trained with the task
    assert torch.equal(ensayo.load_run(tmp_path / "run").model.network.state_dict()[key], tuned[key])


def test_fine_tuning_an_onnx_encoder_is_refused() -> None:
    with pytest.raises(ValueError, match="use model 'minilm'"):
        SentencePreprocessing(model="use", fine_tune=True)
