"""Saved runs: a directory with the recipe, fitted preprocessing as JSON and weights as safetensors.

Loading a run reads JSON, YAML and safetensors only: nothing is unpickled and no code runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import yaml

from ensayo.config import Recipe, load_recipe, recipe_to_dict
from ensayo.derive import Bins, apply_expressions
from ensayo.features import Feature, build_feature, saved_run_loading
from ensayo.features.category import CategoryOutput
from ensayo.linear import LinearTextModel
from ensayo.model import EnsayoModel, build_model
from ensayo.trainer import EncodedSplit, encode_split, load_weights, pick_device

RECIPE = "recipe.yaml"
STATE = "features.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
HISTORY = "history.json"


def new_run_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return root / recipe.name / stamp


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_clean(data), indent=2, ensure_ascii=False) + "\n")


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_recipe(recipe: Recipe, run_dir: Path) -> None:
    (run_dir / RECIPE).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True))


def make_features(recipe: Recipe) -> list[Feature]:
    return [build_feature(spec.type, spec.name, recipe.column_of(spec), spec.preprocessing) for spec in recipe.inputs]


def save_state(run_dir: Path, features: list[Feature], output: CategoryOutput,
               extra: dict[str, Any] | None = None) -> None:
    write_json(run_dir / STATE, {"inputs": {f.name: f.state() for f in features}, "output": output.state(),
                                 **(extra or {})})


@dataclass
class SavedRun:
    """A trained run, ready to predict: `SavedRun.load(dir).predict_proba(table)`."""

    path: Path
    recipe: Recipe
    features: list[Feature]
    output: CategoryOutput
    model: EnsayoModel | LinearTextModel
    bins: Bins | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> SavedRun:
        path = Path(path)
        if not (path / RECIPE).is_file() or not (path / STATE).is_file():
            raise FileNotFoundError(f"{path}: not a saved ensayo run (needs {RECIPE} and {STATE})")
        recipe = load_recipe(path / RECIPE)
        if recipe.output.type == "text":
            raise FileNotFoundError(f"{path}: a language model run; use `ensayo generate` (or ensayo.load_run)")
        state = read_json(path / STATE)
        output = CategoryOutput.from_state(state["output"])
        bins = Bins(recipe.derive).load_state(state.get("derived", {}))
        if recipe.model.type == "ensemble":  # its members are saved runs of their own
            from ensayo.ensemble import EnsembleModel

            return cls(path, recipe, [], output, EnsembleModel.load(path, state["ensemble"]), bins)
        features = make_features(recipe)
        for feature in features:
            feature.load_state(state["inputs"][feature.name])
        if recipe.model.type == "tfidf_linear":
            model: EnsayoModel | LinearTextModel = LinearTextModel(features, recipe.model.linear)  # type: ignore[arg-type]
            model.load(path, state["linear"])
        else:
            weights = path / WEIGHTS
            if not weights.is_file():
                raise FileNotFoundError(f"{weights}: the run has no trained weights (did training finish? "
                                        "continue it with `ensayo run --resume`)")
            with saved_run_loading():
                model = build_model(recipe, features, len(output))
            load_weights(model, weights)
            model.to(pick_device(device)).eval()
        return cls(path, recipe, features, output, model, bins)

    @property
    def metrics(self) -> dict[str, Any]:
        file = self.path / METRICS
        return read_json(file) if file.is_file() else {}

    def predict_proba(self, table: pl.DataFrame, batch_size: int | None = None) -> np.ndarray:
        if not {self.recipe.column_of(spec) for spec in self.recipe.inputs} <= set(table.columns):
            table = apply_expressions(table, self.recipe, only_possible=True)  # an input is a derived column
        if not isinstance(self.model, EnsayoModel):  # linear or ensemble
            return self.model.predict_proba(table)
        labels = np.zeros(table.height, dtype=np.int64)
        split = encode_split(self.features, table, labels)
        return predict_proba(self.model, split, batch_size or self.recipe.train.eval_batch_size)

    def predict(self, table: pl.DataFrame, top_k: int = 1) -> tuple[list[list[str]], np.ndarray]:
        probabilities = self.predict_proba(table)
        k = min(top_k, probabilities.shape[1])
        top = np.argsort(-probabilities, axis=1)[:, :k]
        labels = [[self.output.classes[i] for i in row] for row in top]
        return labels, np.take_along_axis(probabilities, top, axis=1)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, split: EncodedSplit, batch_size: int) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    chunks = [torch.softmax(model(batch).float(), dim=-1).cpu().numpy()
              for batch, _ in split.batches(batch_size, device=device)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def load_run(path: str | Path) -> Any:
    """A saved run of any recipe: a SavedRun for classifiers, a GeneratorRun for language models."""
    if (Path(path) / RECIPE).is_file() and load_recipe(Path(path) / RECIPE).output.type == "text":
        from ensayo.language import GeneratorRun

        return GeneratorRun.load(path)
    return SavedRun.load(path)
