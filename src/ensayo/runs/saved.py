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
from ensayo.features.rows import InputField, input_fields
from ensayo.models import ENGINES, FoldAverage, ModelType, RowExplanation, format_version, load_trained, refusal
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.runs import answer
from ensayo.runs.examples import read_examples
from ensayo.store import read_json

__all__ = ["ENGINES", "SavedRun", "WrongKindOfRun", "load_run"]


class WrongKindOfRun(TypeError, ValueError):
    """Asking a run for what its model type does not do (classes of a generator, text of a classifier): a
    TypeError, and a ValueError so that the CLI reports it in one line with a user's other mistakes."""


@dataclass
class SavedRun:
    """A trained run: `SavedRun.load(dir).predict(table)`, or `.generate(prompt)` for a text output."""

    path: Path
    recipe: Recipe
    model: ModelType | FoldAverage  # a cross-validated run's is its fold models' average

    @classmethod
    def load(cls, path: str | Path, engine: str = "torch", device: str = "cpu") -> SavedRun:
        """A run as saved; with `engine="onnx"`, a model whose type has an ONNX engine runs the network that
        `ensayo export --format onnx` wrote. `device`: cpu, cuda or auto (cuda where there is one), where its
        networks answer; a model without one answers on the CPU, and refuses cuda."""
        path = Path(path)
        if not (path / layout.RECIPE).is_file() or not (path / layout.STATE).is_file():
            raise FileNotFoundError(f"{path}: not a saved ensayo run (needs {layout.RECIPE} and {layout.STATE})")
        return cls(path, *load_trained(path, engine=engine, device=device))

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
        described["defaults"] = answer.defaults(self.can_predict)
        described["description"] = self.recipe.description
        described["examples"] = read_examples(self.path)
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
        return hasattr(self.model, "predict_proba")

    @property
    def can_generate(self) -> bool:
        return hasattr(self.model, "generate")

    def require(self, capability: str) -> None:
        """Refuse, naming the model type, what its model cannot do (`CAPABILITIES`)."""
        problem = refusal(self.model, capability)
        if problem:
            raise WrongKindOfRun(f"{self.path}: {problem}")

    # ------------------------------------------------------------------ a classifier's run
    @property
    def classifier(self) -> Any:
        """The model that answers rows with class probabilities (a fold average for a cross-validated run)."""
        self.require("predict")
        return self.model

    @property
    def output(self) -> CategoryOutput:
        """The classes the run predicts."""
        return self.classifier.classes

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities, classes in `output.classes` order."""
        return self.classifier.predict_proba(table)

    def predict(self, table: pl.DataFrame, top_k: int = answer.TOP_K,
                all_classes: bool = False) -> tuple[list[list[str]], np.ndarray]:
        """The `top_k` likeliest labels of each row (every class with `all_classes`), best first, with their
        probabilities; tied classes in the classes' order."""
        answer.labels_per_row(top_k, all_classes, len(self.output))  # a bad top_k before any work
        return answer.rank(self.predict_proba(table), self.output.classes, top_k, all_classes)

    @cached_property
    def takes_notes(self) -> bool:
        """Whether an input says how it read a row's file (`file_notes`), so that answers may carry a note."""
        return any(hasattr(spec.preprocessing, "file_notes") for field in self.fields for spec in field.inputs)

    def notes(self, table: pl.DataFrame) -> list[str | None]:
        """What a person should know of how each row's files were read (None: nothing)."""
        notes: list[list[str]] = [[] for _ in range(table.height)]
        for field in self.fields:
            for spec in field.inputs:
                reader = getattr(spec.preprocessing, "file_notes", None)
                if reader is not None and field.name in table.columns:
                    for row, note in reader([str(v) for v in table[field.name].to_list()]).items():
                        notes[row].append(f"{field.name}: {note}")
        return ["; ".join(said) or None for said in notes]

    def explain(self, table: pl.DataFrame, label: str | None = None) -> list[RowExplanation]:
        """Why the model gave each row its answer (or, with `label`, that class's probability)."""
        self.require("explain")
        if label is not None and label not in self.output.index:
            raise ValueError(f"{self.path}: no class {label!r} to explain (classes: "
                             f"{', '.join(self.output.classes[:20])}{'...' if len(self.output) > 20 else ''})")
        return self.model.explain(table, label)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ a generator's run
    def generate(self, prompt: str = "", length: int = answer.LENGTH, temperature: float = answer.TEMPERATURE,
                 top_k: int | None = None, top_p: float | None = None, seed: int = answer.SEED) -> Iterator[str]:
        """Yield the text of each new token as it is sampled; `length` counts tokens; `top_k` and `top_p` limit
        what is sampled from (None, 0 and 1 do not)."""
        self.require("generate")
        sampling = answer.Sampling.of(top_k, top_p, length=length, temperature=temperature, seed=seed)
        return self.sample(prompt, sampling)

    def sample(self, prompt: str, sampling: answer.Sampling) -> Iterator[str]:
        """`generate` with its settings in one value."""
        self.require("generate")
        return self.model.generate(prompt, sampling.length, sampling.temperature,  # type: ignore[union-attr]
                                   *sampling.limits, sampling.seed)


def load_run(path: str | Path, engine: str = "torch", device: str = "cpu") -> SavedRun:
    """A saved run of any recipe, answering with `engine` on `device` (cpu, cuda, auto)."""
    return SavedRun.load(path, engine, device)
