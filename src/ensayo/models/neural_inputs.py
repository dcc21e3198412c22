"""A neural classifier's run without its network: the inputs' fitted preprocessing, the classes and the derived
columns' bins, read back from the run's JSON state without torch. The torch classifier (`neural.NeuralClassifier`)
and its ONNX engine (`onnx_engine.OnnxClassifier`) are each one of these with a network that answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from ensayo.features import Feature, build_feature
from ensayo.models.base import Classifier, read_state
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe


def make_features(recipe: Recipe) -> list[Feature]:
    return [build_feature(spec.type, spec.name, recipe.column_of(spec), spec.preprocessing) for spec in recipe.inputs]


class NeuralInputs(Classifier):
    """The fitted inputs and classes of a `neural` run; a subclass adds the network that answers (and the
    torch classifier the type's schema, `NeuralSchema`)."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.features = make_features(recipe)
        self.derived: dict[str, list[float]] = {}  # bin edges fitted on the training split

    def _load_state(self, state: dict[str, Any], fitted_here: list[Feature] | None = None) -> None:
        """The fitted state read or received; `fitted_here`: inputs this process fitted already, left as they are."""
        for feature in self.features:
            if feature not in (fitted_here or []):
                feature.load_state(state["inputs"][feature.name])
        self.classes = CategoryOutput.from_state(state["output"])
        self.derived = state.get("derived", {})

    @classmethod
    def with_state(cls, run_dir: Path, recipe: Recipe) -> Self:
        """The model with its fitted preprocessing and classes read from the run, and no network yet."""
        model = cls(recipe)
        model._load_state(read_state(run_dir))
        return model
