"""The model-type registry: a model type defined in this file, registered here and nowhere in the
package, goes through `ensayo validate`, `run` and `predict`; the built-in types say what they can do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
import yaml
from helpers.contract import assert_model_type_contract, write_points
from pydantic import Field
from scipy.special import softmax
from typer.testing import CliRunner

import ensayo
from ensayo import layout
from ensayo.cli import app
from ensayo.data import Splits
from ensayo.models import (
    MODEL_SCHEMAS,
    MODEL_TYPES,
    Classifier,
    FitContext,
    Fitted,
    Sections,
    load_recipe,
    register_model_type,
)
from ensayo.models.base import read_state
from ensayo.outputs import CategoryOutput
from ensayo.recipe import Recipe, RecipeError, Strict
from ensayo.store import write_json

runner = CliRunner()


class CentroidConfig(Strict):
    temperature: float = Field(1.0, gt=0, description="softmax temperature over negative squared distances")


class NearestCentroid(Classifier):
    """Each class's mean of the number inputs; a row's probabilities are a softmax of minus its squared distances."""

    sections: ClassVar[Sections] = {"centroid": CentroidConfig}
    input_types = frozenset({"number"})

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.centroids = np.zeros((0, 0))

    def _matrix(self, table: pl.DataFrame) -> np.ndarray:
        columns = [self.recipe.column_of(spec) for spec in self.recipe.inputs]
        return table.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()

    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        labels = self.classes.fit(self.labels(splits.train)).transform(self.labels(splits.train))
        matrix = self._matrix(splits.train)
        self.centroids = np.stack([matrix[labels == k].mean(axis=0) for k in range(len(self.classes))])
        write_json(context.run_dir / layout.STATE, {"inputs": {}, "output": self.classes.state(),
                                                    "centroids": self.centroids.tolist()})
        scores = self.score_splits(splits, lambda _, table: self._predict_proba(table))
        return Fitted({"fit_seconds": 0.0, **scores})

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> NearestCentroid:
        model = cls(recipe)
        state = read_state(run_dir)
        model.classes = CategoryOutput.from_state(state["output"])
        model.centroids = np.asarray(state["centroids"])
        return model

    def _predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        distances = ((self._matrix(table)[:, None, :] - self.centroids[None]) ** 2).sum(axis=2)
        return softmax(-distances / self.recipe.model.centroid.temperature, axis=1)


@pytest.fixture
def centroid_type() -> Iterator[type[NearestCentroid]]:
    register_model_type("nearest_centroid")(NearestCentroid)
    yield NearestCentroid
    del MODEL_TYPES["nearest_centroid"], MODEL_SCHEMAS["nearest_centroid"]


def points_recipe(source: Path, **model: object) -> dict[str, object]:
    return {"name": "points", "data": {"source": str(source), "split": {"train": 0.6, "validation": 0.2,
                                                                       "test": 0.2, "seed": 0}},
            "inputs": [{"name": "x", "type": "number"}, {"name": "y", "type": "number"}],
            "output": {"column": "place"},
            "model": {"type": "nearest_centroid", "centroid": {"temperature": 2.0}, **model},
            "track": {"enabled": False}}


def test_a_model_type_registered_outside_the_package_validates_runs_and_predicts(
        centroid_type: type[NearestCentroid], tmp_path: Path) -> None:
    recipe = tmp_path / "points.yaml"
    recipe.write_text(yaml.safe_dump(points_recipe(write_points(tmp_path / "points.csv"))))
    checked = runner.invoke(app, ["validate", str(recipe)])
    assert checked.exit_code == 0, checked.output
    assert "valid (nearest_centroid model, 2 input(s), output category place)" in " ".join(checked.stdout.split())

    trained = runner.invoke(app, ["run", str(recipe), "--no-track", "--output", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    saved = ensayo.load_run(tmp_path / "run")
    assert isinstance(saved.model, NearestCentroid) and saved.model_type == "nearest_centroid"
    assert saved.recipe.model.centroid.temperature == 2.0
    assert saved.metrics["test/accuracy"] > 0.9

    new = tmp_path / "new.csv"
    pl.DataFrame({"x": [0.2, 5.1, -0.3], "y": [4.8, 0.1, -5.2]}).write_csv(new)
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), "--input", str(new), "--output",
                                    str(tmp_path / "p.csv"), "--top-k", "1"])
    assert predicted.exit_code == 0, predicted.output
    assert pl.read_csv(tmp_path / "p.csv")["label_1"].to_list() == ["north", "east", "south"]
    labels, _ = ensayo.predict(tmp_path / "run", [{"x": 4.9, "y": 0.3}])
    assert labels[0][0] == "east" and len(labels[0]) == 3  # the three classes, best first


def test_a_model_type_registered_in_a_test_keeps_the_contract(centroid_type: type[NearestCentroid],
                                                              tmp_path: Path) -> None:
    assert_model_type_contract("nearest_centroid", tmp_path, model={"centroid": {"temperature": 2.0}})
    assert centroid_type.capabilities() == {"predict"}


def test_each_built_in_type_is_a_subclass_of_the_schema_declared_without_torch() -> None:
    from ensayo.models.language import ARCHITECTURES, LANGUAGE_MODELS

    assert set(MODEL_TYPES) == set(MODEL_SCHEMAS)
    for name, kind in MODEL_TYPES.items():  # the checks a recipe gets without torch are the trained type's
        assert issubclass(kind, MODEL_SCHEMAS[name]) and MODEL_SCHEMAS[name].__module__.endswith("schema"), name
    assert sorted(ARCHITECTURES) == sorted(LANGUAGE_MODELS)


def test_a_model_type_that_is_not_its_declared_schema_is_refused_when_registered() -> None:
    class Impostor(NearestCentroid):
        pass

    with pytest.raises(TypeError, match="model type neural: Impostor is not a subclass of its declared schema "
                                        "NeuralSchema"):
        register_model_type("neural")(Impostor)
    assert MODEL_TYPES["neural"] is not Impostor


def test_a_plug_in_that_declares_what_it_does_not_implement_is_refused_when_registered() -> None:
    class Declares(NearestCentroid):
        exports: ClassVar[dict[str, None]] = {"onnx": None}

    with pytest.raises(TypeError, match="model type declares: `exports` is no longer declared; implement export_onnx"):
        register_model_type("declares")(Declares)

    class HalfOnnx(NearestCentroid):
        def export_onnx(self, target: Path) -> None: ...

    with pytest.raises(TypeError, match="export_onnx and load_onnx"):
        register_model_type("half_onnx")(HalfOnnx)
    assert "declares" not in MODEL_TYPES and "half_onnx" not in MODEL_TYPES


def test_a_registered_type_checks_its_own_section_and_inputs(centroid_type: type[NearestCentroid],
                                                             tmp_path: Path) -> None:
    source = write_points(tmp_path / "points.csv")
    with pytest.raises(RecipeError, match=r"model.centroid.temprature: unknown key; did you mean 'temperature'"):
        load_recipe(points_recipe(source, centroid={"temprature": 2.0}))
    with pytest.raises(RecipeError, match=r"model.centroid.temperature: Input should be greater than 0"):
        load_recipe(points_recipe(source, centroid={"temperature": 0}))
    with pytest.raises(RecipeError, match=r"model.encoders: unknown key for model type 'nearest_centroid'"):
        load_recipe(points_recipe(source, encoders={}))
    text = points_recipe(source)
    text["inputs"] = [{"name": "x", "type": "text"}]
    with pytest.raises(RecipeError, match=r"reads number inputs only, not 'x' \(text\)"):
        load_recipe(text)
    with pytest.raises(RecipeError, match=r"unknown model type 'nearest_centriod'; did you mean 'nearest_centroid'"):
        load_recipe(points_recipe(source, type="nearest_centriod"))


def test_an_unregistered_model_type_is_named_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"unknown model type 'nueral'; did you mean 'neural'\? \(known: ensemble, "
                                          r"language_model, neural, tfidf_linear\)"):
        load_recipe(points_recipe(tmp_path / "points.csv", type="nueral"))


def test_the_built_in_types_say_what_they_can_do() -> None:
    assert {name: kind.capabilities() for name, kind in MODEL_TYPES.items()} == {
        "neural": {"predict", "onnx", "explain"}, "tfidf_linear": {"predict", "explain"}, "ensemble": {"predict"},
        "language_model": {"generate"}}
    assert MODEL_TYPES["neural"].export_problem("onnx") is None
    assert MODEL_TYPES["neural"].export_problem("mlflow") is None
    for name in ("tfidf_linear", "ensemble", "language_model"):
        assert MODEL_TYPES[name].export_problem("onnx").startswith(f"model type {name} has no onnx export: ")
        assert MODEL_TYPES[name].export_problem("mlflow") is None, name
    assert MODEL_TYPES["neural"].export_problem("pickle") == "model type neural has no pickle export"
    assert MODEL_TYPES["neural"].distributed is None and MODEL_TYPES["language_model"].distributed is None
    assert MODEL_TYPES["tfidf_linear"].distributed and MODEL_TYPES["ensemble"].distributed
    assert {name: MODEL_TYPES[name].output for name in MODEL_TYPES} == {
        "neural": "category", "tfidf_linear": "category", "ensemble": "category", "language_model": "text"}


def test_a_method_available_only_if_its_check_passes_is_missing_from_the_model_that_fails_it() -> None:
    from ensayo.models.base import available_if, refusal

    class Ready:
        def __init__(self, trained: bool) -> None:
            self.trained = trained

        @available_if(lambda self: self.trained)
        def explain(self, table: str) -> str:
            """Says which table."""
            return f"explained {table}"

    assert hasattr(Ready, "explain") and Ready.explain.__doc__ == "Says which table."
    assert Ready(True).explain("t") == "explained t"
    untrained = Ready(False)
    assert not hasattr(untrained, "explain")
    with pytest.raises(AttributeError, match="has no explain"):
        untrained.explain("t")
    unfitted = MODEL_TYPES["neural"].__new__(MODEL_TYPES["neural"])
    unfitted.network = None
    assert not hasattr(unfitted, "explain") and hasattr(MODEL_TYPES["neural"], "explain")
    assert refusal(MODEL_TYPES["neural"], "explain") is None
