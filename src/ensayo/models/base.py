"""Model types: the unit of extension for what is trained. Each is one module of this package with one
`ModelType` subclass registered by `@register_model_type("name")`.

A model type says what it is (the output it gives, the inputs it reads, whether it trains on several
processes), owns its recipe sections (`model.<key>`, validated when the recipe is resolved; a built-in type
declares them, with its checks, in a schema module without torch that its class subclasses:
`ensayo.models.schemas`), and follows
scikit-learn's vocabulary: the constructor stores the recipe, `fit` learns from the splits and leaves the
run directory complete, `load` rebuilds the trained model from a run directory.

What a trained model can do is a method it has, as in scikit-learn: `predict_proba` (a `Classifier`),
`generate` (a `Generator`), `export_onnx` with its engine `load_onnx`, `explain`. A method that depends on
the trained model is there only when it can work (`available_if`), and `refusal` says, naming the type, why
one is missing. `tests/helpers/contract.py` checks every registered type against this contract.
"""

from __future__ import annotations

import importlib
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import polars as pl
from rich.console import Console

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import Splits, apply_expressions
from ensayo.models.schemas import ClassifierSchema, GeneratorSchema, ModelSchema, check_declared
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.store import read_json, write_json

if TYPE_CHECKING:
    from ensayo.outputs.teacher import TeacherProbabilities

# what a trained model can do -> the method that does it; a type can do what it has the method for
CAPABILITIES = {"predict": "predict_proba", "generate": "generate", "onnx": "export_onnx", "explain": "explain"}
# how a refusal says what the type does not do
_CANNOT = {"predict": "does not predict classes (use generate)", "generate": "does not generate text (use predict)",
           "onnx": "has no onnx export", "explain": "does not explain its answers"}
_CANNOT_THIS = {"predict": "cannot predict classes", "generate": "cannot generate text",
                "onnx": "cannot be exported to onnx", "explain": "cannot explain its answers"}
EpochCallback = Callable[[dict[str, float]], None]
# Trains a member recipe into a run directory (resuming it when asked) and returns the trained member:
# how an ensemble trains its members through the pipeline without importing it.
TrainMember = Callable[[Recipe, Path, bool], "Classifier"]
Predict = Callable[[str, pl.DataFrame], np.ndarray]  # (split name, table) -> (rows, classes) probabilities
# (split name, table, label indices, temperature) -> the rows' metrics.ROW records
Summarise = Callable[[str, pl.DataFrame, np.ndarray, float], np.ndarray]


@dataclass
class FitContext:
    """What `fit` gets besides the data: where the run lives and what to tell whom while it trains."""

    run_dir: Path
    resume: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    on_epoch: EpochCallback | None = None  # each epoch's record (MLflow, a study's pruner; may raise)
    base: Path | None = None  # the recipe's folder: relative paths in it start there
    train_member: TrainMember | None = None
    teacher: TeacherProbabilities | None = None  # train.teacher's probabilities of the data's lines


@dataclass
class Fitted:
    """What training gave: the final metrics and one record per epoch (none for a model fitted in one go)."""

    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


class ModelType(ModelSchema, ABC):
    """One kind of model: its schema's class attributes and checks (`ensayo.models.schemas`), and `fit` and
    `load`, which subclasses implement."""

    refusals: ClassVar[dict[str, str]] = {}  # capability -> why the type lacks it, in words for a user
    distributed: ClassVar[str | None] = "it trains in one process"  # None: it can train on several processes
    curve_metric: ClassVar[str] = "balanced_accuracy"  # the validation metric its learning curves show

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    # ------------------------------------------------------------------ what it can do

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """What a trained model of this type can do, read off the methods it has (`CAPABILITIES`); a method
        with a condition (`available_if`) may still be missing on one trained model."""
        return frozenset(name for name, method in CAPABILITIES.items() if hasattr(cls, method))

    @classmethod
    def export_problem(cls, fmt: str) -> str | None:
        """Why this model type cannot be exported to `fmt`, or None when it can. Every type exports to MLflow: the
        exported model reads the run with ensayo."""
        if fmt == "mlflow":
            return None
        if fmt not in CAPABILITIES or fmt in ("predict", "generate", "explain"):
            return f"model type {cls.name} has no {fmt} export"
        return refusal(cls, fmt)

    def blocker(self, capability: str) -> str | None:
        """Why this trained model cannot do what its type can, or None (most models: nothing)."""
        return None

    # ------------------------------------------------------------------ training and loading
    @abstractmethod
    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        """Learn from the splits, score validation and test, and write the model's files into the run directory."""

    @classmethod
    @abstractmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> ModelType:
        """The trained model saved in `run_dir` (reads JSON and safetensors only: no code runs)."""

    def write_report(self, run_dir: Path) -> None:
        """Plots and tables of the finished run for a person to look at (beyond the learning curves)."""


class Classifier(ClassifierSchema, ModelType):
    """A model type whose output is a category: every row gets each class's probability."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.classes = CategoryOutput(recipe.output.column or "")
        self.test_predictions: tuple[list[str], list[str]] | None = None  # (true, predicted), for the report
        self.temperature = 1.0  # train.calibrate: the temperature divides the log-probabilities before the softmax
        self.reliability: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # the test split's, for the report


    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities; an input that is a derived column is derived first."""
        if not {self.recipe.column_of(spec) for spec in self.recipe.inputs} <= set(table.columns):
            table = apply_expressions(table, self.recipe, only_possible=True)
        return ev.temper(self._predict_proba(table), self.temperature)

    def load_calibration(self, run_dir: Path) -> Self:
        """The temperature saved with the run (none: 1)."""
        path = run_dir / layout.CALIBRATION
        self.temperature = float(read_json(path)["temperature"]) if path.is_file() else 1.0
        return self

    @abstractmethod
    def _predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        """Probabilities of rows that hold every input column."""

    def labels(self, table: pl.DataFrame) -> list[str]:
        return table[self.recipe.output.column].cast(pl.String).to_list()

    def score_splits(self, splits: Splits, predict: Predict, summarise: Summarise | None = None) -> dict[str, float]:
        """Final metrics of the validation and test splits. `predict(split_name, table)` gives probabilities;
        `summarise(split_name, table, labels, temperature)`, where given, gives the rows' `metrics.ROW`
        records without the whole probability matrix (a large split is scored a batch at a time). With
        `train.calibrate`, the temperature is fitted on the validation split's probabilities first; the test
        split's metrics get bootstrap intervals (`evaluate.bootstrap`)."""
        def from_probabilities(name: str, table: pl.DataFrame, labels: np.ndarray, temperature: float) -> np.ndarray:
            return ev.summarise(predict(name, table), labels, temperature)

        summarise = summarise or from_probabilities
        metrics: dict[str, float] = {}
        calibrate = self.recipe.train.calibrate
        calibrating = calibrate == "temperature" or (calibrate == "auto" and splits.validation.height > 0)
        if calibrate == "temperature" and splits.validation.height == 0:
            raise ValueError("train.calibrate: the validation split is empty; the temperature is fitted on it")
        for name, prefix in (("validation", "val/"), ("test", "test/")):
            table = getattr(splits, name)
            if table.height == 0:
                continue
            started = time.perf_counter()
            true = self.labels(table)
            known = self.classes.transform(true)
            if calibrating and name == "validation":
                raw = predict(name, table)
                self.temperature = ev.fit_temperature(raw, known)
                metrics["temperature"] = self.temperature
                rows = ev.summarise(raw, known, self.temperature)
                del raw
            else:
                rows = summarise(name, table, known, self.temperature)
            metrics |= ev.score_rows(rows, true, self.classes, prefix)
            metrics[f"{prefix}ece"] = ev.calibration_error(*ev.reliability_points(rows))
            if calibrating:
                metrics[f"{prefix}ece_uncalibrated"] = ev.calibration_error(*ev.reliability_points(rows, raw=True))
            metrics[f"{prefix}predict_seconds"] = time.perf_counter() - started
            if name == "test" or self.test_predictions is None:
                self.test_predictions = (true, self.classes.inverse(rows["predicted"]))
                self.reliability = {"calibrated": ev.reliability_points(rows),
                                    "before calibration": ev.reliability_points(rows, raw=True)} if calibrating \
                    else {self.name: ev.reliability_points(rows)}
            if name == "test":
                evaluate = self.recipe.evaluate
                metrics |= ev.bootstrap_intervals(true, rows, self.classes, prefix, evaluate.bootstrap,
                                                  evaluate.seed, evaluate.confidence)
        return metrics

    def write_report(self, run_dir: Path) -> None:
        if self.temperature != 1.0:
            write_json(run_dir / layout.CALIBRATION, {"temperature": self.temperature})
        if self.test_predictions:
            ev.write_test_report(run_dir, *self.test_predictions)
        if self.reliability:
            ev.plot_reliability(self.reliability, run_dir / layout.RELIABILITY)


class Generator(GeneratorSchema, ModelType):
    """A model type whose output is text: it streams new text after a prompt."""

    curve_metric = "bits_per_char"

    @abstractmethod
    def generate(self, prompt: str, length: int, temperature: float, top_k: int | None, top_p: float | None,
                 seed: int) -> Iterator[str]:
        """Yield the text of each new token as it is sampled; `length` counts tokens, `top_k` and `top_p` limit
        the tokens sampled from where they are not None (the defaults are `ensayo.runs.answer`'s)."""


def refusal(subject: Any, capability: str) -> str | None:
    """None when `subject` (a model type, or a trained model) can do `capability`; else a sentence naming its
    type and saying why not."""
    method = CAPABILITIES[capability]
    if hasattr(subject, method):
        return None
    reason = subject.refusals.get(capability)
    if not isinstance(subject, type):
        blocked = subject.blocker(capability)
        # the type can and this model cannot; or the model says why where its type gives no reason of its own (a
        # run loaded by the ONNX engine cannot explain)
        if hasattr(type(subject), method) or (blocked and reason is None):
            return f"this {subject.name} model {_CANNOT_THIS[capability]}: {blocked}"
    return f"model type {subject.name} {_CANNOT[capability]}" + (f": {reason}" if reason else "")


def available_if(check: Callable[[Any], bool]) -> Callable[[Callable[..., Any]], Any]:
    """A method that a trained model has only when `check(model)` is true, as scikit-learn's `available_if`:
    where it is false, `hasattr` is false and reading the method raises AttributeError; the type always has it.
    Not scikit-learn's own because importing it costs 3 s (scipy and pandas come with it) on this project's
    2-core machine, paid by every command that reads a recipe."""
    return lambda method: _AvailableIf(method, check)


class _AvailableIf:
    def __init__(self, method: Callable[..., Any], check: Callable[[Any], bool]) -> None:
        self.method, self.check = method, check

    def __get__(self, model: Any, owner: type | None = None) -> Any:
        if model is None:
            return self.method
        if not self.check(model):
            raise AttributeError(f"this {type(model).__name__} has no {self.method.__name__} (see its `blocker`)")
        return types.MethodType(self.method, model)


MODEL_TYPES: dict[str, type[ModelType]] = {}


def register_model_type(name: str) -> Callable[[type[ModelType]], type[ModelType]]:
    """Register a model type under `name`; what it can do is what it implements, never a declaration."""

    def decorate(cls: type[ModelType]) -> type[ModelType]:
        if "exports" in vars(cls):
            raise TypeError(f"model type {name}: `exports` is no longer declared; implement export_onnx (and "
                            "load_onnx, its engine) for ONNX, and every type exports to MLflow")
        if hasattr(cls, "export_onnx") != hasattr(cls, "load_onnx"):
            raise TypeError(f"model type {name}: export_onnx and load_onnx (the engine that reads the export) "
                            "come together")
        check_declared(name, cls)
        cls.name = name
        MODEL_TYPES[name] = cls
        return cls

    return decorate


def model_type_of(recipe: Recipe) -> type[ModelType]:
    """The class of the recipe's model type (importing the built-in types' classes, and torch, first)."""
    importlib.import_module("ensayo.models.builtin")
    return MODEL_TYPES[recipe.model.type]


def read_state(run_dir: Path) -> dict[str, Any]:
    """A run's fitted preprocessing (features.json), named when it is missing."""
    path = run_dir / layout.STATE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a saved ensayo run (needs {layout.RECIPE} and {layout.STATE})")
    return read_json(path)
