"""What a recipe may say of each model type, and what the type checks in it before any data is read: the
type's sections (`model.<key>` -> schema), what it gives and reads, and `check` and `prepare`.

Each built-in type declares them in a module that imports no network code (`neural_schema.py`,
`language/schema.py`, ...), so that reading, resolving and validating a recipe loads no torch. The type's
class (`ModelType`, `base.py`) is a subclass of its declaration, and `register_model_type` refuses one that is
not; a type registered without a declaration (a test's) is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

from pydantic import BaseModel

from ensayo.recipe import Recipe

Sections = dict[str, type[BaseModel] | None]  # model.<key> -> its schema (None marks `encoders`)
Schema = TypeVar("Schema", bound=type["ModelSchema"])


class ModelSchema:
    """A model type as a recipe sees it. Subclasses set the class attributes and may add to `check`."""

    name: ClassVar[str]
    # model.<key> -> the schema of that section; None marks `encoders` (one per input, typed by the inputs)
    sections: ClassVar[Sections] = {}
    output: ClassVar[str] = "category"  # the output type it gives: category or text
    input_types: ClassVar[frozenset[str] | None] = None  # the input types it reads; None: any
    losses: ClassVar[frozenset[str]] = frozenset({"cross_entropy"})  # the train.loss values it trains with
    weighs_classes: ClassVar[bool] = False  # whether train.class_weights: balanced reaches its fitting

    @classmethod
    def check(cls, recipe: Recipe) -> list[str]:
        """Problems of a recipe for this model type, one line each (`key: why`); its sections are typed."""
        problems = []
        if recipe.output.type != cls.output:
            problems.append(f"model.type: {cls.name} gives a {cls.output} output, but output.type is "
                            f"{recipe.output.type!r}")
        train = recipe.train
        if train.loss not in cls.losses:
            problems.append(f"train.loss: model.type {cls.name} trains with {' or '.join(sorted(cls.losses))}, "
                            f"not {train.loss}")
        if train.class_weights != "none" and not cls.weighs_classes:
            problems.append(f"train.class_weights: model.type {cls.name} does not weigh classes")
        if recipe.data.split.folds and cls.output != "category":
            problems.append(f"data.split.folds: cross-validation scores classifiers; model.type {cls.name} gives "
                            f"{cls.output}")
        if train.calibrate == "temperature" and cls.output != "category":
            problems.append(f"train.calibrate: model.type {cls.name} gives {cls.output}, not class probabilities")
        if cls.input_types == frozenset() and recipe.inputs:
            source = ": its text comes from output.columns" if cls.output == "text" else ""
            problems.append(f"inputs: model.type {cls.name} has no inputs{source}")
        elif cls.input_types is not None:
            unusable = [f"{spec.name!r} ({spec.type})" for spec in recipe.inputs if spec.type not in cls.input_types]
            if unusable:
                readable = " and ".join(sorted(cls.input_types)) or "no"
                problems.append(f"inputs: model.type {cls.name} reads {readable} inputs only, "
                                f"not {', '.join(unusable)}")
        return problems

    @classmethod
    def prepare(cls, recipe: Recipe, base: Path | None) -> Recipe:
        """The recipe as it will be run (an ensemble takes its members' inputs); most types change nothing."""
        return recipe


class ClassifierSchema(ModelSchema):
    """A model type whose output is a category."""

    output = "category"
    inputs_of_its_own: ClassVar[bool] = True  # False: its inputs are those of other recipes (an ensemble's members)
    learns_auxiliary: ClassVar[bool] = False  # whether it can learn output.auxiliary targets beside the label
    learns_from_teacher: ClassVar[bool] = False  # whether it can learn a teacher's probabilities (train.teacher)

    @classmethod
    def check(cls, recipe: Recipe) -> list[str]:
        problems = super().check(recipe)
        if not recipe.inputs and cls.inputs_of_its_own:
            problems.append("inputs: a classifier needs at least one input")
        if recipe.output.auxiliary and not cls.learns_auxiliary:
            problems.append(f"output.auxiliary: model.type {cls.name} has no shared layers to train on auxiliary "
                            "targets; use a neural model")
        if recipe.train.teacher is not None and not cls.learns_from_teacher:
            problems.append(f"train.teacher: model.type {cls.name} learns from labels only; distil into a neural "
                            "model")
        return problems


class GeneratorSchema(ModelSchema):
    """A model type whose output is text, which it reads from `output.columns` (no inputs)."""

    output = "text"
    input_types = frozenset()


MODEL_SCHEMAS: dict[str, type[ModelSchema]] = {}
_BY_REGISTRATION: set[str] = set()  # types whose registered class is their schema


def declare_model_type(name: str) -> Callable[[Schema], Schema]:
    """Declare model type `name`'s schema (the class that its model type's class subclasses)."""

    def decorate(cls: Schema) -> Schema:
        cls.name = name
        MODEL_SCHEMAS[name] = cls
        return cls

    return decorate


def check_declared(name: str, cls: type[ModelSchema]) -> None:
    """Refuse a model type's class that is not a subclass of its declared schema; one without a declaration
    (a test's own type) declares itself."""
    if name in _BY_REGISTRATION or name not in MODEL_SCHEMAS:
        MODEL_SCHEMAS[name] = cls
        _BY_REGISTRATION.add(name)
    elif not issubclass(cls, MODEL_SCHEMAS[name]):
        raise TypeError(f"model type {name}: {cls.__name__} is not a subclass of its declared schema "
                        f"{MODEL_SCHEMAS[name].__name__}")
