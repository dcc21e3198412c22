"""The `ensemble` model: member recipes trained on the ensemble's own split, then pooled in log space,
softmax(sum of w_m * log p_m), with one weight per member fitted on the validation split.

A member is any classifier recipe (neural or tfidf_linear); its `data` is replaced by the ensemble's,
so every member sees the same training rows and is scored on the same test rows. The weights are
fitted together, by minimising the pooled model's log loss on validation: each one both calibrates its
member (a linear SVM's softmaxed margins are far too flat, a network's probabilities often too sure)
and says how much the member adds to the others. The saved ensemble holds each member as a saved run
of its own under `members/<name>/`, and nothing else but the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy.optimize import minimize
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
        # the same label; each member may learn its own auxiliary targets beside it
        if (member.output.type, member.output.column) != (recipe.output.type, recipe.output.column):
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


def fit_weights(log_probabilities: list[np.ndarray], true: np.ndarray) -> list[float]:
    """The weights w (one per member, positive) that minimise the log loss of softmax(sum w_m * log p_m) on
    these rows. With one member this is temperature scaling: its ranking of classes is kept, only how
    sure it is changes."""
    rows = np.arange(len(true))

    def loss(log_w: np.ndarray) -> float:
        pooled = log_softmax(sum(np.exp(w) * lp for w, lp in zip(log_w, log_probabilities, strict=True)), axis=1)
        return float(-pooled[rows, true].mean())

    start = np.full(len(log_probabilities), -np.log(len(log_probabilities)))  # the plain average
    fitted = minimize(loss, start, method="L-BFGS-B", bounds=[(-8.0, 5.0)] * len(log_probabilities))
    return np.exp(fitted.x).tolist()


def member_log_probabilities(run: SavedRun, table: pl.DataFrame) -> np.ndarray:
    return np.log(np.maximum(run.predict_proba(table), _FLOOR))


class EnsembleModel:
    """Members' log-probabilities, weighted, summed, then normalised."""

    def __init__(self, members: list[SavedRun], weights: list[float]) -> None:
        if len(members) != len(weights):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        classes = [m.output.classes for m in members]
        if any(c != classes[0] for c in classes):
            raise ValueError("the members were trained on different classes")
        self.members = members
        self.weights = weights

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        return self.pool([member_log_probabilities(m, table) for m in self.members])

    def pool(self, log_probabilities: list[np.ndarray]) -> np.ndarray:
        """The pooled probabilities from the members' log-probabilities of the same rows."""
        return softmax(sum(w * lp for w, lp in zip(self.weights, log_probabilities, strict=True)), axis=1)

    def state(self) -> dict[str, Any]:
        return {"members": [m.path.name for m in self.members], "weights": self.weights}

    @classmethod
    def load(cls, run_dir: Path, state: dict[str, Any]) -> EnsembleModel:
        from ensayo.runs import SavedRun

        members = [SavedRun.load(run_dir / MEMBERS / name) for name in state["members"]]
        return cls(members, [float(w) for w in state["weights"]])
