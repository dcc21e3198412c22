"""The `ensemble` model: member recipes trained on the ensemble's own split, each member's scores
calibrated by one temperature fitted on the validation split, and their log-probabilities averaged.

A member is any classifier recipe (neural or tfidf_linear); its `data` is replaced by the ensemble's,
so every member sees the same training rows and is scored on the same test rows. A linear SVM's
scores are no probabilities and a network's are often over-confident: the temperature puts them on one
scale before they are averaged. The saved ensemble holds each member as a saved run of its own under
`members/<name>/`, and nothing else but the temperatures.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from ensayo.config import EnsembleConfig, InputConfig, Recipe, RecipeError, expand_path, load_recipe

if TYPE_CHECKING:
    from ensayo.runs import SavedRun

MEMBERS = "members"
_FLOOR = 1e-12  # probabilities are floored before the log: a member's exact zero must not veto a class


def member_recipes(recipe: Recipe, base: Path | None) -> list[Recipe]:
    """The members' recipes, read from their files and given the ensemble's data and output."""
    members = []
    for index, path in enumerate(recipe.model.ensemble.members):
        where = f"model.ensemble.members.{index} ({path})"
        try:
            member = load_recipe(expand_path(path, base))
        except (OSError, RecipeError) as exc:
            raise RecipeError(f"{where}: {exc}") from None
        if member.model.type not in ("neural", "tfidf_linear"):
            raise RecipeError(f"{where}: a member is a neural or tfidf_linear classifier, not {member.model.type!r}")
        if member.output != recipe.output:
            raise RecipeError(f"{where}: its output ({member.output.column!r}) is not the ensemble's "
                              f"({recipe.output.column!r})")
        # the ensemble's derived columns (its target's bins, say), then those the member's inputs need
        derive = list({d.name: d for d in [*member.derive, *recipe.derive]}.values())
        member = member.model_copy(update={"data": recipe.data, "derive": derive})
        member.track.enabled = False
        members.append(member)
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise RecipeError(f"model.ensemble.members: member names must differ (each names its run folder), "
                          f"got {names}")
    return members


def resolve(recipe: Recipe, base: Path | None) -> Recipe:
    """The ensemble recipe with the union of its members' inputs (the columns every row needs) and its
    members' paths made absolute (a resumed run finds them from anywhere)."""
    inputs: dict[str, InputConfig] = {}
    derived = {spec.name: spec for spec in recipe.derive}
    for member in member_recipes(recipe, base):
        inputs |= {spec.name: spec for spec in member.inputs if spec.name not in inputs}
        derived |= {made.name: made for made in member.derive if made.name not in derived}
    paths = [str(expand_path(path, base).resolve()) for path in recipe.model.ensemble.members]
    model = recipe.model.model_copy(update={"ensemble": EnsembleConfig(members=paths)})
    return recipe.model_copy(update={"inputs": list(inputs.values()), "model": model,
                                     "derive": list(derived.values())})


def fit_temperature(log_probabilities: np.ndarray, true: np.ndarray) -> float:
    """The T that minimises the log loss of softmax(T * log p) on these rows (one scalar: the ranking of
    each row's classes is unchanged, only how sure the member is)."""

    def loss(log_t: float) -> float:
        scaled = log_softmax(np.exp(log_t) * log_probabilities, axis=1)
        return float(-scaled[np.arange(len(true)), true].mean())

    return float(np.exp(minimize_scalar(loss, bounds=(-4.0, 5.0), method="bounded").x))


def member_log_probabilities(run: SavedRun, table: pl.DataFrame) -> np.ndarray:
    return np.log(np.maximum(run.predict_proba(table), _FLOOR))


class EnsembleModel:
    """Members' calibrated log-probabilities, averaged, then normalised."""

    def __init__(self, members: list[SavedRun], temperatures: list[float]) -> None:
        if len(members) != len(temperatures):
            raise ValueError(f"{len(members)} members but {len(temperatures)} temperatures")
        classes = [m.output.classes for m in members]
        if any(c != classes[0] for c in classes):
            raise ValueError("the members were trained on different classes")
        self.members = members
        self.temperatures = temperatures

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        total = sum(log_softmax(t * member_log_probabilities(m, table), axis=1)
                    for m, t in zip(self.members, self.temperatures, strict=True))
        return softmax(total / len(self.members), axis=1)

    def state(self) -> dict[str, Any]:
        return {"members": [m.path.name for m in self.members], "temperatures": self.temperatures}

    @classmethod
    def load(cls, run_dir: Path, state: dict[str, Any]) -> EnsembleModel:
        from ensayo.runs import SavedRun

        members = [SavedRun.load(run_dir / MEMBERS / name) for name in state["members"]]
        return cls(members, [float(t) for t in state["temperatures"]])
