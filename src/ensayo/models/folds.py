"""A cross-validated run's fold models as one classifier: a wrapper over the trained classifiers of any model
type (as scikit-learn's `CalibratedClassifierCV` wraps any estimator), which averages their probabilities.
It is not a model type: nothing trains it; cross-validation (`data.split.folds`) makes the fold runs under
`folds/fold<k>` and this reads them back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl

from ensayo import layout
from ensayo.models.base import Classifier, available_if, refusal
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe


def is_cross_validated(recipe: Recipe) -> bool:
    """The recipe's run is the one above the folds (a fold run's recipe names its fold)."""
    split = recipe.data.split
    return split.folds is not None and split.fold is None


def fold_dirs(run_dir: Path, folds: int) -> list[Path]:
    return [run_dir / layout.FOLDS / f"fold{k}" for k in range(folds)]


def _every_fold_exports(average: FoldAverage) -> bool:
    return all(hasattr(member, "export_onnx") for member in average.members)


class FoldAverage:
    """The mean of the fold models' probabilities, over the union of their classes (a class a fold never saw in
    training gets 0 from it). It can do what every fold model can: export to ONNX, fold by fold."""

    refusals: ClassVar[dict[str, str]] = {
        "explain": "a cross-validated run averages its fold models; explain one of its fold runs (folds/fold0)",
        "generate": "cross-validation scores classifiers"}

    def __init__(self, recipe: Recipe, members: list[Classifier]) -> None:
        self.recipe = recipe
        self.members = members
        self.name = recipe.model.type  # what a refusal names: the folds' model type
        self.classes = CategoryOutput(recipe.output.column or "").fit(
            [label for member in members for label in member.classes.classes])

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe, load_member: Callable[[Path], Any]) -> FoldAverage:
        """The fold runs of `run_dir`, each read by `load_member`."""
        folds = fold_dirs(run_dir, recipe.data.split.folds or 0)
        missing = [str(path) for path in folds if not (path / layout.STATE).is_file()]
        if missing:
            raise FileNotFoundError(f"{run_dir}: a cross-validated run without its fold runs ({', '.join(missing)})")
        return cls(recipe, [load_member(path) for path in folds])

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        total = np.zeros((table.height, len(self.classes)), dtype=np.float64)
        for member in self.members:
            columns = [self.classes.index[label] for label in member.classes.classes]
            total[:, columns] += member.predict_proba(table)
        return (total / len(self.members)).astype(np.float32)

    def blocker(self, capability: str) -> str | None:
        """Why the average cannot do what a fold model cannot: the first fold's reason."""
        problems = (refusal(member, capability) for member in self.members)
        return next((f"a fold model: {problem}" for problem in problems if problem), None)

    @available_if(_every_fold_exports)
    def export_onnx(self, target: Path, quantize: str | None = None) -> None:
        """Each fold's network into `target`/folds/fold<k>; the ONNX engine averages them as torch does."""
        for member, fold in zip(self.members, fold_dirs(target, len(self.members)), strict=True):
            member.export_onnx(fold, quantize)
