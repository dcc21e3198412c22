"""Saved runs: a directory with the recipe, the fitted preprocessing as JSON and weights as safetensors
(file names in `ensayo.layout`). One class serves every model type: a classifier's run predicts, a
generator's run generates. Loading reads JSON, YAML and safetensors only: nothing is unpickled and no
code runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ensayo import layout
from ensayo.data import Bins
from ensayo.models import Classifier, Generator, ModelType, format_version, load_trained, model_type_of
from ensayo.models.onnx import OnnxNeuralClassifier
from ensayo.models.registry import run_recipe
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.runs.folds import FoldAverage, is_cross_validated
from ensayo.runs.inputs import InputField, input_fields
from ensayo.store import read_json

ENGINES = ("torch", "onnx")


class WrongKindOfRun(TypeError, ValueError):
    """Asking a run for what its model type does not do (classes of a generator, text of a classifier): a
    TypeError, and a ValueError so that the CLI reports it in one line with a user's other mistakes."""


@dataclass
class SavedRun:
    """A trained run: `SavedRun.load(dir).predict(table)`, or `.generate(prompt)` for a text output."""

    path: Path
    recipe: Recipe
    model: ModelType

    @classmethod
    def load(cls, path: str | Path, engine: str = "torch") -> SavedRun:
        """A run as saved; with `engine="onnx"`, a neural classifier whose network runs in ONNX Runtime (from
        `ensayo export --format onnx`)."""
        path = Path(path)
        if not (path / layout.RECIPE).is_file() or not (path / layout.STATE).is_file():
            raise FileNotFoundError(f"{path}: not a saved ensayo run (needs {layout.RECIPE} and {layout.STATE})")
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r}: choose {' or '.join(ENGINES)}")
        recipe = run_recipe(path)
        if is_cross_validated(recipe):  # the folds' models, averaged
            return cls(path, recipe, FoldAverage.load(path, recipe, lambda fold: cls.load(fold, engine).classifier))
        if engine == "torch":
            return cls(path, *load_trained(path, recipe))  # the recipe read once
        problem = model_type_of(recipe).export_problem("onnx")
        if problem:
            raise ValueError(f"{path}: no ONNX engine for this run: {problem}")
        return cls(path, recipe, OnnxNeuralClassifier.load(path, recipe))  # its graph holds the temperature

    @cached_property
    def bins(self) -> Bins:
        """The derived bins fitted on the training split, read when a labelled file is scored."""
        return Bins(self.recipe.derive).load_state(read_json(self.path / layout.STATE).get("derived", {}))

    # ------------------------------------------------------------------ what it is
    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def model_type(self) -> str:
        return self.recipe.model.type

    @property
    def run_id(self) -> str:
        """The MLflow run id where the run was tracked, else the run directory's name."""
        return str(self._json(layout.TRACKING, {}).get("run_id") or self.path.name)

    @property
    def trained_at(self) -> str:
        """When training finished (UTC, ISO 8601): as recorded, or for older runs when the metrics were written."""
        recorded = self._json(layout.FORMAT, {}).get("trained_at")
        if recorded:
            return str(recorded)
        finished = self.path / layout.METRICS
        stamp = finished.stat().st_mtime if finished.is_file() else (self.path / layout.STATE).stat().st_mtime
        return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")

    @cached_property
    def fields(self) -> list[InputField]:
        """The columns a row sends to predict (none for a generator)."""
        return input_fields(self.recipe) if self.can_predict else []

    def identity(self) -> dict[str, str]:
        """Which run answers: its name, run id and when it was trained."""
        return {"name": self.name, "run_id": self.run_id, "trained_at": self.trained_at}

    def describe(self) -> dict[str, Any]:
        """What a client needs to know: the model type, the inputs, the classes or the text level, the test
        scores."""
        described: dict[str, Any] = {**self.identity(), "model_type": self.model_type,
                                     "output": self.recipe.output.type,
                                     "inputs": [field.describe() for field in self.fields]}
        if self.can_predict:
            described["classes"] = list(self.output.classes)
        else:
            described["level"] = getattr(self.recipe.output, "level", None)
        described["metrics"] = {k: v for k, v in self.metrics.items() if k.startswith("test/")}
        return described

    @property
    def format_version(self) -> int:
        return format_version(self.path)

    @property
    def metrics(self) -> dict[str, Any]:
        return self._json(layout.METRICS, {})

    @property
    def history(self) -> list[dict[str, float]]:
        return self._json(layout.HISTORY, [])

    def _json(self, name: str, default: Any) -> Any:
        file = self.path / name
        return read_json(file) if file.is_file() else default

    @property
    def can_predict(self) -> bool:
        return isinstance(self.model, Classifier)

    @property
    def can_generate(self) -> bool:
        return isinstance(self.model, Generator)

    # ------------------------------------------------------------------ a classifier's run
    @property
    def classifier(self) -> Classifier:
        if not isinstance(self.model, Classifier):
            raise WrongKindOfRun(f"{self.path}: a {self.recipe.output.type}-output run ({self.model_type}) does not "
                            "predict classes; use generate")
        return self.model

    @property
    def output(self) -> CategoryOutput:
        """The classes the run predicts."""
        return self.classifier.classes

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities, classes in `output.classes` order."""
        return self.classifier.predict_proba(table)

    def predict(self, table: pl.DataFrame, top_k: int = 1) -> tuple[list[list[str]], np.ndarray]:
        """The `top_k` likeliest labels of each row, best first, with their probabilities."""
        return self.classifier.predict(table, top_k)

    # ------------------------------------------------------------------ a generator's run
    def generate(self, prompt: str = "", length: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0) -> Iterator[str]:
        """Yield the text of each new token as it is sampled; `length` counts tokens."""
        if not isinstance(self.model, Generator):
            raise WrongKindOfRun(f"{self.path}: not a language model run (its output is {self.recipe.output.type})")
        return self.model.generate(prompt, length, temperature, top_k, top_p, seed)


def load_run(path: str | Path, engine: str = "torch") -> SavedRun:
    """A saved run of any recipe."""
    return SavedRun.load(path, engine)
