"""The `ensemble` model type: member recipes trained on the ensemble's own split, then pooled in log space,
softmax(sum of w_m * log p_m), with one weight per member fitted on the validation split.

A member is any classifier recipe (neural or tfidf_linear); its `data` is replaced by the ensemble's,
so every member sees the same training rows and is scored on the same test rows. The weights are
fitted together, by minimising the pooled model's log loss on validation: each one both calibrates its
member (a linear SVM's softmaxed margins are far too flat, a network's probabilities often too sure)
and says how much the member adds to the others. The saved ensemble holds each member as a saved run
of its own under `members/<name>/`, and nothing else but the weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import polars as pl

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import Splits
from ensayo.models.base import (
    Classifier,
    FitContext,
    Fitted,
    read_state,
    register_model_type,
)
from ensayo.models.ensemble_schema import EnsembleSchema, member_recipes
from ensayo.models.registry import load_trained
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.store import read_json, write_json

if TYPE_CHECKING:
    import torch


_FLOOR = 1e-12  # probabilities are floored before the log: a member's exact zero must not veto a class


def fit_weights(log_probabilities: list[np.ndarray], true: np.ndarray) -> list[float]:
    """The weights w (one per member, positive) that minimise the log loss of softmax(sum w_m * log p_m) on
    these rows. With one member this is temperature scaling: its ranking of classes is kept, only how
    sure it is changes."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    rows = np.arange(len(true))

    def loss(log_w: np.ndarray) -> float:
        pooled = log_softmax(sum(np.exp(w) * lp for w, lp in zip(log_w, log_probabilities, strict=True)), axis=1)
        return float(-pooled[rows, true].mean())

    start = np.full(len(log_probabilities), -np.log(len(log_probabilities)))  # the plain average
    fitted = minimize(loss, start, method="L-BFGS-B", bounds=[(-8.0, 5.0)] * len(log_probabilities))
    return np.exp(fitted.x).tolist()


def member_log_probabilities(member: Classifier, table: pl.DataFrame) -> np.ndarray:
    return np.log(np.maximum(member.predict_proba(table), _FLOOR))


class Pool:
    """Members' log-probabilities, weighted, summed, then normalised."""

    def __init__(self, members: list[Classifier], weights: list[float]) -> None:
        if len(members) != len(weights):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        classes = [m.classes.classes for m in members]
        if any(c != classes[0] for c in classes):
            raise ValueError("the members were trained on different classes")
        self.members = members
        self.weights = weights

    def predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        return self.pool([member_log_probabilities(m, table) for m in self.members])

    def pool(self, log_probabilities: list[np.ndarray]) -> np.ndarray:
        """The pooled probabilities from the members' log-probabilities of the same rows."""
        from scipy.special import softmax

        return softmax(sum(w * lp for w, lp in zip(self.weights, log_probabilities, strict=True)), axis=1)


@register_model_type("ensemble")
class Ensemble(EnsembleSchema, Classifier):
    refusals: ClassVar[dict[str, str]] = {
        "onnx": "an ensemble pools its members' answers outside any one network; export it to mlflow",
        "explain": "an ensemble pools its members' answers; explain a member run (members/<name>)"}
    distributed = "its members train one after the other, and a linear member trains in one process"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.pool: Pool | None = None
        self.member_names: list[str] = []

    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        """Train (or, resuming, finish or reuse) each member in `members/<name>`, fit the members' weights on
        the validation split, then score the pooled model like any other."""
        assert context.train_member is not None, "an ensemble trains its members through the pipeline"
        self.classes.fit(self.labels(splits.train))
        derived = splits.bins.state() if splits.bins else {}
        metrics: dict[str, float] = {"fit_seconds": 0.0}
        members: list[Classifier] = []
        for recipe in member_recipes(self.recipe, context.base):
            member_dir = context.run_dir / layout.MEMBERS / recipe.name
            context.console.rule(f"member {recipe.name}")
            member = context.train_member(recipe, member_dir, context.resume)
            members.append(member)
            scores = read_json(member_dir / layout.METRICS)
            metrics["fit_seconds"] += scores["fit_seconds"]
            for key in ("test/balanced_accuracy", "val/balanced_accuracy", "fit_seconds"):
                metrics[f"{layout.MEMBERS}/{recipe.name}/{key}"] = scores[key]
        if members[0].classes.classes != self.classes.classes:
            raise ValueError(f"the members' classes differ from the ensemble's training labels ({context.run_dir})")
        val_true = self.classes.transform(self.labels(splits.validation))
        started = time.perf_counter()
        val_log_probabilities = [member_log_probabilities(m, splits.validation) for m in members]
        weights = fit_weights(val_log_probabilities, val_true)
        for member, weight in zip(members, weights, strict=True):
            metrics[f"{layout.MEMBERS}/{member.recipe.name}/weight"] = weight
        self.pool = Pool(members, weights)
        self.member_names = [m.recipe.name for m in members]
        metrics["fit_seconds"] += time.perf_counter() - started
        write_json(context.run_dir / layout.STATE, {"inputs": {}, "output": self.classes.state(),
                                                    "ensemble": self.state(), "derived": derived})
        train_true = self.classes.transform(self.labels(splits.train))
        metrics["train/loss"] = ev.log_loss(self.pool.predict_proba(splits.train), train_true)
        pooled_validation = self.pool.pool(val_log_probabilities)  # the members have just scored these rows
        metrics |= self.score_splits(splits, lambda name, table: pooled_validation if name == "validation"
                                     else self._predict_proba(table))
        return Fitted(metrics)

    def state(self) -> dict[str, object]:
        assert self.pool is not None
        return {"members": self.member_names, "weights": self.pool.weights}

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> Ensemble:
        model = cls(recipe)
        state = read_state(run_dir)
        model.classes = CategoryOutput.from_state(state["output"])
        members = []
        for name in state["ensemble"]["members"]:
            _, member = load_trained(run_dir / layout.MEMBERS / name)
            assert isinstance(member, Classifier)
            members.append(member)
        model.member_names = list(state["ensemble"]["members"])
        model.pool = Pool(members, [float(w) for w in state["ensemble"]["weights"]])
        return model

    def _predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        assert self.pool is not None, "fit or load the model first"
        return self.pool.predict_proba(table)

    def to_device(self, device: torch.device) -> None:
        """The members that answer on a GPU move to `device`; the others (TF-IDF models) stay on the CPU."""
        assert self.pool is not None, "fit or load the model first"
        for member in self.pool.members:
            if hasattr(member, "to_device"):
                member.to_device(device)

